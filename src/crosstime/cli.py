"""The ``crosstime`` command line: one command per pipeline stage.

Every command is a thin shell over a stage function and its typed config, so the
Python API and the CLI do the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crosstime import __version__

app = typer.Typer(
    help="crosstime: sparse crosscoders over pretraining checkpoints — when does a model learn what?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"crosstime {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """crosstime: sparse crosscoders over pretraining checkpoints."""


@app.command()
def series(source: str = typer.Argument(..., help="A local series folder or a Hugging Face repo id.")) -> None:
    """List the checkpoints of a series: revision, step, tokens seen."""
    from rich.console import Console
    from rich.table import Table

    from crosstime.series import open_series

    s = open_series(source)
    table = Table(title=f"{s.source} ({s.family}, {len(s)} checkpoints)")
    for col in ("revision", "step", "tokens", "label"):
        table.add_column(col, justify="right" if col != "revision" else "left")
    for c in s:
        table.add_row(c.revision, str(c.step), str(c.tokens), c.label)
    Console().print(table)


@app.command()
def attribute(
    run: Path = typer.Argument(..., help="Run directory with activations/ and crosscoder/."),
    task: str = typer.Option(..., "--task", help="Task name (toy task, BLiMP paradigm, 'subjectverb') or a .jsonl path."),
    method: str = typer.Option("ig", "--method", help="IE estimator: ig (integrated gradients), atp, exact."),
    steps: int = typer.Option(10, "--steps", help="Integrated-gradient steps (midpoint rule)."),
    top_k: int = typer.Option(10, "--top-k", help="Features reported per checkpoint (by |IE|)."),
    baseline: str = typer.Option("zero", "--baseline", help="Ablation value: zero, or mean (the feature's mean on the task)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Zero per-token effects with |e| <= this (paper: 0.1)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per forward."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples over pairs (0: no CIs)."),
    ablation: bool = typer.Option(True, "--ablation/--no-ablation", help="Exact single-feature ablation of the reported features."),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Use only the first N pairs."),
    device: str = typer.Option("cpu", "--device"),
    dtype: str = typer.Option("float32", "--dtype"),
) -> None:
    """Per-checkpoint indirect effects of the crosscoder's features on a task; RelIE; ablation check."""
    from pydantic import ValidationError

    from crosstime.attribution.stage import AttributeConfig, AttributionError, attribute as run_attribute, print_attribution
    from crosstime.tasks import TaskError

    try:
        config = AttributeConfig(run=run, task=task, method=method, steps=steps, top_k=top_k, baseline=baseline,
                                 threshold=threshold, batch_size=batch_size, bootstrap=bootstrap, ablation=ablation,
                                 max_pairs=max_pairs, device=device, dtype=dtype)
        result = run_attribute(config)
    except (AttributionError, TaskError, ValidationError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    print_attribution(result)


if __name__ == "__main__":  # pragma: no cover
    app()
