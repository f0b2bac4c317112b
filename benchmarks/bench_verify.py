"""What verified reads cost: training (and reading) from the toy world's store, checks on vs bypassed.

    python benchmarks/bench_verify.py [--steps 400] [--reps 5] [--read-reps 15] [--threads 1] [--work DIR]

Prints JSON and a markdown section for benchmarks/RESULTS.md. The store is the demo's: the
toy world (``crosstime.toy.toy_world()``), checkpoints step64, step512, step1000 at layer 0,
400K tokens (harvested once into ``--work``, then reused). Every measurement runs in a fresh
subprocess (so no file is remembered from an earlier read) and times one workload:

- ``train``: ``crosstime.crosscoder.fit(store, TrainSettings(n_features=1024, batch_size=1024,
  steps=N, val_every=0))``, the demo's crosscoder, N steps (400 ≈ one epoch of the store);
- ``read``: one epoch of the store's shuffled batches alone (B = 1024, normalised), the
  upper bound of what verification can cost relative to any consumer.

under four conditions, interleaved (the order rotates every repetition, so the machine's
load hits each alike):

- ``bypassed``: ``ActivationStore(path, verify=False)``, no checks (a switch that exists only
  for this benchmark);
- ``first read``: a copy of the store (new inodes and ctimes, so no record matches) with no
  ``.verified.json``: the process hashes every chunk file it opens (the worst case: a copied
  or re-mounted store, once);
- ``recorded``: the same copy, with the ``.verified.json`` the previous process wrote: stat,
  sidecar and manifest checks, no hashing;
- ``harvested``: the store the harvest wrote (its sidecars' records match): no hashing.

Throughput = rows / wall seconds of the workload (store opening included, imports not);
ratio = median over repetitions of (condition / bypassed of the same repetition). Since
whole-process timings on a shared machine vary by several percent, each process also
measures the time its checks took (``Verifier.chunk``, ``.tokens``, ``.flush``; hashing
included, and separately): the cost of verification itself, free of that noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REVISIONS = ["step64", "step512", "step1000"]
CONDITIONS = ["bypassed", "first read", "recorded", "harvested"]

CHILD = r"""
import json, os, sys, time
import torch
torch.set_num_threads(int(sys.argv[5]))
from crosstime.crosscoder import TrainSettings, fit
from crosstime.store import ActivationStore, integrity
mode, path, verify, steps = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
hashed = {"seconds": 0.0, "bytes": 0, "files": 0}
plain = integrity.hash_fd
def timed(fd, *args):
    t = time.perf_counter()
    out = plain(fd, *args)
    hashed["seconds"] += time.perf_counter() - t
    hashed["bytes"] += os.fstat(fd).st_size
    hashed["files"] += 1
    return out
integrity.hash_fd = timed
checks = {"seconds": 0.0}
def timing(method):
    def run(*args, **kwargs):
        t = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            checks["seconds"] += time.perf_counter() - t
    return run
integrity.Verifier.chunk = timing(integrity.Verifier.chunk)
integrity.Verifier.tokens = timing(integrity.Verifier.tokens)
integrity.Verifier.flush = timing(integrity.Verifier.flush)
t0, c0 = time.perf_counter(), time.process_time()
store = ActivationStore(path, verify=verify)
if mode == "train":
    fit(store, TrainSettings(n_features=1024, batch_size=1024, steps=steps, val_every=0, progress=False, seed=0))
    rows = steps * 1024
else:
    rows = sum(len(x) for x in store.batches(batch_size=1024))
store.close()
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "rows": rows,
                  "check_seconds": checks["seconds"], **{"hash_" + k: v for k, v in hashed.items()}}))
"""


def build_store(work: Path) -> tuple[Path, Path]:
    """The demo's store (harvested once into ``work``) and a copy of it."""
    from crosstime.store import ActivationStore, HarvestConfig
    from crosstime.stages.harvest import harvest
    from crosstime.toy import toy_world

    original = work / "run" / "activations"
    if not (original / "manifest.json").is_file():
        t0 = time.perf_counter()
        harvest(HarvestConfig(run=work / "run", series=str(toy_world(progress=False)), revisions=REVISIONS, layer=0,
                              tokens=400_000, progress=False))
        print(f"harvested in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    copy = work / "copy"
    if not (copy / "manifest.json").is_file():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(original, copy, ignore=shutil.ignore_patterns(".verified.json"))
    assert ActivationStore(original).revisions == REVISIONS
    return original, copy


def measure(mode: str, condition: str, original: Path, copy: Path, steps: int, threads: int) -> dict:
    path = original if condition == "harvested" else copy
    if condition == "first read":
        (copy / ".verified.json").unlink(missing_ok=True)
    verify = "0" if condition == "bypassed" else "1"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), verify, str(steps), str(threads)],
                            capture_output=True, text=True, env=env, check=False)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    row = json.loads(result.stdout.strip().splitlines()[-1])
    if condition == "first read":
        assert row["hash_files"] > 0, "the first read hashed nothing: the copy's records match"
    elif row["hash_files"]:
        raise RuntimeError(f"{condition} hashed {row['hash_files']} files")
    return {"mode": mode, "condition": condition, **row, "rows_s": row["rows"] / row["seconds"]}


