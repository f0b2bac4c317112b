"""What ``crosstime scan`` prints: accuracy per checkpoint and task, dynamics, and the suggestion with reasons."""

from __future__ import annotations

import math

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from crosstime.artifacts import SCAN_PHASES, Phases, Suggestion, read_model
from crosstime.scan.phases import phases_line
from crosstime.scan.work import ScanResult


def format_number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; "—" for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _accuracy_table(result: ScanResult, tasks: list[str], has_sentence: bool):
    """The rich table: one row per checkpoint; T1… per task, mean, sentence mean, dynamics, the pick's role."""
    table = Table(title="scan: accuracy = share of pairs with m < 0", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 0), pad_edge=False)
    table.add_column("checkpoint", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    for i, _ in enumerate(tasks):
        table.add_column(f"T{i + 1}", justify="right", no_wrap=True)
    table.add_column("mean", justify="right", no_wrap=True)
    if has_sentence:
        table.add_column("sent", justify="right", no_wrap=True)
    dyn = {r["revision"]: r for r in result.dynamics}
    if dyn:
        for name in ("loss", "KLuni", "KLbi"):
            table.add_column(name, justify="right", no_wrap=True)
    table.add_column("pick", no_wrap=True)
    acc = {(r["revision"], r["task"]): r for r in result.accuracy}
    chosen = {p.revision: p.role for p in result.suggestion.checkpoints}
    for c in result.checkpoints:
        rows = [acc[(c.revision, t)] for t in tasks]
        cells = [format_number(r["accuracy"], 2) for r in rows]
        cells.append(format_number(float(np.mean([r["accuracy"] for r in rows])), 2))
        if has_sentence:
            sent = [r["sentence_accuracy"] for r in rows if r.get("sentence_accuracy") is not None]
            cells.append(format_number(float(np.mean(sent)), 2) if sent else "—")
        if dyn:
            d = dyn.get(c.revision, {})
            cells += [format_number(d.get("loss"), 2), format_number(d.get("kl_unigram"), 2),
                      format_number(d.get("kl_bigram"), 2)]
        table.add_row(c.revision, c.label, *cells, chosen.get(c.revision, ""))
    return table


def suggestion_line(suggestion: Suggestion) -> str:
    """The suggestion in one line: each checkpoint with its tokens seen and role."""
    return "suggested checkpoints: " + ", ".join(f"{p.revision} ({p.label} tokens, {p.role})"
                                                 for p in suggestion.checkpoints)


def print_scan_summary(result: ScanResult, console=None) -> None:
    """A short rich summary: accuracy per checkpoint and task, dynamics, and the suggestion with reasons."""
    console = console or Console()
    tasks = list(dict.fromkeys(r["task"] for r in result.accuracy))
    has_sentence = any(r.get("sentence_accuracy") is not None for r in result.accuracy)
    console.print(_accuracy_table(result, tasks, has_sentence))
    console.print("tasks: " + "; ".join(f"T{i + 1} = {t} ({result.tasks.get(t, {}).get('n', '?')} pairs)"
                                          for i, t in enumerate(tasks))
                  + (". sent = mean whole-sentence (lm-eval) accuracy" if has_sentence else "")
                  + (". KL = KL(model ‖ corpus unigram / bigram), nats" if result.dynamics else ""))
    console.print(phases_line(read_model(Phases, result.out / SCAN_PHASES)))
    console.print(suggestion_line(result.suggestion))
    for p in result.suggestion.checkpoints:
        console.print(f"  {p.revision} ({p.label} tokens, {p.role}): {p.reason}")
    for note in result.notes:
        console.print(f"[dim]note: {note}[/dim]")
    console.print(f"wrote {result.out} in {result.seconds:.1f}s")
