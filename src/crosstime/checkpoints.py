"""A checkpoint (one pretraining snapshot: revision, step, tokens seen) and ``series.json``, the file
that lists a local series' checkpoints.

Below both :mod:`crosstime.series`, which opens series (and the bare name ``"toy"``, the toy world,
built on request), and :mod:`crosstime.toy`, which writes the toy world as a local series: each
imports this module, neither the other's way back.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

SERIES_FILE = "series.json"


def format_tokens(tokens: int | None) -> str:
    """Human label for a token count: 0, 950, 128M, 4B, 286B, 1.2T."""
    if tokens is None:
        return "?"
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if tokens >= size:
            value = tokens / size
            text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
            return text + unit
    return str(tokens)


@dataclass(frozen=True)
class Checkpoint:
    """One pretraining snapshot of a series."""

    revision: str
    step: int | None
    tokens: int | None

    @property
    def label(self) -> str:
        return format_tokens(self.tokens)


def write_series_manifest(root: str | Path, checkpoints: list[Checkpoint], family: str = "local", **extra) -> Path:
    """Write ``series.json`` for a local series whose revision folders are already saved."""
    root = Path(root)
    data = {"family": family, "checkpoints": [asdict(c) for c in checkpoints], **extra}
    tmp = root / (SERIES_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, root / SERIES_FILE)
    return root / SERIES_FILE
