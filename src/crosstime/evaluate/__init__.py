"""The evaluate stage: reconstruction, downstream splicing and decoder-space readings of a crosscoder."""

from crosstime.evaluate.stage import EvaluateConfig, EvaluationError, evaluate, format_table, paper_row

__all__ = ["EvaluateConfig", "EvaluationError", "evaluate", "format_table", "paper_row"]
