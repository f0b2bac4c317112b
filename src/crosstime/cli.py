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


if __name__ == "__main__":  # pragma: no cover
    app()
