"""The evaluate stage: reconstruction, downstream splicing and decoder-space readings of a crosscoder.

Modules: :mod:`.stage` (the config, the input checks, :func:`evaluate`), :mod:`.passes` (the
encode and splice passes over the store), :mod:`.metrics` (the metrics on plain tensors),
:mod:`.decoder` (decoder-space readings and features.csv rows), :mod:`.outputs` (evaluation.json's
rows, the figures, the printed table), :mod:`.plots` (the figures themselves).
"""

from crosstime.evaluate.outputs import format_table, paper_row
from crosstime.evaluate.stage import EvaluateConfig, EvaluationError, evaluate

__all__ = ["EvaluateConfig", "EvaluationError", "evaluate", "format_table", "paper_row"]
