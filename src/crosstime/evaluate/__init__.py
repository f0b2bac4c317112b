"""The evaluate stage's library: reconstruction, downstream splicing and decoder-space readings of a crosscoder.

The stage itself is declared in :mod:`crosstime.stages.evaluate`. Modules: :mod:`.work` (the config, the
input checks, the work), :mod:`.passes` (the
encode and splice passes over the store), :mod:`.metrics` (the metrics on plain tensors),
:mod:`.decoder` (decoder-space readings and features.csv rows), :mod:`.outputs` (evaluation.json's
rows, the figures, the printed table), :mod:`.plots` (the figures themselves).
"""

from crosstime.evaluate.outputs import format_table, paper_row
from crosstime.evaluate.work import EvaluateConfig, EvaluationError

__all__ = ["EvaluateConfig", "EvaluationError", "format_table", "paper_row"]
