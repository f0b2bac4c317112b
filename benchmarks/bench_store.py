"""Activation-store benchmark: harvest vs a bare forward, loader vs crosscoder training, memory, shuffling.

    python benchmarks/bench_store.py [--tokens 1000000] [--quick]

Prints a markdown section for benchmarks/RESULTS.md. Everything is built from random
GPT-NeoX models in a temporary folder (no download):

1. Harvest throughput per checkpoint (chunk loop: stopped forward, fp16 encode, sha256, write)
   against a bare full ``model(input_ids)`` forward on the same batches, in the same run,
   interleaved repetitions, median: the toy shape (2 blocks, d=128, T=64, site at block 1)
   and a deeper model (8 blocks, d=256, T=128, site at block 3).
2. Store of ``--tokens`` tokens × 3 checkpoints × d=128 (context 1024): peak RSS of harvesting
   it and of reading one epoch (``/proc/self/status`` VmHWM in fresh subprocesses, minus a
   subprocess that only loads the model and runs one batch / only opens the store), disk
   bytes per token, loader tokens/s vs the tokens/s of a straightforward ReLU crosscoder
   training step (M=3, d=128, F=4096, B=1024, Adam).
3. Shuffle quality: share of a batch from its most frequent context (mean / max over
   batches), distinct contexts per batch, for several block / buffer sizes, against a full
   permutation and no shuffling.
4. Storage dtype: rounding error of float16 and bfloat16 on the stored activations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

WORDS = [f"w{i}" for i in range(96)]


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
                                   eos_token="<eos>")


def make_series(root: Path, layers: int, d: int, max_pos: int, steps=(0, 1, 2)) -> Path:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from crosstime.checkpoints import Checkpoint, write_series_manifest

    tok = tokenizer()
    for step in steps:
        torch.manual_seed(step)
        cfg = GPTNeoXConfig(vocab_size=len(tok), hidden_size=d, num_hidden_layers=layers, num_attention_heads=4,
                            intermediate_size=4 * d, max_position_embeddings=max_pos, rotary_pct=0.25,
                            bos_token_id=2, eos_token_id=3, pad_token_id=0)
        GPTNeoXForCausalLM(cfg).save_pretrained(root / f"step{step}")
        tok.save_pretrained(root / f"step{step}")
    write_series_manifest(root, [Checkpoint(f"step{s}", s, s * 1000) for s in steps])
    return root


def make_corpus(path: Path, n_tokens: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines, total = [], 0
    while total < n_tokens * 1.1:
        n = int(rng.integers(5, 30))
        lines.append(" ".join(WORDS[i] for i in rng.zipf(1.3, n) % len(WORDS)))
        total += n + 1
    path.write_text("\n".join(lines) + "\n")
    return path


def rss_kib(field: str = "VmHWM") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- 1. harvest vs bare forward -------------------------------------------------------------------

def bench_harvest(work: Path, name: str, layers: int, d: int, T: int, layer: int, n_tokens: int, reps: int,
                  series_root: Path | None = None, revision: str = "step0") -> dict:
    from crosstime.series import open_series
    from crosstime.store import HarvestConfig
    from crosstime.stages.harvest import harvest
    from crosstime.store.harvesting import run_items

    if series_root is None:
        series_root = make_series(work / f"series_{name}", layers, d, T, steps=(0,))
        corpus = make_corpus(work / f"corpus_{name}.txt", n_tokens * 2)
    else:  # an existing series with corpus/train.txt (the toy world)
        corpus = series_root
    n_contexts = n_tokens // T
    cfg = HarvestConfig(run=work / f"run_{name}", series=str(series_root), revisions=[revision], layer=layer,
                        corpus=str(corpus), tokens=n_tokens, heldout_tokens=0, context_len=T, batch_size=32, progress=False,
                        chunk_contexts=max(32, n_contexts // 8))
    store = harvest(cfg)  # also gives the tokens and the chunk plan
    model = open_series(series_root).load_model(revision)
    tokens = np.asarray(store.tokens)
    plan = store.manifest["chunks"]
    items = [(revision, i) for i in range(len(plan))]

    def harvest_loop():  # the harvest's own chunk loop: stopped forward, fp16, sha256, write (writer thread)
        run_items(work / f"scratch_{name}", items, plan, tokens, lambda rev: model, layer, 1, cfg.batch_size, "cpu", "float16")

    def bare_forward():
        with torch.inference_mode():
            for s, e in plan:
                for b in range(s, e, cfg.batch_size):
                    model(input_ids=torch.from_numpy(tokens[b : min(b + cfg.batch_size, e)].astype(np.int64)))

    harvest_loop(), bare_forward()  # warm up
    t_h, t_f, c_h, c_f = [], [], [], []
    for _ in range(reps):  # interleaved, so load changes on the shared machine hit both alike
        for fn, wall, cpu in ((harvest_loop, t_h, c_h), (bare_forward, t_f, c_f)):
            t0, p0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - p0)  # CPU seconds of all threads: robust to other users' load
    n = tokens.size
    return {"name": name, "shape": f"{name}: {layers} blocks, d={d}, T={T}, site block {layer}, vocab {model.config.vocab_size}",
            "tokens": n,
            "harvest_tok_s": n / statistics.median(t_h), "forward_tok_s": n / statistics.median(t_f),
            "ratio": statistics.median([f / h for f, h in zip(t_f, t_h)]),
            "ratio_of_medians": statistics.median(t_f) / statistics.median(t_h),
            "pair_ratios": [f / h for f, h in zip(t_f, t_h)], "chunks": len(plan),
            "cpu_ratio": statistics.median(c_f) / statistics.median(c_h)}


# -- 2. memory, loader, crosscoder consumption ----------------------------------------------------------

CHILD = r"""
import json, sys, time, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {bench_dir!r})
from bench_store import rss_kib
mode, series, corpus, run, n_tokens = sys.argv[1:6]
n_tokens = int(n_tokens)
result = {{"start_rss_kib": rss_kib("VmRSS")}}
if mode == "model":
    from crosstime.series import open_series
    from crosstime.sites import read_site
    m = open_series(series).load_model("step0")
    with torch.inference_mode():
        read_site(m, torch.zeros(16, 1024, dtype=torch.long), 1)
