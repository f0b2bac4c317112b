"""Streaming training against harvest + store-based training, end to end, on the same tokens (toy world).

    python benchmarks/bench_streaming.py [--tokens 200000] [--batch-size 1024] [--epochs 1] [--repeats 2]

Both paths train the same ReLU crosscoder (M = 2 checkpoints, d = 128, F = 4 × d) for the
same steps on the same tokens (``--epochs`` passes over the train split). "store" times
``harvest`` (into RUN/activations) then ``train`` on it, one after the other; "stream" times
``train --series`` (the checkpoints kept loaded, the buffer refilled while training). Each
timing includes loading the models; the two runs alternate, ``--repeats`` times, and the
medians are printed as a markdown table with the machine's load average. Tokens/s are
training rows (steps × batch) per wall second. Streaming re-harvests the corpus every epoch,
a store reads it again, so the comparison is at one epoch (``--epochs`` shows the rest). At the
end of training the buffer has harvested (1 - refill_frac) of a buffer beyond the rows used.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

REVISIONS = ["step128", "step1000"]


def _settings(args, rows: int) -> dict:
    steps = max(1, args.epochs * rows // args.batch_size)
    return {"batch_size": args.batch_size, "steps": steps, "lr": 1e-3, "expansion": 4, "val_every": 0, "save_every": 10**6,
                "progress": False}


def run_store(world: Path, run: Path, args) -> tuple[float, float, int]:
    """(harvest seconds, training seconds, steps) of harvest + store-based training."""
    from crosstime.crosscoder import TrainConfig
    from crosstime.stages.train import train
    from crosstime.store import HarvestConfig
    from crosstime.stages.harvest import harvest

    t0 = time.perf_counter()
    store = harvest(HarvestConfig(run=run, series=str(world), revisions=REVISIONS, layer=1, tokens=args.tokens,
                                  context_len=64, batch_size=args.harvest_batch_size, progress=False))
    t1 = time.perf_counter()
    settings = _settings(args, store.n_rows("train"))
    train(TrainConfig(run=run, **settings))
    return t1 - t0, time.perf_counter() - t1, settings["steps"]


def run_stream(world: Path, run: Path, args, rows: int) -> float:
    """Seconds of streaming training on the same tokens and steps."""
    from crosstime.crosscoder import TrainConfig
    from crosstime.stages.train import train

    t0 = time.perf_counter()
    train(TrainConfig(run=run, series=str(world), layer=1, revisions=REVISIONS, tokens=args.tokens, context_len=64,
                      harvest_batch_size=args.harvest_batch_size, buffer_rows=args.buffer_rows,
                      **_settings(args, rows)))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--buffer-rows", type=int, default=1 << 14)
    parser.add_argument("--harvest-batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from crosstime.toy import toy_world

    world = toy_world(progress=False)
    rows = args.tokens // 64 * 63  # train rows: 64-token contexts, position 0 excluded
    harvests, trainings, streams, loads = [], [], [], []
    for i in range(args.repeats):
        tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
        try:
            order = ("store", "stream") if i % 2 == 0 else ("stream", "store")
            for path in order:
                loads.append(os.getloadavg()[0])
                if path == "store":
                    h, t, steps = run_store(world, tmp / f"store{i}", args)
                    harvests.append(h)
                    trainings.append(t)
                else:
                    streams.append(run_stream(world, tmp / f"stream{i}", args, rows))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    trained = steps * args.batch_size
    h, t, s = statistics.median(harvests), statistics.median(trainings), statistics.median(streams)
    print(f"### Streaming vs harvest + store training (toy world, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, load average {min(loads):.1f}-{max(loads):.1f})\n")
    print(f"{args.tokens:,} tokens, M = 2, d = 128, F = 512, batch {args.batch_size}, {steps} steps "
          f"({args.epochs} epoch(s), {trained:,} training rows), buffer {args.buffer_rows:,} rows, "
          f"median of {args.repeats}\n")
    print("| path | harvest s | train s | total s | end-to-end rows/s |")
    print("|---|---|---|---|---|")
    print(f"| harvest + store training | {h:.1f} | {t:.1f} | {h + t:.1f} | {trained / (h + t):,.0f} |")
    print(f"| streaming (no store) | — | — | {s:.1f} | {trained / s:,.0f} |")
    print(f"\nstreaming / store end-to-end speed: {(h + t) / s:.2f}x")


if __name__ == "__main__":
    main()
