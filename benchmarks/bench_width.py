"""A real width: crosstime at Pythia-160M's shape (d = 768), measured on this machine.

    python benchmarks/bench_width.py                      # series (cached), harvest, step, gemm
    python benchmarks/bench_width.py --part harvest --tokens 20000
    python benchmarks/bench_width.py --part step --batch-size 1024 --steps 3
    python benchmarks/bench_width.py --part stream        # needs crosstime.crosscoder.streaming
    python benchmarks/bench_width.py --part parallel      # needs crosstime.crosscoder.parallel (torchrun/gloo)

Prints a markdown section for benchmarks/RESULTS.md and writes the numbers as JSON
(``--json``). Nothing is downloaded:

series    A local series of randomly initialised GPT-NeoX checkpoints with Pythia-160M's shape
          (12 blocks, d = 768, 12 heads, MLP 3072, rotary 25%, parallel residual, vocabulary
          50,304, 2048 positions): one seeded initialisation ``step0`` and ``--checkpoints - 1``
          more made by adding seeded noise of a growing size (``θ_k = θ_0 + 0.05·k·std(θ)·ε_k``).
          The tokenizer is a WordLevel tokenizer over 50,304 synthetic words (``<|endoftext|>`` = 0,
          as in Pythia), so every id of the embedding is reachable. Built once under
          ``$CROSSTIME_CACHE/bench_width/`` (default ``~/.cache/crosstime``); a ``built.json``
          written last marks a finished build.
harvest   ``crosstime.store.harvest`` of every checkpoint at ``--layer`` (default 6, the second
          paper's Pythia-160M site) for ``--tokens`` tokens: wall and CPU seconds, tokens/s
          (kept rows × checkpoints per second), bytes per kept token on disk (all files of the
          store) against M·d·2 + 4, the model-load time, the analytic forward FLOP/token and the
          GFLOP/s that implies.
step      One ReLU crosscoder training step at M = 4, d = 768, F = 16,384, fp32 (the recipe's
          step + gradient clipping + fused Adam, i.e. the trainer's step without data loading):
          the hand-derived fused step against autograd (``fused=False``), ms/step and rows/s;
          useful FLOP/step 10·B·M·d·F and the GFLOP/s that implies.
gemm      The fp32 matmul rate of this CPU at the step's encoder shape [B, M·d] @ [M·d, F]:
          the denominator of the CPU → GPU factor in docs/gpu-guide.md.
stream    Streaming training tokens/s (no store), when src/crosstime/crosscoder/streaming.py exists.
parallel  Checkpoint-parallel memory per rank (M = 32, d = 768, F = 8,192, 4 gloo ranks) against
          replication, when src/crosstime/crosscoder/parallel.py exists.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
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

# Pythia-160M (EleutherAI/pythia-160m config.json)
VOCAB, D, LAYERS, HEADS, MLP, POSITIONS = 50304, 768, 12, 12, 3072, 2048
PERTURBATION = 0.05  # noise per checkpoint index, in units of each tensor's std


def cache_root() -> Path:
    return Path(os.environ.get("CROSSTIME_CACHE", "~/.cache/crosstime")).expanduser() / "bench_width"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- series ------------------------------------------------------------------------------------------

def words() -> list[str]:
    return ["<|endoftext|>", "<|padding|>", *(f"w{i}" for i in range(2, VOCAB))]


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words())}, unk_token="<|padding|>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|padding|>", unk_token="<|padding|>")


def neox_config():
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         intermediate_size=MLP, max_position_embeddings=POSITIONS, rotary_pct=0.25,
                         rotary_emb_base=10000, use_parallel_residual=True, tie_word_embeddings=False,
                         layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=0)


def build_series(root: Path, n_checkpoints: int, seed: int = 0) -> Path:
    """The cached series (built when ``built.json`` is missing): ``step{1000·k}`` for k < n_checkpoints."""
    from transformers import GPTNeoXForCausalLM

    from crosstime.checkpoints import Checkpoint, write_series_manifest

    if (root / "built.json").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    tok = tokenizer()
    torch.manual_seed(seed)
    base = GPTNeoXForCausalLM(neox_config())
    initial = {k: v.clone() for k, v in base.state_dict().items()}
    checkpoints = []
    for k in range(n_checkpoints):
        g = torch.Generator().manual_seed(seed * 1000 + k + 1)
        with torch.no_grad():
            for name, p in base.state_dict().items():
                if p.is_floating_point():  # rotary inv_freq and masks are buffers: kept as they are
                    noise = torch.randn(p.shape, generator=g) if k else torch.zeros_like(p)
                    p.copy_(initial[name] + PERTURBATION * k * initial[name].float().std().nan_to_num() * noise)
        rev = f"step{1000 * k}"
        base.save_pretrained(root / rev)
        tok.save_pretrained(root / rev)
        checkpoints.append(Checkpoint(rev, 1000 * k, 1000 * k * 2_097_152))
    write_series_manifest(root, checkpoints)
    (root / "built.json").write_text(json.dumps({"checkpoints": n_checkpoints, "seed": seed,
                                                 "perturbation": PERTURBATION}))
    return root


def make_corpus(path: Path, n_tokens: int, seed: int = 0) -> Path:
    """Documents of 50–400 Zipf-distributed words over the whole vocabulary."""
    rng = np.random.default_rng(seed)
    lines, total = [], 0
    while total < n_tokens * 1.2:
        n = int(rng.integers(50, 400))
        ids = 2 + (rng.zipf(1.2, n) - 1) % (VOCAB - 2)
        lines.append(" ".join(f"w{i}" for i in ids))
        total += n
    path.write_text("\n".join(lines) + "\n")
    return path


# -- harvest -----------------------------------------------------------------------------------------

def forward_flop_per_token(layer: int, context: int) -> float:
    """Forward FLOP per token of blocks 0..layer (the harvest stops after the site):
    2 · 12·d² weights per block + causal attention 2 · context · d per block (Kaplan et al. 2020)."""
    blocks = layer + 1
    return blocks * (2 * 12 * D * D + 2 * context * D)


def bench_harvest(series: Path, work: Path, layer: int, n_tokens: int, context: int, batch_size: int) -> dict:
    from crosstime.series import open_series
    from crosstime.store import HarvestConfig
    from crosstime.stages.harvest import harvest

    revisions = [c.revision for c in open_series(series).checkpoints]
    t0 = time.perf_counter()
    open_series(series).load_model(revisions[-1])
    load_s = time.perf_counter() - t0
    corpus = make_corpus(work / "corpus.txt", n_tokens)
    cfg = HarvestConfig(run=work / "run", series=str(series), revisions=revisions, layer=layer, corpus=str(corpus),
                        tokens=n_tokens, heldout_tokens=0, context_len=context, batch_size=batch_size,
                        progress=False, device="cpu")
    before = load()
    t0, c0 = time.perf_counter(), time.process_time()
    store = harvest(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    kept = store.n_rows("train")
    files = [p for p in (work / "run" / "activations").rglob("*") if p.is_file()]
    disk = sum(p.stat().st_size for p in files)
    flop = forward_flop_per_token(layer, context)
    tokens_forwarded = np.asarray(store.tokens).size * len(revisions)  # position 0 is computed, then dropped
    return {"checkpoints": len(revisions), "layer": layer, "context": context, "tokens_requested": n_tokens,
            "kept_rows": kept, "wall_s": wall, "cpu_s": cpu, "load_before": before, "load_after": load(),
            "tok_s": kept * len(revisions) / wall, "model_load_s": load_s, "tokens_forwarded": tokens_forwarded,
            "bytes_per_token": disk / kept, "expected_bytes_per_token": len(revisions) * D * 2 + 4,
            "flop_per_token": flop, "gflop_s": tokens_forwarded * flop / wall / 1e9,
            "gflop_s_excluding_loads": tokens_forwarded * flop / max(wall - len(revisions) * load_s, 1e-9) / 1e9}


# -- crosscoder step and matmul rate -------------------------------------------------------------------

def timed(fn, steps: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of ``steps`` calls after one warm-up; their CPU seconds (all threads) go to ``cpu``."""
    fn()  # warm-up: allocations, fused-Adam state
    out = []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        out.append(time.perf_counter() - t)
        if cpu is not None:
            cpu.append(time.process_time() - c)
    return out


