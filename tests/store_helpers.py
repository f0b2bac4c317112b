"""Shared by the store tests (no tests here): a tiny harvest's settings and a store's files
compared without the file-system stamps (the corpus fixture is in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from crosstime.store import HarvestConfig
from crosstime.store.layout import VERIFIED

T = 32  # context length
LAYER = 1
# where two stores with the same content may differ: the file records (size, mtime, ctime, inode)
# the harvest writes beside each file it hashed, the seals over them, and readers' .verified.json
STAMPS = ("file", "tokens_file", "seal")


def harvest_config(series, corpus, run, **kw) -> HarvestConfig:
    """Settings of a small harvest into ``run``/activations."""
    base = dict(series=str(series), layer=LAYER, corpus=str(corpus), tokens=1500, context_len=T, run=run,
                chunk_contexts=8, batch_size=4, progress=False)
    return HarvestConfig(**{**base, **kw})


def store_files(root: Path) -> dict[str, bytes]:
    """Every file of a store by relative path: bytes, JSON without the file-system stamps, no readers' cache."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == VERIFIED:
            continue
        if p.suffix == ".json":
            data = json.loads(p.read_text())
            out[str(p.relative_to(root))] = json.dumps({k: v for k, v in data.items() if k not in STAMPS}).encode()
        else:
            out[str(p.relative_to(root))] = p.read_bytes()
    return out
