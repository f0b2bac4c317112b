"""The scan stage's library (the stage is declared in :mod:`crosstime.stages.scan`): accuracy curves, representation similarity and training dynamics over a series.

Modules: :mod:`~crosstime.scan.config` (ScanConfig, ScanError), :mod:`~crosstime.scan.inputs`
(everything checked before the first model load), :mod:`~crosstime.scan.work` (the sweep and
the outputs; the stage is declared in :mod:`crosstime.stages.scan`), :mod:`~crosstime.scan.similarity` (cosine, linear CKA, site
tokens), :mod:`~crosstime.scan.dynamics` (n-gram model, next-token dynamics),
:mod:`~crosstime.scan.suggest` (ramp fit, CKA blocks, the checkpoint suggestion),
:mod:`~crosstime.scan.summary` (what the command prints), :mod:`~crosstime.scan.plots`.
"""

from crosstime.scan.config import ScanConfig, ScanError
from crosstime.scan.dynamics import NgramModel, next_token_dynamics
from crosstime.scan.inputs import prepare
from crosstime.scan.phases import phases_line, read_phases
from crosstime.scan.similarity import cosine_matrix, linear_cka_matrix, site_tokens
from crosstime.scan.work import ScanResult
from crosstime.scan.suggest import (
    SUGGESTION_METHOD,
    cka_blocks,
    fit_ramp,
    suggest_checkpoints,
)
from crosstime.scan.summary import print_scan_summary, suggestion_line

__all__ = [
    "ScanConfig", "ScanError", "ScanResult", "prepare", "print_scan_summary", "suggestion_line", "phases_line", "read_phases",
    "cosine_matrix", "linear_cka_matrix", "site_tokens", "NgramModel", "next_token_dynamics",
    "fit_ramp", "cka_blocks", "suggest_checkpoints", "SUGGESTION_METHOD",
]