def step_seconds(x: torch.Tensor, F: int, fused: bool, steps: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``steps`` ReLU training steps on ``x [B, M, d]`` (the recipe's step,
    gradient clipping, fused Adam), after one warm-up step."""
    from crosstime.crosscoder import CrosscoderConfig, TrainSettings, build
    from crosstime.crosscoder.recipe import StepContext
    from crosstime.crosscoder.relu import ReLURecipe
    from crosstime.crosscoder.training import clip_gradients

    B, M, d = x.shape
    settings = TrainSettings(n_features=F, batch_size=B, variant_settings={"fused": fused}, device="cpu", progress=False)
    model = build(CrosscoderConfig(n_checkpoints=M, d_model=d, n_features=F))
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=settings.lr, betas=settings.adam_betas, fused=True)
    recipe = ReLURecipe(settings)
    ctx = StepContext(settings, 0, 1000, 2.0, torch.zeros(F, dtype=torch.bool))

    def step():
        recipe.step(model, x, ctx)
        clip_gradients(params, 1.0, opt)
        opt.step()

    cpu: list[float] = []
    return timed(step, steps, cpu), cpu


def bench_step(M: int, F: int, B: int, steps: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(B, M, D)
    flop = 10 * B * M * D * F
    result = {"M": M, "d": D, "F": F, "B": B, "flop_per_step": flop, "load_before": load()}
    for fused in (True, False):  # one model at a time: 2·M·d·F fp32 weights + grads + Adam = 1.6 GB at F = 16,384
        t, cpu = step_seconds(x, F, fused, steps)
        result["fused" if fused else "autograd"] = {
            "ms_per_step": 1e3 * statistics.median(t), "best_ms": 1e3 * min(t), "times_s": t,
            "cpu_ms_per_step": 1e3 * statistics.median(cpu), "rows_s": B / statistics.median(t),
            "gflop_s": flop / statistics.median(t) / 1e9}
    result["load_after"] = load()
    return result


def bench_gemm(M: int, F: int, B: int, reps: int = 5) -> dict:
    """fp32 GEMM rate at the encoder's shape [B, M·d] @ [M·d, F], best of ``reps``."""
    X, W = torch.randn(B, M * D), torch.randn(M * D, F)
    cpu: list[float] = []
    t = timed(lambda: X @ W, reps, cpu)
    flop = 2 * B * M * D * F
    return {"shape": f"[{B}, {M * D}] @ [{M * D}, {F}]", "best_gflop_s": flop / min(t) / 1e9,
            "median_gflop_s": flop / statistics.median(t) / 1e9, "gflop_per_cpu_s": flop / statistics.median(cpu) / 1e9,
            "threads": torch.get_num_threads(), "load": load()}


# -- parts built by other helpers ---------------------------------------------------------------------

def module_present(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def bench_stream(series: Path, work: Path, layer: int, n_tokens: int, context: int, F: int, B: int,
                 harvest_batch: int) -> dict:
    """Streaming training (no store, ``crosstime train --series``) of ``n_tokens`` tokens, end to end
    in this process: tokens/s = training rows / wall (model loads, harvesting and steps)."""
    if not module_present("crosstime.crosscoder.streaming"):
        return {"skipped": "src/crosstime/crosscoder/streaming.py is not there yet"}
    from crosstime.crosscoder import TrainConfig
    from crosstime.stages.train import train
    from crosstime.series import open_series

    revisions = [c.revision for c in open_series(series).checkpoints]
    corpus = make_corpus(work / "corpus_stream.txt", n_tokens)
    cfg = TrainConfig(run=work / "stream_run", series=str(series), revisions=revisions, layer=layer,
                      corpus=str(corpus), tokens=n_tokens, context_len=context, n_features=F, batch_size=B,
                      harvest_batch_size=harvest_batch, device="cpu", progress=False, val_every=0)
    before = load()
    t0, c0 = time.perf_counter(), time.process_time()
    train(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = cfg.total_steps()
    return {"checkpoints": len(revisions), "F": F, "B": B, "tokens": n_tokens, "steps": steps, "wall_s": wall,
            "cpu_s": cpu, "tok_s": steps * B / wall, "load_before": before, "load_after": load()}


PARALLEL_CHILD = r"""
import json, sys, time, torch
from crosstime import distributed
from crosstime.crosscoder import CrosscoderConfig, TrainSettings, parallel
from crosstime.crosscoder.recipe import StepContext
M, d, F, B, steps = (int(a) for a in sys.argv[1:6])
w = distributed.join("cpu")
P = w.size
mesh = distributed.mesh(w, P)
lo, hi = parallel.shard_range(M, P, w.rank % P)
full = CrosscoderConfig(n_checkpoints=M, d_model=d, n_features=F)
settings = TrainSettings(n_features=F, batch_size=B, checkpoint_parallel=P, device="cpu", progress=False)
model = parallel.build_shard(full, lo, hi, mesh.checkpoint_group)
recipe = parallel.shard_recipe(settings, mesh.checkpoint_group, M)
opt = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=settings.adam_betas, fused=True)
ctx = StepContext(settings, 0, 1000, 2.0, torch.zeros(F, dtype=torch.bool))
x = torch.randn(B, M, d, generator=torch.Generator().manual_seed(0))[:, lo:hi].contiguous()  # the same rows everywhere
times = []
for _ in range(steps + 1):
    t = time.perf_counter()
    recipe.step(model, x, ctx)
    parallel.reduce_gradients(model, mesh)
    opt.step()
    times.append(time.perf_counter() - t)
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
print("RESULT " + json.dumps({"rank": w.rank, "checkpoints": [lo, hi], "state_bytes": parallel.state_bytes(model, opt),
      "grad_bytes": grads, "expected_state_bytes": parallel.expected_state_bytes(M, d, F, P),
      "vm_hwm_bytes": hwm(), "step_s": times[1:]}), flush=True)
"""


def bench_parallel(work: Path, M: int, F: int, B: int, steps: int, ranks: int = 4) -> dict:
    """Checkpoint-parallel memory per rank (default M = 32, d = 768, F = 8,192, 4 gloo ranks) against
    replication: parameters + Adam state (``parallel.state_bytes``) and gradients, measured on every
    rank after ``steps`` steps, and each rank's peak RSS (includes torch, the batch, and the transient
    whole decoder ``build_shard`` draws once)."""
    replicated_state = 3 * 4 * (2 * M * D * F + M * D + F)  # fp32 parameters + Adam m, v (as parallel.state_bytes)
    out = {"M": M, "d": D, "F": F, "B": B, "ranks": ranks, "replicated_state_bytes": replicated_state,
           "replicated_grad_bytes": replicated_state // 3, "ideal_state_bytes_per_rank": replicated_state / ranks}
    if not module_present("crosstime.crosscoder.parallel"):
        return {**out, "skipped": "src/crosstime/crosscoder/parallel.py is not there yet (only the arithmetic above)"}
    script = work / "parallel_child.py"
    script.write_text(PARALLEL_CHILD)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), str(script),
           str(M), str(D), str(F), str(B), str(steps)]
    out["load_before"] = load()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    out["load_after"] = load()
    if res.returncode:
        return {**out, "failed": res.stderr[-3000:]}
    out["per_rank"] = sorted((json.loads(line[7:]) for line in res.stdout.splitlines() if line.startswith("RESULT ")),
                             key=lambda r: r["rank"])
    worst = max(r["state_bytes"] for r in out["per_rank"])
    out["state_ratio_to_ideal"] = worst / out["ideal_state_bytes_per_rank"]
    return out


# -- projection to a GPU ------------------------------------------------------------------------------

# Assumed sustained GPU rates (H200 = H100 SXM compute: 989 TFLOP/s dense bf16 tensor cores, 67 TFLOP/s
# fp32 without TF32, which torch leaves off by default): 50% of the bf16 peak, 60% of the fp32 one.
GPU_RATES = {"fp32": 40e12, "bf16": 500e12}

# name: (d, block of the site, M, F, context, tokens, batch)
SETTINGS = {
    "this benchmark (Pythia-160M shape)": (768, 6, 4, 16_384, 1024, 400_000_000, 4096),
    "paper 1: Pythia-1B triplet, L8": (2048, 8, 3, 16_384, 1024, 400_000_000, 4096),
    "paper 2: Pythia-160M × 32, L6, F = 98,304": (768, 6, 32, 98_304, 1024, 400_000_000, 4096),
    "paper 2: Pythia-6.9B × 32, L16, F = 32,768": (4096, 16, 32, 32_768, 1024, 400_000_000, 4096),
}


def projection(r: dict) -> dict:
    """Times at the papers' settings from the measured CPU rates: a stage's GPU rate is its measured
    CPU rate × (assumed sustained GPU rate / measured CPU GEMM rate), i.e. the stage keeps on the GPU
    the share of the GEMM peak it reaches here. FLOP counts are analytic (as the harvest measured)."""
    h, g, step = r["harvest"], r["gemm"], r["step"]
    # shares of the GEMM rate per CPU second (all threads): unlike wall rates, they do not depend on what
    # else runs on the machine (two runs at load 4 and at load 9-13 agreed within 8%); at most 1
    per_cpu_s = g["gflop_per_cpu_s"] * 1e9
    eff_harvest = min(1.0, h["tokens_forwarded"] * h["flop_per_token"] / h["cpu_s"] / per_cpu_s)
    eff_train = min(1.0, step["flop_per_step"] / (step["fused"]["cpu_ms_per_step"] / 1e3) / per_cpu_s)
    gemm = g["best_gflop_s"] * 1e9
    overhead = r["harvest"]["bytes_per_token"] - r["harvest"]["expected_bytes_per_token"]
    rows = []
    for name, (d, layer, M, F, ctx, tokens, B) in SETTINGS.items():
        harvest_flop = tokens * M * (layer + 1) * (24 * d * d + 2 * ctx * d)
        train_flop = 10 * M * d * F * tokens  # 10·B·M·d·F per step, tokens / B steps
        row = {"setting": name, "d": d, "M": M, "F": F, "tokens": tokens, "harvest_flop": harvest_flop,
               "train_flop": train_flop, "store_bytes": tokens * (M * d * 2 + 4 + overhead),
               "crosscoder_state_bytes": 16 * 2 * M * d * F, "batch_bytes": 4 * 4 * B * F}
        for prec, rate in GPU_RATES.items():
            h, t = harvest_flop / (rate * eff_harvest), train_flop / (rate * eff_train)
            row[prec] = {"harvest_h": h / 3600, "train_h": t / 3600, "stream_tok_s": tokens / (h + t)}
        row["cpu_days"] = (harvest_flop / (gemm * eff_harvest) + train_flop / (gemm * eff_train)) / 86400
        rows.append(row)
    return {"cpu_gemm_gflop_s": gemm / 1e9, "harvest_efficiency": eff_harvest, "train_efficiency": eff_train,
            "factor": {p: rate / gemm for p, rate in GPU_RATES.items()}, "gpu_rates": GPU_RATES, "rows": rows}


def projection_markdown(p: dict) -> str:
    lines = [(f"CPU GEMM {p['cpu_gemm_gflop_s']:.1f} GFLOP/s (measured, best); per CPU second the harvest reached "
             f"{p['harvest_efficiency']:.0%} and the fused step {p['train_efficiency']:.0%} of the GEMM's FLOP (measured); "
             "CPU → GPU factor "
             f"{p['factor']['fp32']:,.0f}× (fp32, {p['gpu_rates']['fp32'] / 1e12:.0f} TFLOP/s assumed) and "
             f"{p['factor']['bf16']:,.0f}× (bf16, {p['gpu_rates']['bf16'] / 1e12:.0f} TFLOP/s assumed)."), "",
             ("| setting | tokens | harvest FLOP | train FLOP | store (TB) | crosscoder fp32 + Adam + grads (GB) | "
             "harvest h fp32 / bf16 | train h fp32 / bf16 | streaming tokens/s fp32 / bf16 |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for row in p["rows"]:
        f, b = row["fp32"], row["bf16"]
        lines.append(f"| {row['setting']} (M = {row['M']}, d = {row['d']}, F = {row['F']:,}) | {row['tokens'] / 1e6:,.0f}M | "
                     f"{row['harvest_flop']:.2e} | {row['train_flop']:.2e} | {row['store_bytes'] / 1e12:.2f} | "
                     f"{row['crosscoder_state_bytes'] / 1e9:,.1f} | {f['harvest_h']:,.1f} / {b['harvest_h']:,.2f} | "
                     f"{f['train_h']:,.1f} / {b['train_h']:,.2f} | {f['stream_tok_s']:,.0f} / {b['stream_tok_s']:,.0f} |")
    return "\n".join(lines)


# -- report ------------------------------------------------------------------------------------------

def parallel_markdown(p: dict) -> list[str]:
    gb = 1e9
    lines = [(f"**Checkpoint-parallel memory** (M = {p['M']}, d = {p['d']}, F = {p['F']:,}, {p['ranks']} gloo ranks, "
             f"B = {p['B']}): replication holds {p['replicated_state_bytes'] / gb:.2f} GB of fp32 parameters + Adam "
             f"state and {p['replicated_grad_bytes'] / gb:.2f} GB of gradients on every rank; 1/P of that is "
             f"{p['ideal_state_bytes_per_rank'] / gb:.2f} GB."), ""]
    if "per_rank" not in p:
        return lines + [f"Not measured: {p.get('skipped') or p.get('failed')}", ""]
    lines += ["| rank | checkpoints | params + Adam (GB) | formula (GB) | gradients (GB) | peak RSS (GB) | s/step |",
              "|---|---|---|---|---|---|---|"]
    for r in p["per_rank"]:
        lines.append(f"| {r['rank']} | {r['checkpoints'][0]}–{r['checkpoints'][1] - 1} | {r['state_bytes'] / gb:.3f} | "
                     f"{r['expected_state_bytes'] / gb:.3f} | {r['grad_bytes'] / gb:.3f} | {r['vm_hwm_bytes'] / gb:.2f} | "
                     f"{statistics.median(r['step_s']):.2f} |")
    return lines + ["", (f"Largest rank / (replicated / P): {p['state_ratio_to_ideal']:.3f} (load {p['load_before']} → "
                        f"{p['load_after']})."), ""]


def markdown(r: dict) -> str:
    lines = [f"## A real width: Pythia-160M shape (d = {D}) on this machine ({r['date']})", "",
             (f"`{r['command']}` on {r['machine']}; torch {r['torch']}, {r['threads']} threads. "
             "Random GPT-NeoX checkpoints (nothing downloaded); fp32."), ""]
    if "harvest" in r:
        h = r["harvest"]
        lines += [(f"**Harvest** ({h['checkpoints']} checkpoints, block {h['layer']}, context {h['context']}, "
                  f"{h['kept_rows']:,} kept rows each; load {h['load_before']} → {h['load_after']}):"),
                  "", "| quantity | value |", "|---|---|",
                  f"| wall / CPU seconds | {h['wall_s']:.1f} / {h['cpu_s']:.1f} |",
                  f"| tokens/s (kept rows × checkpoints / wall) | {h['tok_s']:,.0f} |",
                  (f"| bytes per kept token on disk (expected M·d·2 + 4) | {h['bytes_per_token']:,.1f} "
                  f"({h['expected_bytes_per_token']:,}) |"),
                  f"| load of one checkpoint (s) | {h['model_load_s']:.2f} |",
                  f"| forward FLOP/token (blocks 0..{h['layer']}) | {h['flop_per_token'] / 1e6:,.1f} M |",
                  (f"| implied GFLOP/s (incl. / excl. model loads) | {h['gflop_s']:.1f} / "
                  f"{h['gflop_s_excluding_loads']:.1f} |"), ""]
    if "step" in r:
        s = r["step"]
        lines += [(f"**Crosscoder step** (ReLU/L1, M = {s['M']}, d = {s['d']}, F = {s['F']:,}, B = {s['B']}, fp32, "
                  f"{s['flop_per_step'] / 1e9:,.0f} GFLOP/step; load {s['load_before']} → {s['load_after']}):"),
                  "", "| step | ms/step (median) | best ms | CPU ms/step | rows/s | GFLOP/s |", "|---|---|---|---|---|---|"]
        for name in ("fused", "autograd"):
            v = s[name]
            lines.append(f"| {name} | {v['ms_per_step']:,.0f} | {v['best_ms']:,.0f} | {v.get('cpu_ms_per_step', 0):,.0f} | "
                         f"{v['rows_s']:,.0f} | "
                         f"{v['gflop_s']:.1f} |")
        lines.append("")
    if "gemm" in r:
        g = r["gemm"]
        lines += [(f"**fp32 GEMM** {g['shape']}: best {g['best_gflop_s']:.1f} GFLOP/s, median "
                  f"{g['median_gflop_s']:.1f}, {g.get('gflop_per_cpu_s', 0):.1f} GFLOP per CPU second "
                  f"(load {g['load']})."), ""]
    if "stream" in r:
        t = r["stream"]
        lines += ([(f"**Streaming training** (no store; {t['checkpoints']} checkpoints, F = {t['F']:,}, B = {t['B']}, "
                   f"{t['steps']} steps over {t['tokens']:,} tokens; load {t['load_before']} → {t['load_after']}): "
                   f"{t['wall_s']:.1f} s wall, {t['cpu_s']:.1f} CPU s, **{t['tok_s']:,.0f} tokens/s** end to end."), ""]
                  if "tok_s" in t else [f"**Streaming training**: not measured: {t['skipped']}", ""])
    if "parallel" in r:
        lines += parallel_markdown(r["parallel"])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", action="append", choices=["series", "harvest", "step", "gemm", "stream", "parallel"],
                    help="what to measure (repeatable; default: series, harvest, step, gemm)")
    ap.add_argument("--checkpoints", type=int, default=4)
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=20_000, help="harvest / streaming tokens")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--harvest-batch", type=int, default=8, help="contexts per forward")
    ap.add_argument("--features", type=int, default=16_384)
    ap.add_argument("--batch-size", type=int, default=1024, help="crosscoder rows per step")
    ap.add_argument("--steps", type=int, default=3, help="timed crosscoder steps per variant (after one warm-up)")
    ap.add_argument("--parallel-checkpoints", type=int, default=32, help="--part parallel: M")
    ap.add_argument("--parallel-features", type=int, default=8192, help="--part parallel: F")
    ap.add_argument("--parallel-batch", type=int, default=256, help="--part parallel: rows per step")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--project", type=Path, help="only print the GPU projection from a --json file of a full run")
    args = ap.parse_args()
    if args.project:
        print(projection_markdown(projection(json.loads(args.project.read_text()))))
        return
    parts = args.part or ["series", "harvest", "step", "gemm"]

    r = {"date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
         "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
         "threads": torch.get_num_threads()}
    series = cache_root() / f"pythia160m-shape-M{args.checkpoints}"
    if {"series", "harvest", "stream"} & set(parts):
        t0 = time.perf_counter()
        build_series(series, args.checkpoints)
        r["series"] = {"path": str(series), "seconds": time.perf_counter() - t0}
    with tempfile.TemporaryDirectory(prefix="bench_width_") as tmp:
        work = Path(tmp)
        if "harvest" in parts:
            r["harvest"] = bench_harvest(series, work, args.layer, args.tokens, args.context, args.harvest_batch)
        if "step" in parts:
            r["step"] = bench_step(args.checkpoints, args.features, args.batch_size, args.steps)
        if "gemm" in parts:
            r["gemm"] = bench_gemm(args.checkpoints, args.features, args.batch_size)
        if "stream" in parts:
            r["stream"] = bench_stream(series, work, args.layer, args.tokens, args.context, args.features,
                                       args.batch_size, args.harvest_batch)
        if "parallel" in parts:
            r["parallel"] = bench_parallel(work, args.parallel_checkpoints, args.parallel_features,
                                           args.parallel_batch, args.steps)
    if {"harvest", "step", "gemm"} <= r.keys():
        r["projection"] = projection(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    print(markdown(r))
    if "projection" in r:
        print("\n**Projected to one H200 (assumed rates; see docs/gpu-guide.md)**\n")
        print(projection_markdown(r["projection"]))


if __name__ == "__main__":
    main()
