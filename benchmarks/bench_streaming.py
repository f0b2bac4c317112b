"""Streaming training against harvest + store-based training, end to end, on the same tokens.

    python benchmarks/bench_streaming.py [--tokens 200000] [--batch-size 1024] [--epochs 1] [--repeats 2]
    python benchmarks/bench_streaming.py --d-model 768 --tokens 16384 --buffer-rows 4096   # a wide series

Every path trains the same ReLU crosscoder (F = 4 × d) for the same steps on the same tokens
(``--epochs`` passes over the train split). "store" times ``harvest`` (into RUN/activations)
then ``train`` on it, one after the other; "stream" times streaming training (the checkpoints
kept loaded, the next chunk harvested by the producer thread while the trainer consumes the
buffer, torch's threads halved meanwhile); "sequential" the same with each chunk harvested when
the buffer asks for it (``Harvester(config, overlap=False)``: the code before #26, all threads);
"store-half" and "sequential-half" run at half of ``--threads`` (controls: what the threads
alone do, apart from the overlap). Each timing includes loading the models. The series: the toy world (M = 2, d = 128), or with ``--d-model`` a synthetic wide one
(randomly initialised GPT-NeoX, ``--blocks`` blocks, 12 heads, MLP 4·d, the toy world's
tokenizer and corpus, checkpoint k = step0 + 5%·k noise; built once under ``/tmp``), site =
the last block. The paths run interleaved (their order rotates each repeat) and each repeat's
ratios are printed beside the medians, with the machine (:mod:`_machine`): on a shared machine
only ratios from the same repeat compare the code. Rows/s are training rows (steps × batch) per
wall second. Streaming re-harvests the corpus every epoch and a store reads it again; at the end
of training the buffer has harvested up to (1 - refill_frac) of a buffer beyond the rows used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _machine import load, machine_line

# name -> (overlap: None for the store path, torch threads as a share of --threads)
PATHS = {"store": (None, 1), "stream": (True, 1), "sequential": (False, 1), "store-half": (None, 0.5),
         "sequential-half": (False, 0.5)}


def wide_series(root: Path, d: int, blocks: int, checkpoints: int) -> Path:
    """The synthetic wide series (built when ``series.json`` is missing): ``step{1000·k}`` for k < checkpoints."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from crosstime.checkpoints import Checkpoint, write_series_manifest
    from crosstime.toy import toy_world

    if (root / "series.json").exists():
        return root
    world = toy_world(progress=False)
    toy = json.loads((world / "step128" / "config.json").read_text())
    shutil.copytree(world / "corpus", root / "corpus", dirs_exist_ok=True)
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=toy["vocab_size"], hidden_size=d, num_hidden_layers=blocks, num_attention_heads=12,
        intermediate_size=4 * d, max_position_embeddings=128, rotary_pct=0.25, use_parallel_residual=True,
        tie_word_embeddings=False, bos_token_id=toy["bos_token_id"], eos_token_id=toy["eos_token_id"],
        pad_token_id=toy["pad_token_id"]))
    made = []
    for k in range(checkpoints):
        with torch.no_grad():
            for p in model.parameters() if k else ():
                p.add_(0.05 * p.std().nan_to_num() * torch.randn_like(p))
        model.save_pretrained(root / f"step{1000 * k}")
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(world / "step128" / name, root / f"step{1000 * k}" / name)
        made.append(Checkpoint(f"step{1000 * k}", 1000 * k, 1000 * k * 2048))
    write_series_manifest(root, made)
    return root


