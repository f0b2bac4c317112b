"""Feature dimensionality: the blocked computation against the direct one (a full F × F Gram matrix).

    python benchmarks/bench_geometry.py                 # d = 768, F = 8192 and 16384, one checkpoint
    python benchmarks/bench_geometry.py --d 128 --features 1024 4096

Each width runs in its own process (so peak memory is that computation's own), reports wall time and
the peak resident memory above the process's start, checks the two agree, and prints one markdown row
per setting: direct vs blocked seconds and their ratio, and the memory each needed.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, features: int, d: int, block: int, seed: int) -> dict:
    """One computation in this process: seconds, peak RSS growth (MiB) and the total Σ D_i / d."""
    from crosstime.evaluate.geometry import dimensionality, dimensionality_blocked

    W = torch.randn(features, d, generator=torch.Generator().manual_seed(seed))
    before = _peak_mib()
    start = time.perf_counter()
    D = dimensionality(W) if kind == "direct" else dimensionality_blocked(W, block=block)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": _peak_mib() - before, "total": float(D.sum()) / d,
            "D_head": D[:64].tolist()}


def run_child(kind: str, features: int, d: int, block: int, seed: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--features", str(features), "--d", str(d),
                          "--block", str(block), "--seed", str(seed)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--features", type=int, nargs="+", default=[8192, 16384])
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["direct", "blocked"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.features[0], args.d, args.block, args.seed)))
        return
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    print("| F | d | direct (F × F Gram) | blocked (block rows) | speed ratio | memory: direct / blocked | max rel. diff |")
    print("|---|---|---|---|---|---|---|")
    for F in args.features:
        direct = run_child("direct", F, args.d, args.block, args.seed)
        blocked = run_child("blocked", F, args.d, args.block, args.seed)
        diff = max(abs(a - b) / max(abs(a), 1e-30) for a, b in zip(direct["D_head"], blocked["D_head"]))
        print(f"| {F} | {args.d} | {direct['seconds']:.1f} s, +{direct['peak_mib']:.0f} MiB | "
              f"{blocked['seconds']:.1f} s, +{blocked['peak_mib']:.0f} MiB ({args.block}) | "
              f"{direct['seconds'] / blocked['seconds']:.2f}× | "
              f"{direct['peak_mib'] / max(blocked['peak_mib'], 1):.1f}× | {diff:.1e} |")


if __name__ == "__main__":
    main()
