"""Scan-stage timing on the toy world (target: whole scan ≤ 2 minutes on 2 CPU cores).

    python benchmarks/bench_scan.py [--threads N] [--baseline]

Runs ``crosstime.scan.scan`` over every toy checkpoint and every toy task with similarity
and dynamics. ``--baseline`` also times the obvious baseline in the same run: the same
metric with batch size 1 (one forward per pair, no padding), to show what batching buys.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the scan's own choice)")
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()

    from crosstime.scan import ScanConfig, print_scan_summary
    from crosstime.stages.scan import scan
    from crosstime.toy import toy_world

    root = toy_world()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = scan(ScanConfig(run=f"{tmp}/run", series=str(root), layer=1, progress=False, threads=args.threads))
        scan_s = time.perf_counter() - start
        print_scan_summary(result)
        print(f"scan: {len(result.checkpoints)} checkpoints × {len(result.tasks)} tasks, "
              f"{scan_s:.1f}s wall, threads={args.threads or 'auto'} ({platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
        if args.baseline:
            from crosstime.series import open_series
            from crosstime.tasks import expand_task_names, load_task, pair_metric

            series = open_series(root)
            tok = series.load_tokenizer()
            tasks = [load_task(n, tok, search_dirs=[root / "pairs"]) for n in expand_task_names(["toy"])]
            model = series.load_model(series.revisions[-1])
            torch.set_num_threads(args.threads or 1)
            t0 = time.perf_counter()
            for task in tasks:
                pair_metric(model, task, batch_size=1)
            one = time.perf_counter() - t0
            t0 = time.perf_counter()
            for task in tasks:
                pair_metric(model, task, batch_size=64)
            batched = time.perf_counter() - t0
            print(f"pair metric, one checkpoint, all toy tasks: batch 1 {one:.2f}s, batch 64 {batched:.2f}s "
                  f"(×{one / batched:.1f})")


if __name__ == "__main__":
    main()
