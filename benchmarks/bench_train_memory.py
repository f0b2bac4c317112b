"""Crosscoder training memory vs store size: training streams the store, so its resident memory
should not grow with the store.

    python benchmarks/bench_train_memory.py [--small 300000] [--large 1200000] [--steps 300]

Harvests two stores (M = 2 checkpoints of a random 2-block GPT-NeoX, d = 128, contexts of
1024) of ``--small`` and ``--large`` tokens, both larger than the reader's window (2^18 rows),
then trains the same crosscoder (relu, F = 1024, B = 1024, ``--steps`` steps, validation on)
from each in a fresh subprocess and reads its peak resident memory (VmHWM). A third subprocess
trains on 8192 in-memory rows: the memory of torch, the model and Adam alone. Prints a markdown
section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_store import make_corpus, make_series  # noqa: E402

CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
from crosstime.crosscoder import TrainSettings, fit
from crosstime.store import ActivationStore
source, steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = TrainSettings(n_features=1024, batch_size=1024, steps=steps, lr=1e-3, val_every=100, progress=False)
data = torch.randn(8192, 2, 128) if source == "memory" else ActivationStore(source)
t0 = time.perf_counter()
fit(data, cfg, out=out)
hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - t0, "hwm_kib": hwm}))
"""


def child(source: str, steps: int, out: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, source, str(steps), str(out)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=300_000)
    ap.add_argument("--large", type=int, default=1_200_000)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    from crosstime.store import HarvestConfig
    from crosstime.stages.harvest import harvest

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        series = make_series(work / "series", layers=2, d=128, max_pos=1024, steps=(0, 1))
        corpus = make_corpus(work / "corpus.txt", args.large)
        mem = child("memory", args.steps, work / "cc-memory")
        for name, n in (("small", args.small), ("large", args.large)):
            t0 = time.perf_counter()
            store = harvest(HarvestConfig(run=work / name, series=str(series), layer=1, corpus=str(corpus), tokens=n,
                                          context_len=1024, batch_size=16, progress=False))
            harvest_s = time.perf_counter() - t0
            disk = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file())
            r = child(str(store.root), args.steps, work / f"cc-{name}")
            rows.append({"name": name, "rows": store.n_rows("train"), "disk_mib": disk / 2**20, "harvest_s": harvest_s,
                         **r})
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"### Training memory vs store size (bench_train_memory.py), {now}",
           f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; relu, M=2, d=128, F=1024, B=1024, "
           f"{args.steps} steps, validation every 100; peak RSS (VmHWM) of a fresh training process.", "",
           "| data | train rows | on disk MiB | training s | peak RSS MiB | beyond in-memory baseline MiB |",
           "|---|---|---|---|---|---|",
           f"| 8192 rows in memory (baseline: torch, model, Adam) | 8192 | – | {mem['seconds']:.1f} | "
           f"{mem['hwm_kib'] / 1024:.0f} | – |"]
    for r in rows:
        out.append(f"| store, {r['name']} | {r['rows']:,} | {r['disk_mib']:.0f} | {r['seconds']:.1f} | "
                   f"{r['hwm_kib'] / 1024:.0f} | {(r['hwm_kib'] - mem['hwm_kib']) / 1024:.0f} |")
    small, large = rows
    out += ["", f"Store {large['rows'] / small['rows']:.1f}× larger → peak RSS {large['hwm_kib'] / small['hwm_kib']:.2f}×."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