def _settings(args, rows: int) -> dict:
    steps = max(1, args.epochs * rows // args.batch_size)
    return {"batch_size": args.batch_size, "steps": steps, "lr": 1e-3, "expansion": 4, "val_every": 0,
            "save_every": 10**6, "progress": False}


def train_rows(series: dict, args, run: Path) -> int:
    """The train split's rows (a store's ``n_rows("train")``), from the harvest's own request check."""
    from crosstime.crosscoder import TrainConfig
    from crosstime.crosscoder.streaming import Harvester

    h = Harvester(TrainConfig(run=run, **series, tokens=args.tokens, context_len=64, buffer_rows=args.buffer_rows,
                              steps=1))
    return h.n_train * (h.checked.context_len - h.first)


def run_store(series: dict, run: Path, args, rows: int) -> tuple[float, float, int]:
    """(harvest seconds, training seconds, steps) of harvest + store-based training."""
    from crosstime.crosscoder import TrainConfig
    from crosstime.stages.harvest import harvest
    from crosstime.stages.train import train
    from crosstime.store import HarvestConfig

    t0 = time.perf_counter()
    store = harvest(HarvestConfig(run=run, **series, tokens=args.tokens, context_len=64,
                                  batch_size=args.harvest_batch_size, progress=False))
    t1 = time.perf_counter()
    settings = _settings(args, store.n_rows("train"))
    assert settings["steps"] == _settings(args, rows)["steps"], "the store's train split is the stream's"
    train(TrainConfig(run=run, **settings))
    return t1 - t0, time.perf_counter() - t1, settings["steps"]


def run_stream(series: dict, run: Path, args, rows: int, overlap: bool) -> float:
    """Seconds of streaming training on the same tokens and steps (the train stage's streaming work)."""
    from crosstime import distributed
    from crosstime.crosscoder import TrainConfig
    from crosstime.crosscoder.streaming import Harvester, train_streaming

    t0 = time.perf_counter()
    config = TrainConfig(run=run, **series, tokens=args.tokens, context_len=64,
                         harvest_batch_size=args.harvest_batch_size, buffer_rows=args.buffer_rows,
                         **_settings(args, rows))
    train_streaming(Harvester(config, overlap=overlap), config, distributed.join("cpu"))
    return time.perf_counter() - t0


def timed_repeat(i: int, series: dict, args, rows: int, tmp: Path) -> dict:
    """One repeat: every path once, in an order rotated by ``i``; seconds (and CPU seconds, load) of each."""
    out, paths = {}, args.paths[i % len(args.paths):] + args.paths[: i % len(args.paths)]
    for n, path in enumerate(paths):
        overlap, share = PATHS[path]
        torch.set_num_threads(max(1, round(args.threads * share)))
        before, c0 = load(), time.process_time()
        if overlap is None:
            h, t, steps = run_store(series, tmp / f"p{n}", args, rows)
            out[path] = {"harvest": h, "train": t, "total": h + t, "steps": steps}
        else:
            out[path] = {"total": run_stream(series, tmp / f"p{n}", args, rows, overlap=overlap)}
        out[path].update(cpu=time.process_time() - c0, load=f"{before} → {load()}")
        print(f"repeat {i + 1}, {path}: {out[path]['total']:.1f} s, load {out[path]['load']}", flush=True)
    torch.set_num_threads(args.threads)
    return dict(sorted(out.items(), key=lambda kv: args.paths.index(kv[0])))


def markdown(args, runs: list[dict], d: int, M: int) -> str:
    """The table of medians, then each repeat's ratios (store total / stream; sequential / overlapped)."""
    steps = runs[0]["store"]["steps"]
    med = {p: {k: statistics.median(r[p][k] for r in runs) for k in runs[0][p] if k != "load"} for p in args.paths}
    trained = steps * args.batch_size
    lines = [(f"{args.tokens:,} tokens, M = {M}, d = {d}, F = {4 * d:,}, batch {args.batch_size}, {steps} steps "
             f"({args.epochs} epoch(s), {trained:,} training rows), buffer {args.buffer_rows:,} rows, "
             f"median of {len(runs)}\n"),
             "| path | harvest s | train s | total s | CPU s | end-to-end rows/s |", "|---|---|---|---|---|---|"]
    for p in args.paths:
        h, t = (f"{med[p][k]:.1f}" if k in med[p] else "—" for k in ("harvest", "train"))
        lines.append(f"| {p} | {h} | {t} | {med[p]['total']:.1f} | {med[p]['cpu']:.1f} | "
                     f"{trained / med[p]['total']:,.0f} |")
    others = [p for p in args.paths if p != "stream"]
    lines += ["", ("Each repeat's wall time of every path / the (overlapped) stream's, and the 1-minute load "
              "before each path (in the order run):"), "",
              f"| repeat | first path | loads | {' | '.join(f'{p} / stream' for p in others)} |",
              "|---|---|---|" + "---|" * len(others)]
    for i, r in enumerate(runs):
        first = args.paths[i % len(args.paths)]
        loads = ", ".join(r[p]["load"].split()[0] for p in args.paths[i % len(args.paths):] + args.paths[: i % len(args.paths)])
        ratios = " | ".join(f"{r[p]['total'] / r['stream']['total']:.2f}x" for p in others)
        lines.append(f"| {i + 1} | {first} | {loads} | {ratios} |")
    lines.append("\nmedians of the repeats' ratios: " + "; ".join(
        f"{p} / stream {statistics.median(r[p]['total'] / r['stream']['total'] for r in runs):.2f}x" for p in others))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--buffer-rows", type=int, default=1 << 14)
    parser.add_argument("--harvest-batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=None, help="a synthetic wide series of this width "
                        "(default: the toy world, d = 128)")
    parser.add_argument("--blocks", type=int, default=2, help="--d-model: its blocks (the site: the last)")
    parser.add_argument("--checkpoints", type=int, default=2, help="--d-model: its checkpoints (M)")
    parser.add_argument("--paths", default="store,stream,sequential",
                        help=f"the paths to time, comma-separated, of: {'; '.join(PATHS)} (store and stream needed)")
    args = parser.parse_args()
    args.paths = [p for p in PATHS if p in {x.strip() for x in args.paths.split(",")} | {"store", "stream"}]
    torch.set_num_threads(args.threads)
    from crosstime.toy import toy_world

    if args.d_model is None:
        series = {"series": str(toy_world(progress=False)), "revisions": ["step128", "step1000"], "layer": 1}
        d, M = 128, 2
    else:
        root = Path(tempfile.gettempdir()) / f"bench_streaming_wide_d{args.d_model}_b{args.blocks}_m{args.checkpoints}"
        wide_series(root, args.d_model, args.blocks, args.checkpoints)
        series = {"series": str(root), "revisions": [f"step{1000 * k}" for k in range(args.checkpoints)],
                  "layer": args.blocks - 1}
        d, M = args.d_model, args.checkpoints
    print(machine_line())
    rows = train_rows(series, args, Path(tempfile.mkdtemp(prefix="bench_stream_probe_")))
    runs = []
    for i in range(args.repeats):
        tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
        try:
            runs.append(timed_repeat(i, series, args, rows, tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n### Streaming vs harvest + store training ({'toy world' if args.d_model is None else 'synthetic wide series'})\n")
    print(markdown(args, runs, d, M))
    print(f"\n{machine_line()}")


if __name__ == "__main__":
    main()
