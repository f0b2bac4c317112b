"""Evaluate-stage acceptance on the toy world (targets: evaluation ≤ 2 minutes on 2 CPU cores,
ΔCE < 0.35 nats for every checkpoint of a 3-checkpoint crosscoder bracketing the agreement jump).

    python benchmarks/bench_evaluate.py triplet [--run DIR] [--features 4096] [--tokens 1000000] [--train-tokens N] ...
    python benchmarks/bench_evaluate.py all     [--run DIR] [--features 2048] ...

``triplet``: picks the checkpoints before, inside and after the largest jump of the mean toy
agreement accuracy (from the toy build's accuracy table), harvests them, trains a crosscoder
and evaluates it; ``all``: the same over every toy checkpoint (M ≈ 13), for the emergence view.
Prints the per-checkpoint table and the timings of each stage (harvest and training are not
part of the evaluation budget).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def bracket(accuracy: dict[str, dict[str, float]], task: str | None = None) -> list[str]:
    """Three revisions around the rise of one task's accuracy (default: the mean over tasks):
    the last still near the low plateau, one inside the rise, the first near the top."""
    revs = list(accuracy)
    mean = [a[task] if task else sum(a.values()) / len(a) for a in accuracy.values()]
    lo_acc, hi_acc = min(mean), max(mean)
    # before: last checkpoint still within 10% of the low plateau; after: first within 10% of the top
    span = hi_acc - lo_acc
    after = next(i for i, v in enumerate(mean) if v >= hi_acc - 0.1 * span)
    before = max(i for i, v in enumerate(mean[: after + 1]) if v <= lo_acc + 0.1 * span)
    middle = (before + after) // 2 if after - before > 1 else after
    if middle == after and after + 1 < len(revs):
        after = after + 1
    picks = sorted({before, middle, after})
    print(f"{task or 'mean'} accuracy:", " ".join(f"{r}={v:.2f}" for r, v in zip(revs, mean)))
    return [revs[i] for i in picks]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["triplet", "all"])
    p.add_argument("--run", default=None)
    p.add_argument("--toy", default=None, help="an already built toy world folder (default: crosstime.toy.toy_world())")
    p.add_argument("--task", default="simple_agreement", help="toy task whose accuracy jump is bracketed ('' = mean)")
    p.add_argument("--heldout-tokens", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layer", type=int, default=1)
    p.add_argument("--tokens", type=int, default=1_000_000, help="harvested training tokens")
    p.add_argument("--features", type=int, default=4096)
    p.add_argument("--variant", default="relu")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--train-tokens", type=int, default=None, help="crosscoder training rows (default: 4 epochs)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sparsity", type=float, default=2.0)
    p.add_argument("--skip-train", action="store_true", help="reuse RUN/crosscoder")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from crosstime.crosscoder import TrainConfig, variant
    from crosstime.evaluate import EvaluateConfig, format_table, paper_row
    from crosstime.stages.evaluate import evaluate
    from crosstime.stages.harvest import HarvestConfig, harvest
    from crosstime.stages.train import train
    from crosstime.toy import read_build, toy_world

    root = Path(args.toy) if args.toy else toy_world()
    build = read_build(root)
    revisions = bracket(build["accuracy"], args.task or None) if args.mode == "triplet" else list(build["accuracy"])
    run = Path(args.run or f"runs/bench_evaluate_{args.mode}")
    print(f"toy world {root}\nrevisions {revisions}\nrun {run}")
    t = time.perf_counter()
    store = harvest(HarvestConfig(run=run, series=str(root), revisions=revisions, layer=args.layer, tokens=args.tokens,
                                  heldout_tokens=args.heldout_tokens, progress=False))
    harvest_s = time.perf_counter() - t
    print(f"harvest: {store.n_rows('train')} train rows, {store.n_rows('heldout')} held-out rows, {harvest_s:.1f}s")
    train_s = 0.0
    if not args.skip_train:
        train_tokens = args.train_tokens or 4 * store.n_rows("train")
        own = {"k": args.k} if "k" in variant(args.variant).settings.model_fields else {}
        cfg = TrainConfig(run=run, variant=args.variant, n_features=args.features, variant_settings=own, lr=args.lr,
                          batch_size=args.batch_size, tokens=train_tokens, sparsity_coeff=args.sparsity,
                          progress=False, val_every=0, save_every=10**9)
        t = time.perf_counter()
        train(cfg)
        train_s = time.perf_counter() - t
        print(f"train: {args.variant} F={args.features}, {train_tokens} rows, {train_s:.1f}s")
    t = time.perf_counter()
    result = evaluate(EvaluateConfig(run=run, progress=False))
    eval_s = time.perf_counter() - t
    from rich.console import Console

    Console(width=160).print(format_table(result))
    print(paper_row(result))
    print(json.dumps({"timing": result.timing, "emergence": result.decoder.emergence.counts_live,
                      "trajectory_labels_live": result.decoder.trajectory_labels_live,
                      "classes_live": result.decoder.classes_live}, indent=1))
    print(f"evaluate: {eval_s:.1f}s wall on {args.threads} threads ({platform.processor() or platform.machine()}); "
          f"harvest {harvest_s:.1f}s, train {train_s:.1f}s (not part of the evaluation budget)")


if __name__ == "__main__":
    main()