def summarise(rows: list[dict]) -> dict:
    """Per workload and condition: median rows/s, median paired ratio to bypassed, and the time the checks
    themselves took inside the process (hashing included) as a share of the bypassed workload's time."""
    out = {}
    for mode in sorted({r["mode"] for r in rows}):
        per = {c: [r for r in rows if r["mode"] == mode and r["condition"] == c] for c in CONDITIONS}
        base = [r["rows_s"] for r in per["bypassed"]]
        base_s = statistics.median(r["seconds"] for r in per["bypassed"])
        out[mode] = {c: {"rows_s": statistics.median(r["rows_s"] for r in per[c]),
                         "ratio": statistics.median(r["rows_s"] / b for r, b in zip(per[c], base)),
                         "ratios": [r["rows_s"] / b for r, b in zip(per[c], base)],
                         "seconds": statistics.median(r["seconds"] for r in per[c]),
                         "check_seconds": statistics.median(r["check_seconds"] for r in per[c]),
                         "check_share": statistics.median(r["check_seconds"] for r in per[c]) / base_s,
                         "hash_seconds": statistics.median(r["hash_seconds"] for r in per[c]),
                         "hash_mb": per[c][0]["hash_bytes"] / 2**20, "hash_files": per[c][0]["hash_files"],
                         "reps": len(per[c])}
                     for c in CONDITIONS}
    return out


def render(report: dict) -> str:
    lines = ["### Verified reads (`benchmarks/bench_verify.py`)", "",
             (f"{report['date']}; {report['machine']}. Store: toy world, {', '.join(REVISIONS)}, layer 0, "
              f"{report['store_rows']:,} rows per checkpoint ({report['store_mb']:.0f} MiB of chunks); interleaved "
              "repetitions, each measurement a fresh process."), "",
             ("| workload (repetitions) | condition | rows/s (median) | vs bypassed (median of paired ratios) "
              "| checks inside the process (s) | as share of the workload | hashed |"),
             "|---|---|---|---|---|---|---|"]
    names = {"train": f"training, {report['steps']} steps of 1024 rows, F = 1024",
             "read": "one epoch of batches alone"}
    for mode, by in report["summary"].items():
        for c, s in by.items():
            hashed = f"{s['hash_files']} files, {s['hash_mb']:.0f} MiB in {s['hash_seconds']:.2f} s" if s["hash_files"] else "–"
            check = "–" if c == "bypassed" else f"{s['check_seconds']:.3f}"
            share = "–" if c == "bypassed" else f"{100 * s['check_share']:.2f}%"
            lines.append(f"| {names[mode]} ({s['reps']}) | {c} | {s['rows_s']:,.0f} | {s['ratio']:.3f} | {check} "
                         f"| {share} | {hashed} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the training workload")
    parser.add_argument("--read-reps", type=int, default=15, help="repetitions of the (short) reading workload")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default="train,read")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_verify"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    original, copy = build_store(args.work)
    modes = args.modes.split(",")
    for mode in modes:  # warm-up: page cache, .verified.json (not counted)
        for condition in CONDITIONS:
            measure(mode, condition, original, copy, min(args.steps, 20), args.threads)
    rows = []
    reps = {"train": args.reps, "read": args.read_reps}
    for rep in range(max(reps[m] for m in modes)):
        order = CONDITIONS[rep % len(CONDITIONS):] + CONDITIONS[: rep % len(CONDITIONS)]
        for mode in (m for m in modes if rep < reps[m]):
            for condition in order:
                rows.append(measure(mode, condition, original, copy, args.steps, args.threads))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    from crosstime.store import ActivationStore

    store = ActivationStore(original)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (load average "
                         f"{os.getloadavg()[0]:.1f} at the end), {args.threads} torch thread(s)",
              "steps": args.steps, "reps": reps, "store_rows": store.n_rows("train") + store.n_rows("heldout"),
              "store_mb": sum(p.stat().st_size for p in original.glob("*/*.bin")) / 2**20,
              "rows": rows, "summary": summarise(rows)}
    print(json.dumps(report, indent=1))
    print(render(report))


if __name__ == "__main__":
    main()