elif mode == "harvest":
    from crosstime.store import HarvestConfig
    from crosstime.stages.harvest import harvest
    t0 = time.perf_counter()
    harvest(HarvestConfig(run=run, series=series, layer=1, corpus=corpus, tokens=n_tokens, context_len=1024,
                          batch_size=16, progress=False))
    result["seconds"] = time.perf_counter() - t0
elif mode == "open":
    from crosstime.store import ActivationStore
    s = ActivationStore(run + "/activations")
elif mode == "read":
    from crosstime.store import ActivationStore
    s = ActivationStore(run + "/activations")
    result["start_rss_kib"] = rss_kib("VmRSS")
    t0 = time.perf_counter(); n = 0
    for x in s.batches(batch_size=4096):
        n += len(x)
    result["seconds"] = time.perf_counter() - t0
    result["rows"] = n
result["hwm_kib"] = rss_kib("VmHWM")
print(json.dumps(result))
"""


def child(mode: str, series: Path, corpus: Path, out: Path, n_tokens: int) -> dict:
    code = CHILD.format(bench_dir=str(Path(__file__).parent))
    res = subprocess.run([sys.executable, "-c", code, mode, str(series), str(corpus), str(out), str(n_tokens)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def crosscoder_tokens_per_s(M=3, d=128, F=4096, B=1024, steps=20) -> float:
    """A straightforward ReLU crosscoder training step (decoder-norm-weighted L1, Adam)."""
    torch.manual_seed(0)
    W_enc = torch.nn.Parameter(torch.randn(M, d, F) / np.sqrt(M * d))
    W_dec = torch.nn.Parameter(torch.randn(F, M, d) / np.sqrt(F))
    b_enc = torch.nn.Parameter(torch.zeros(F))
    b_dec = torch.nn.Parameter(torch.zeros(M, d))
    opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=1e-4)
    x = torch.randn(B, M, d)

    def step():
        f = torch.relu(torch.einsum("bmd,mdf->bf", x, W_enc) + b_enc)
        x_hat = torch.einsum("bf,fmd->bmd", f, W_dec) + b_dec
        l2 = (x_hat - x).pow(2).sum(-1).sum(-1).mean()
        l1 = (f * W_dec.norm(dim=-1).sum(-1)).sum(-1).mean()
        loss = l2 + 2.0 * l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * B / (time.perf_counter() - t0)


# -- 3. shuffle quality -----------------------------------------------------------------------------

def batch_context_share(contexts_per_batch: list[np.ndarray]) -> dict:
    shares, distinct = [], []
    for c in contexts_per_batch:
        counts = np.bincount(c - c.min())
        shares.append(counts.max() / len(c))
        distinct.append((counts > 0).sum())
    return {"mean_max_share": float(np.mean(shares)), "max_max_share": float(np.max(shares)),
            "mean_distinct_contexts": float(np.mean(distinct))}


def shuffle_quality(store, B: int = 4096, n_batches: int = 60) -> list[dict]:
    rows = []
    n = store.n_rows("train")
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)[: B * n_batches]
    rows.append({"scheme": "full permutation (ideal)",
                 **batch_context_share([store.locate(perm[i : i + B])[0] for i in range(0, len(perm), B)])})
    seq = np.arange(B * n_batches)
    rows.append({"scheme": "no shuffle", **batch_context_share([store.locate(seq[i : i + B])[0] for i in range(0, len(seq), B)])})
    for block_rows, buffer_rows in [(None, None), (8, None), (128, None), (1024, None), (None, 1 << 16), (None, 1 << 20)]:
        batches = []
        for k, (_x, idx) in enumerate(store.batches(batch_size=B, with_index=True, block_rows=block_rows,
                                                     buffer_rows=buffer_rows)):
            batches.append(store.locate(idx.numpy())[0])
            if k + 1 >= n_batches:
                break
        plan = store.epoch_plan(batch_size=B, block_rows=block_rows, buffer_rows=buffer_rows)
        t0 = time.perf_counter()
        n_read = sum(len(x) for x in store.batches(batch_size=B, block_rows=block_rows, buffer_rows=buffer_rows))
        rows.append({"scheme": f"blocks of {plan['block_rows']} rows, window {plan['buffer_rows']} rows"
                               + (" (default)" if block_rows is None and buffer_rows is None else ""),
                     **batch_context_share(batches), "tok_s": n_read / (time.perf_counter() - t0)})
    return rows


# -- 4. dtype ---------------------------------------------------------------------------------------

def rounding_error(store) -> list[dict]:
    """Relative rounding error of float16 / bfloat16 on float32 activations recomputed for 64 contexts."""
    from crosstime.series import open_series
    from crosstime.sites import read_site

    series = open_series(store.manifest["series"]["source"])
    out = []
    for rev in store.revisions:
        model = series.load_model(rev)
        with torch.inference_mode():
            x = read_site(model, torch.from_numpy(np.asarray(store.tokens[:64], dtype=np.int64)), store.layer)[:, 1:]
        x = x.reshape(-1, x.shape[-1]).double()
        for dt in (torch.float16, torch.bfloat16):
            err = x - x.to(dt).double()
            out.append({"revision": rev, "dtype": str(dt).split(".")[1],
                        "rel_rms": float(err.norm() / x.norm()),
                        "rel_row_max": float((err.norm(dim=-1) / x.norm(dim=-1)).max()),
                        "max_abs": float(x.abs().max())})
    return out


def toy_activations(toy: Path) -> list[dict]:
    """Trained toy-world checkpoints: max |x| at position 0 and elsewhere, float16/bfloat16 rounding error."""
    from crosstime.store.corpus import iter_documents, pack_contexts, resolve_corpus
    from crosstime.series import open_series
    from crosstime.sites import read_site

    series = open_series(toy)
    corpus = resolve_corpus(toy)
    tokens = pack_contexts(iter_documents(corpus.train, corpus.kind), series.load_tokenizer(), 64, 64)
    revs = series.revisions
    out = []
    for rev in sorted({revs[0], revs[len(revs) // 2], revs[-1]}, key=revs.index):
        model = series.load_model(rev)
        for layer in range(model.config.num_hidden_layers):
            with torch.inference_mode():
                h = read_site(model, torch.from_numpy(tokens.astype(np.int64)), layer).double()
            x = h[:, 1:].reshape(-1, h.shape[-1])
            err = {str(dt).split(".")[1]: float((x - x.to(dt).double()).norm() / x.norm()) for dt in (torch.float16, torch.bfloat16)}
            out.append({"revision": rev, "layer": layer, "max_abs_pos0": float(h[:, 0].abs().max()),
                        "max_abs_kept": float(x.abs().max()), "mean_norm_kept": float(x.norm(dim=-1).mean()),
                        "rel_rms_float16": err["float16"], "rel_rms_bfloat16": err["bfloat16"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--harvest-tokens", type=int, default=16_384)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--toy", type=Path, default=None, help="a built toy world: also benchmark its trained checkpoints")
    parser.add_argument("--only-toy", action="store_true", help="run only the toy-world parts")
    args = parser.parse_args()
    # one torch thread: on a shared 2-core machine, OpenMP thread pools stall on descheduled
    # threads and make timings far noisier (and slower) than a single thread
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPU cores shared with other jobs (load average {os.getloadavg()[0]:.1f} at start), "
              f"torch {torch.__version__}, 1 torch thread"}
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        work = Path(tmp)
        report["harvest"] = []
        if args.toy is not None:
            from crosstime.series import open_series

            toy_series = open_series(args.toy)
            cfg = toy_series.load_config(toy_series.revisions[-1])
            T = min(64, cfg.max_position_embeddings)
            report["harvest"].append(bench_harvest(work, "toy world (trained)", cfg.num_hidden_layers, cfg.hidden_size, T,
                                                   cfg.num_hidden_layers - 1, args.harvest_tokens, args.reps,
                                                   series_root=args.toy, revision=toy_series.revisions[-1]))
            report["toy_activations"] = toy_activations(args.toy)
            print(json.dumps(report, indent=1), flush=True)
            if args.only_toy:
                print(render_toy(report))
                return
        report["harvest"] += [
            bench_harvest(work, "random toy shape", 2, 128, 64, 1, args.harvest_tokens, args.reps),
            bench_harvest(work, "random deep", 8, 256, 128, 3, args.harvest_tokens // 2, args.reps),
        ]
        print(json.dumps(report["harvest"], indent=1), flush=True)

        series = make_series(work / "series_mem", 2, 128, 1024)
        corpus = make_corpus(work / "corpus_mem.txt", int(args.tokens * 1.1))
        out = work / "run_mem"
        base = child("model", series, corpus, out, args.tokens)
        harv = child("harvest", series, corpus, out, args.tokens)
        opened = child("open", series, corpus, out, args.tokens)
        read = child("read", series, corpus, out, args.tokens)
        from crosstime.store import ActivationStore

        store = ActivationStore(out / "activations")
        out = store.root
        disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        report["memory"] = {
            "tokens": store.manifest["n_tokens"], "checkpoints": len(store.revisions), "d": store.d_model,
            "model_only_hwm_mib": base["hwm_kib"] / 1024, "harvest_hwm_mib": harv["hwm_kib"] / 1024,
            "harvest_beyond_model_mib": (harv["hwm_kib"] - base["hwm_kib"]) / 1024,
            "harvest_seconds": harv["seconds"],
            "open_hwm_mib": opened["hwm_kib"] / 1024, "read_hwm_mib": read["hwm_kib"] / 1024,
            "read_beyond_open_mib": (read["hwm_kib"] - opened["hwm_kib"]) / 1024,
            "disk_bytes": disk, "bytes_per_token": disk / store.manifest["n_tokens"],
            "bytes_per_token_formula": store.bytes_per_token,
        }
        loader_tok_s = read["rows"] / read["seconds"]
        cc = 0.0
        for threads in (1, 2):  # the faster one: a conservative consumption estimate
            torch.set_num_threads(threads)
            cc = max(cc, crosscoder_tokens_per_s())
        torch.set_num_threads(1)
        report["loader"] = {"loader_tok_s": loader_tok_s, "crosscoder_step_tok_s": cc, "ratio": loader_tok_s / cc}
        print(json.dumps({k: report[k] for k in ("memory", "loader")}, indent=1), flush=True)
        report["shuffle"] = shuffle_quality(store)
        report["dtype"] = rounding_error(store)
    print(json.dumps(report, indent=1))
    print(render(report))


def render_toy(r: dict) -> str:
    lines = [f"{r['date']}; {r['machine']}.", "", "| model | tokens (chunks) | harvest tok/s | bare forward tok/s | ratio (wall) | ratio (CPU time) |",
             "|---|---|---|---|---|---|"]
    for h in r["harvest"]:
        lines.append(f"| {h['shape']} | {h['tokens']:,} ({h['chunks']}) | {h['harvest_tok_s']:,.0f} | {h['forward_tok_s']:,.0f} "
                     f"| {h['ratio']:.2f}× | {h['cpu_ratio']:.2f}× |")
    lines += ["", "| checkpoint | block | max abs, position 0 | max abs, kept positions | mean row norm (kept) "
              "| float16 rel. RMS error | bfloat16 rel. RMS error |", "|---|---|---|---|---|---|---|"]
    for a in r.get("toy_activations", []):
        lines.append(f"| {a['revision']} | {a['layer']} | {a['max_abs_pos0']:.3g} | {a['max_abs_kept']:.3g} | {a['mean_norm_kept']:.3g} "
                     f"| {a['rel_rms_float16']:.2e} | {a['rel_rms_bfloat16']:.2e} |")
    return "\n".join(lines)


def render(r: dict) -> str:
    lines = [f"## Activation store (benchmarks/bench_store.py)", "", f"{r['date']}; {r['machine']}.", ""]
    lines += ["### Harvest vs bare full forward (same batches, same run; ratio = median over interleaved pairs)", "",
              "| model | tokens (chunks) | harvest tok/s | bare forward tok/s | ratio (wall) | ratio (CPU time) |", "|---|---|---|---|---|---|"]
    for h in r["harvest"]:
        lines.append(f"| {h['shape']} | {h['tokens']:,} ({h['chunks']}) | {h['harvest_tok_s']:,.0f} | {h['forward_tok_s']:,.0f} "
                     f"| {h['ratio']:.2f}× | {h['cpu_ratio']:.2f}× |")
    m, lo = r["memory"], r["loader"]
    lines += ["", f"### Store of {m['tokens']:,} tokens × {m['checkpoints']} checkpoints × d={m['d']} (context 1024)", "",
              f"- harvest: {m['harvest_seconds']:.0f} s; peak RSS {m['harvest_hwm_mib']:.0f} MiB vs {m['model_only_hwm_mib']:.0f} MiB "
              f"for loading the model and running one batch → **{m['harvest_beyond_model_mib']:.0f} MiB beyond the model**",
              f"- reading one epoch (B=4096, M=3, normalised float32): peak RSS {m['read_hwm_mib']:.0f} MiB vs "
              f"{m['open_hwm_mib']:.0f} MiB after opening the store → **{m['read_beyond_open_mib']:.0f} MiB**",
              f"- disk: {m['disk_bytes'] / 2**20:.0f} MiB = **{m['bytes_per_token']:.1f} bytes per token** "
              f"(3 × 128 × 2 B activations + 4 B token id, per kept row: {m['bytes_per_token_formula']:.1f})",
              f"- loader: **{lo['loader_tok_s']:,.0f} tokens/s** vs a ReLU crosscoder training step (M=3, d=128, F=4096, "
              f"B=1024, Adam) consuming {lo['crosscoder_step_tok_s']:,.0f} tokens/s → **{lo['ratio']:.0f}×**", "",
              "### Shuffle quality (first 60 batches of 4096 rows; 1023 rows per context)", "",
              "| scheme | mean share of batch from its top context | worst batch | distinct contexts per batch | epoch read tok/s |", "|---|---|---|---|---|"]
    for s in r["shuffle"]:
        speed = f"{s['tok_s']:,.0f}" if "tok_s" in s else "–"
        lines.append(f"| {s['scheme']} | {100 * s['mean_max_share']:.2f}% | {100 * s['max_max_share']:.2f}% "
                     f"| {s['mean_distinct_contexts']:.0f} | {speed} |")
    lines += ["", "### Storage dtype: rounding error on the activations (64 contexts per checkpoint)", "",
              "| checkpoint | dtype | relative RMS error | worst row (relative) | max abs activation |", "|---|---|---|---|---|"]
    for e in r["dtype"]:
        lines.append(f"| {e['revision']} | {e['dtype']} | {e['rel_rms']:.2e} | {e['rel_row_max']:.2e} | {e['max_abs']:.3g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
