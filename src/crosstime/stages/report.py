"""The report stage, declared: whatever the run holds -> RUN/report/ (index.html, data.json).

    from crosstime.stages.report import ReportConfig, report
    report(ReportConfig(run="runs/toy"))                 # -> runs/toy/report/index.html

It reads every other stage's artifacts that the run has (none is required: what is missing is
said on the page). The work is :mod:`crosstime.report`.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from crosstime import stage
from crosstime.distributed import resolve_device
from crosstime.report import ReportConfig
from crosstime.report.work import check_inputs, work
from crosstime.runs import (
    ACTIVATIONS,
    ATTRIBUTION,
    CROSSCODER,
    EVALUATION,
    INTERPRETATION,
    REPORT,
    SCAN,
    open_inputs,
)
from crosstime.stage import Stage

__all__ = ["REPORT_STAGE", "ReportConfig", "report"]


def report(config: ReportConfig) -> Path:
    """Build ``RUN/report/index.html`` (and ``data.json``) from the run directory; returns the HTML path."""
    t0 = time.time()
    inputs = check_inputs(config, open_inputs(config, device=resolve_device(config.device)))
    with stage.writing(config) as resolved:
        out, data = work(config, inputs, resolved)
    if config.progress:
        print(f"wrote {out} ({len(data.features)} features, {len(data.checkpoints)} checkpoints) in "
              f"{time.time() - t0:.1f}s")
    return out


def show(path: Path, config: ReportConfig) -> None:
    typer.echo(f"open {path}")


REPORT_STAGE = stage.register(Stage(
    name="report", config=ReportConfig, work=report, writes=(REPORT,),
    optional_reads=(SCAN, ACTIVATIONS, CROSSCODER, EVALUATION, ATTRIBUTION, INTERPRETATION), show=show,
    help="Write RUN/report/index.html: one self-contained dashboard (overview + feature browser)."))
