"""Crosscoder training speed: crosstime's step vs a straightforward eager step vs the matmul peak.

    python benchmarks/bench_crosscoder.py            # prints a markdown section for RESULTS.md
    python benchmarks/bench_crosscoder.py --quick    # fewer repetitions

Measures, in one process and interleaved (so machine load hits every contender alike;
each number is the best of many repetitions, the usual way to time on a shared machine):

1. fp32 matmul peak: a 2048² GEMM and the step's own GEMM shapes.
2. ReLU/L1 Adam step at M=3, d=128, F=4096, B=1024 (useful FLOPs 10·B·M·d·F):
   a straightforward eager implementation (einsum, autograd, clip_grad_norm_, default Adam),
   crosstime's fused step (hand-derived backward + fused Adam), and crosstime's whole
   training loop (``crosstime.crosscoder.fit``: data, schedules, metrics).
3. bf16: matmul throughput on this CPU, and the effect of ``precision="bf16"`` on the final
   explained variance of a small planted-feature training.
4. TopK / BatchTopK decode at F=16384, k in {32, 64}: dense GEMM vs gathering the active
   features (``decode_sparse``), forward and forward+backward, with the max difference.
5. Every variant's Adam step (the recipe's step as ``fit`` runs it, clipping, fused Adam)
   interleaved with the fused ReLU step at M=3, d=128, F=4096 and M=4, d=768, F=16384
   (B=1024, k=32; no feature dead, and a row with 1/8 dead so that AuxK runs), with its autograd reference:
   ms/step, the ratio to ReLU, and the useful-FLOP rate against the GEMM peak of the same run.
   ``--variants`` runs this part alone. A variant is one line of ``VARIANT_ROWS``.
6. ``--density``: the ReLU and JumpReLU steps with their dense GEMMs against their sparse products
   (:mod:`crosstime.crosscoder.sparse_products`) at set shares of active entries, at both sizes: where
   the sparse products start to pay (``SPARSE_BELOW``). The share is set by shifting ``b_enc``.

Every output states the threads, the load average (before and after) and the CPU model.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from typing import NamedTuple

import torch
from _machine import cpu_model  # benchmarks/ is on sys.path when run as `python benchmarks/bench_crosscoder.py`

from crosstime.crosscoder import CrosscoderConfig, TrainSettings, build, fit, registry
from crosstime.crosscoder.fused import relu_l1_step
from crosstime.crosscoder.fused_jumprelu import jumprelu_step
from crosstime.crosscoder.jumprelu import BANDWIDTH_FRACTION, preact_statistics
from crosstime.crosscoder.sparse_products import SPARSE_BELOW
from crosstime.crosscoder.recipe import Recipe, StepContext
from crosstime.crosscoder.training import clip_gradients

M, D, F, B = 3, 128, 4096, 1024
FLOPS_STEP = 10 * B * M * D * F


def best_of(fns: dict, reps: int, inner: int = 1) -> dict[str, float]:
    """Interleaved timing: each round runs every contender once; returns the best seconds per call."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t) / inner)
    return best


# -- 2. the training step ------------------------------------------------------------------------

class EagerCrosscoder(torch.nn.Module):
    """The straightforward implementation (as in the paper's code): einsum, autograd, default Adam."""

    def __init__(self, W_dec: torch.Tensor):
        super().__init__()
        self.W_enc = torch.nn.Parameter(W_dec.permute(1, 2, 0).clone())
        self.W_dec = torch.nn.Parameter(W_dec.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(W_dec.shape[0]))
        self.b_dec = torch.nn.Parameter(torch.zeros(W_dec.shape[1:]))

    def loss(self, x, l1_coeff):
        f = torch.relu(torch.einsum("bmd,mdf->bf", x, self.W_enc) + self.b_enc)
        x_hat = torch.einsum("bf,fmd->bmd", f, self.W_dec) + self.b_dec
        l2 = (x_hat - x).pow(2).sum(-1).sum(-1).mean()
        dec_norms = self.W_dec.norm(dim=-1).sum(-1)
        l1 = (f * dec_norms[None]).sum(-1).mean()
        return l2 + l1_coeff * l1


def step_benchmarks(reps: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(B, M, D)
    model = build(CrosscoderConfig(n_checkpoints=M, d_model=D, n_features=F))
    eager = EagerCrosscoder(model.W_dec.detach())
    opt_e = torch.optim.Adam(eager.parameters(), lr=5e-5, betas=(0.9, 0.999))
    params = list(model.parameters())
    opt_f = torch.optim.Adam(params, lr=5e-5, betas=(0.9, 0.999), fused=True)

    def eager_step():
        opt_e.zero_grad()
        eager.loss(x, 2.0).backward()
        torch.nn.utils.clip_grad_norm_(eager.parameters(), 1.0)
        opt_e.step()

    def fused_step():
        relu_l1_step(model, x, 2.0)
        clip_gradients(params, 1.0, opt_f)
        opt_f.step()

    A, Bm = torch.randn(2048, 2048), torch.randn(2048, 2048)
    X, We = x.reshape(B, -1), model.W_enc.detach().reshape(-1, F).clone()
    Wd = model.W_dec.detach().reshape(F, -1).clone()
    fT, g = torch.relu(torch.randn(F, B)), torch.randn(B, M * D)  # feature-major [F, B], as in fused.py
    gemm = {  # the step's five GEMMs in the layouts relu_l1_step uses
        "mm 2048²": lambda: A @ Bm,
        "W_encᵀ·Xᵀ": lambda: We.t() @ X.t(),
        "f·W_dec": lambda: fT.t() @ Wd,
        "fᵀ·g": lambda: fT @ g,
        "W_dec·gᵀ": lambda: Wd @ g.t(),
        "∂zᵀ·X": lambda: fT @ X,
    }
    # the whole training loop (data, schedules, metrics): train() for 8 steps minus train() for 2 steps
    data = torch.randn(B * 8, M, D)
    cfg = TrainSettings(n_features=F, batch_size=B, lr=5e-5, val_every=0, progress=False, device="cpu")
    loop = {"train 2 steps": lambda: fit(data, cfg, steps=2), "train 8 steps": lambda: fit(data, cfg, steps=8)}
    t = best_of({**gemm, "eager": eager_step, "crosstime": fused_step, **loop}, reps)
    flops = {k: (2 * 2048**3 if k == "mm 2048²" else 2 * B * M * D * F) / t[k] for k in gemm}
    peak = max(flops.values())
    gemm_ms = sum(t[k] for k in gemm if k != "mm 2048²")
    loop = (t["train 8 steps"] - t["train 2 steps"]) / 6  # per step, set-up and first-step costs cancelled
    return {"gemm_flops": flops, "peak": peak, "gemm_only": gemm_ms, "eager": t["eager"], "crosstime": t["crosstime"],
            "loop": loop}


# -- 3. bf16 -------------------------------------------------------------------------------------

def bf16_benchmarks() -> dict:
    a32, b32 = torch.randn(256, 384), torch.randn(384, 1024)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    t = best_of({"fp32": lambda: a32 @ b32, "bf16": lambda: a16 @ b16}, reps=3)
    # EV effect on a planted-feature problem (small, so that bf16 is affordable here)
    g = torch.Generator().manual_seed(0)
    U = torch.randn(24, 2, 16, generator=g)
    U = U / U.reshape(24, -1).norm(dim=1).view(24, 1, 1)
    act = (torch.rand(8192, 24, generator=g) < 0.06) * (0.5 + torch.rand(8192, 24, generator=g))
    x = torch.einsum("nk,kmd->nmd", act, U) * 4
    ev = {}
    for precision in ("fp32", "bf16"):
        m = fit(x[:7168], TrainSettings(n_features=48, steps=600, batch_size=256, lr=3e-3, sparsity_coeff=0.3,
                                        precision=precision, val_every=0, progress=False))
        with torch.no_grad():
            xh = m(x[7168:])
            ev[precision] = 1 - float(((xh - x[7168:]) ** 2).sum() / ((x[7168:] - x[7168:].mean(0)) ** 2).sum())
    return {"speed": t["fp32"] / t["bf16"], "fp32_gflops": 2 * 256 * 384 * 1024 / t["fp32"] / 1e9,
            "bf16_gflops": 2 * 256 * 384 * 1024 / t["bf16"] / 1e9, "ev": ev}


# -- 4. sparse decode ----------------------------------------------------------------------------

def sparse_benchmarks(reps: int) -> list[dict]:
    rows = []
    torch.manual_seed(0)
    Fs = 16384
    x = torch.randn(B, M, D)
    for variant in ("topk", "batchtopk"):
        for k in (32, 64):
            model = build(CrosscoderConfig(variant=variant, n_checkpoints=M, d_model=D, n_features=Fs,
                                           variant_config={"k": k}, dec_init_norm=1))
            model.train()
            with torch.no_grad():
                sf = model.encode_sparse(x)
                f = sf.to_dense(Fs)
                diff = float((model.decode(f) - model.decode_sparse(sf)).abs().max())
            vals = sf.values.clone().requires_grad_()
            fd = f.clone().requires_grad_()

            def dense_fb():
                model.zero_grad(set_to_none=True)
                model.decode(fd).square().sum().backward()

            def sparse_fb():
                model.zero_grad(set_to_none=True)
                sf2 = type(sf)(vals, sf.cols, sf.offsets, sf.batch_size)
                model.decode_sparse(sf2).square().sum().backward()

            with torch.no_grad():
                t = best_of({"dense": lambda: model.decode(f), "sparse": lambda: model.decode_sparse(sf)}, reps)
            tb = best_of({"dense": dense_fb, "sparse": sparse_fb}, max(3, reps // 2))
            rows.append({"variant": variant, "k": k, "dense": t["dense"], "sparse": t["sparse"],
                         "dense_fb": tb["dense"], "sparse_fb": tb["sparse"], "maxdiff": diff})
    return rows


# -- 5. every variant against the fused ReLU step -------------------------------------------------

class Row(NamedTuple):
    """One variant of the comparison: its name, its own settings, whether its useful work is the TopK
    family's sparse one (encoder GEMM + O(k·B·M·d)) or ReLU's five dense GEMMs, and every how many
    features one is dead (0: none, so AuxK is idle, as early in training)."""

    name: str
    own: dict
    sparse: bool
    dead_every: int = 0

    @property
    def label(self) -> str:
        own = "".join(f" {v}" for k, v in self.own.items() if k != "k")
        return self.name + own + (f" + AuxK (1/{self.dead_every} dead)" if self.dead_every else "")


VARIANT_ROWS = [  # the reference row, relu, comes first; add a variant here
    Row("relu", {}, False),
    Row("topk", {"k": 32}, True),
    Row("batchtopk", {"k": 32}, True),
    Row("matryoshka", {"k": 32}, True),
    Row("batchtopk", {"k": 32}, True, dead_every=8),
    Row("jumprelu", {}, False),  # tanh penalty (the default): ReLU's five dense GEMMs
    Row("jumprelu", {"jumprelu_penalty": "step"}, False),
]
VARIANT_SIZES = [(3, 128, 4096), (4, 768, 16384)]  # (M, d, F), B = 1024


def useful_flops(row: Row, Md: int, F: int) -> float:
    """ReLU: 5 dense GEMMs; the TopK family: the encoder GEMM, then decode, ∂v, ∂W_dec and ∂W_enc over
    the k·B active entries (AuxK's not counted)."""
    return 2 * B * Md * F + 8 * row.own["k"] * B * Md if row.sparse else 10 * B * Md * F


def variant_step(row: Row, shared: torch.nn.Module | None, x: torch.Tensor, F_: int, reference: bool):
    """The trainer's step for ``row`` (fused, or its autograd reference) on a model sharing ``shared``'s
    parameters (one copy of the weights and the Adam state at F = 16384); returns (model, step)."""
    B_, M_, D_ = x.shape
    spec = registry.variant(row.name)
    settings = TrainSettings(variant=row.name, n_features=F_, batch_size=B_, variant_settings=row.own, device="cpu",
                             progress=False, lr=5e-5)
    model = build(CrosscoderConfig(variant=row.name, n_checkpoints=M_, d_model=D_, n_features=F_,
                                   variant_config=spec.config_from(settings.variant_settings).model_dump()))
    if shared is not None:
        for name, p in shared.named_parameters():
            setattr(model, name, p)
    model.train()
    recipe, params = spec.recipe(settings), list(model.parameters())
    opt = torch.optim.Adam(params, lr=5e-5, fused=True)
    dead = torch.arange(F_) % row.dead_every == 0 if row.dead_every else torch.zeros(F_, dtype=torch.bool)
    ctx = StepContext(settings, settings.total_steps() // 2, settings.total_steps(), settings.sparsity_coeff, dead)
    recipe.before_step(model, ctx)

    def step():
        out = Recipe.step(recipe, model, x, ctx) if reference else recipe.step(model, x, ctx)
        clip_gradients(params, 1.0, opt)
        opt.step()
        recipe.after_step(model, out, ctx)

    return model, step


def variant_benchmarks(reps: int, M_: int, D_: int, F_: int, reference: bool = True) -> dict:
    """Every row's fused and reference step, interleaved with the GEMM peak, at one size."""
    torch.manual_seed(0)
    x = torch.randn(B, M_, D_)
    base, _ = variant_step(VARIANT_ROWS[0], None, x, F_, False)
    fns, Md = {}, M_ * D_
    for row in VARIANT_ROWS:
        fns[row.label] = variant_step(row, base, x, F_, False)[1]
        if reference:
            fns[row.label + " ref"] = variant_step(row, base, x, F_, True)[1]
    X, We = x.reshape(B, -1), base.W_enc.detach().reshape(Md, F_)
    A = torch.randn(2048, 2048)
    gemm = {"mm 2048²": (lambda: A @ A, 2 * 2048**3), "X·W_enc": (lambda: X @ We, 2 * B * Md * F_)}
    t = best_of({**{k: f for k, (f, _) in gemm.items()}, **fns}, reps)
    peak = max(fl / t[k] for k, (_, fl) in gemm.items())
    return {"size": (M_, D_, F_), "t": t, "peak": peak, "Md": Md, "F": F_}


def variant_table(r: dict) -> list[str]:
    M_, D_, F_ = r["size"]
    t, relu = r["t"], r["t"][VARIANT_ROWS[0].label]
    out = [(f"Each variant's Adam step vs the fused ReLU step, M={M_}, d={D_}, F={F_}, B={B}, k=32, k_aux=d/2 (GEMM "
            f"peak of this run {r['peak'] / 1e9:.0f} GFLOP/s):"), "",
           "| variant | ms/step | × ReLU | autograd ms/step | autograd × ReLU | useful GFLOP/s | % of GEMM peak |",
           "|---|---|---|---|---|---|---|"]
    for row in VARIANT_ROWS:
        s, ref = t[row.label], t.get(row.label + " ref")
        rate = useful_flops(row, r["Md"], r["F"]) / s
        refs = "– | –" if ref is None else f"{ref * 1e3:.1f} | {ref / relu:.2f}×"  # --no-reference: not run
        out.append(f"| {row.label} | {s * 1e3:.1f} | {s / relu:.2f}× | {refs} | "
                   f"{rate / 1e9:.0f} | {100 * rate / r['peak']:.0f}% |")
    return out


# -- 6. dense GEMMs against the sparse products, by density ---------------------------------------

DENSITIES = [0.005, 0.01, 0.02, 0.05, 0.08, 0.12]  # trained ReLU crosscoders: L0 ≈ 45 of 4,096 ≈ 1.1%


def density_benchmarks(reps: int, M_: int, D_: int, F_: int) -> list[dict]:
    """relu and jumprelu (tanh) steps, dense and sparse, interleaved, at each share in :data:`DENSITIES`."""
    torch.manual_seed(0)
    x = torch.randn(B, M_, D_)
    rows = []
    for name in ("relu", "jumprelu"):
        model = build(CrosscoderConfig(variant=name, n_checkpoints=M_, d_model=D_, n_features=F_, dec_init_norm=0.3))
        z = model.pre_acts(x).detach()
        if name == "jumprelu":  # θ₀ and ε from the pre-activations, as the recipe sets them
            pos_mean, std = preact_statistics(z)
            model.set_threshold_scale(pos_mean, BANDWIDTH_FRACTION * std)
        theta = model.threshold.detach() if name == "jumprelu" else torch.zeros(F_)
        sample = (z[:128] - theta).flatten()
        for share in DENSITIES:
            shift = torch.quantile(sample[torch.randperm(sample.numel())[:1_000_000]], 1 - share)
            with torch.no_grad():
                model.b_enc.sub_(shift)

            def step(sparse: bool, model=model, name=name):
                if name == "relu":
                    return relu_l1_step(model, x, 2.0, sparse=sparse)
                return jumprelu_step(model, x, 2.0, "tanh", 4.0, sparse=sparse)

            t = best_of({"dense": lambda: step(False), "sparse": lambda: step(True)}, reps)
            active = float(step(False)["l0"]) / F_
            window = float(((z[:128] - theta - shift).abs() < float(model.bandwidth) / 2).float().mean()) \
                if name == "jumprelu" else 0.0
            rows.append({"variant": name, "size": (M_, D_, F_), "active": active, "window": window, **t})
            with torch.no_grad():
                model.b_enc.add_(shift)
    return rows


def window_cell(r: dict) -> str:
    return "" if r["variant"] == "relu" else f"{100 * r['window']:.2f}%"


def density_table(rows: list[dict]) -> list[str]:
    out = [f"Dense GEMMs vs sparse products by share of active entries (B={B}; the step alone, no Adam; "
           f"SPARSE_BELOW = {SPARSE_BELOW}):", "",
           "| size | variant | active share | STE window share | dense ms | sparse ms | sparse / dense |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        M_, D_, F_ = r["size"]
        out.append(f"| M={M_} d={D_} F={F_} | {r['variant']} | {100 * r['active']:.2f}% | "
                   f"{window_cell(r)} | {r['dense'] * 1e3:.1f} | "
                   f"{r['sparse'] * 1e3:.1f} | {r['sparse'] / r['dense']:.2f} |")
    return out


def machine_line(load_before: tuple[float, ...]) -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, after "
            f"{'/'.join(f'{v:.1f}' for v in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--only-step", action="store_true", help="only the ReLU/L1 step (fast check)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--variants", action="store_true", help="only every variant's step against ReLU's (part 5)")
    ap.add_argument("--small", action="store_true", help="with --variants: the small size only")
    ap.add_argument("--no-reference", action="store_true", help="with --variants: skip the autograd reference steps")
    ap.add_argument("--density", action="store_true", help="only dense vs sparse products by density (part 6)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = 5 if args.quick else 20
    load0 = os.getloadavg()
    load = load0[0]
    if args.density:
        rows = [r for M_, D_, F_ in VARIANT_SIZES[: 1 if args.small else None]
                for r in density_benchmarks(max(2, reps // 4) if F_ > F else reps, M_, D_, F_)]
        print("\n".join(density_table(rows)), "\n")
        print(machine_line(load0))
        return
    if args.variants:
        for M_, D_, F_ in VARIANT_SIZES[: 1 if args.small else None]:
            r = variant_benchmarks(max(2, reps // 2) if F_ > F else reps, M_, D_, F_, not args.no_reference)
            print("\n".join(variant_table(r)), "\n")
        print(machine_line(load0))
        return
    step = step_benchmarks(reps)
    if args.only_step:
        print({k: (v * 1e3 if k in ("eager", "crosstime", "loop", "gemm_only") else v) for k, v in step.items()},
              "pct of peak:", FLOPS_STEP / step["crosstime"] / step["peak"], "eager:", FLOPS_STEP / step["eager"] / step["peak"])
        return
    sparse = sparse_benchmarks(reps)
    bf = None if args.skip_bf16 else bf16_benchmarks()
    load = max(load, os.getloadavg()[0])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = cpu_model()
    out = [f"### crosscoder training (bench_crosscoder.py), {now}",
           f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
           f"fp32; load average during the run ≈ {load:.1f} (shared machine; best-of-{reps} interleaved timings).", "",
           "fp32 matmul throughput (GFLOP/s): " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in step["gemm_flops"].items())
           + f"; peak = {step['peak'] / 1e9:.0f}. The step's five GEMMs alone: {step['gemm_only'] * 1e3:.1f} ms "
           f"({100 * FLOPS_STEP / step['gemm_only'] / step['peak']:.0f}% of peak).", "",
           f"ReLU/L1 Adam step, M={M}, d={D}, F={F}, B={B} (useful FLOPs 10·B·M·d·F = {FLOPS_STEP / 1e9:.2f} G):", "",
           "| implementation | ms/step | GFLOP/s | % of peak | speed-up vs eager |", "|---|---|---|---|---|"]
    for name, key in (("straightforward eager (einsum, autograd, clip_grad_norm_, Adam)", "eager"),
                      ("crosstime fused step (hand backward, fused Adam)", "crosstime"),
                      ("crosstime.crosscoder.fit loop (incl. data, schedules, metrics)", "loop")):
        s = step[key]
        out.append(f"| {name} | {s * 1e3:.1f} | {FLOPS_STEP / s / 1e9:.0f} | {100 * FLOPS_STEP / s / step['peak']:.0f}% "
                   f"| {step['eager'] / s:.2f}× |")
    out += ["", "Sparse decode, F=16384, B=1024, M=3, d=128 (dense GEMM vs gather of the active features):", "",
            "| variant | k | dense fwd ms | sparse fwd ms | fwd speed-up | dense fwd+bwd ms | sparse fwd+bwd ms | "
            "fwd+bwd speed-up | max abs diff |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sparse:
        out.append(f"| {r['variant']} | {r['k']} | {r['dense'] * 1e3:.1f} | {r['sparse'] * 1e3:.1f} | "
                   f"{r['dense'] / r['sparse']:.1f}× | {r['dense_fb'] * 1e3:.1f} | {r['sparse_fb'] * 1e3:.1f} | "
                   f"{r['dense_fb'] / r['sparse_fb']:.1f}× | {r['maxdiff']:.1e} |")
    if bf is not None:
        out += ["", f"bf16: matmul {bf['bf16_gflops']:.2f} GFLOP/s vs fp32 {bf['fp32_gflops']:.0f} GFLOP/s on this CPU "
                f"(bf16 {bf['speed']:.3f}× the fp32 speed). Final held-out EV of a planted-feature run (M=2, d=16, "
                f"F=48, 600 steps): fp32 {bf['ev']['fp32']:.4f}, bf16 {bf['ev']['bf16']:.4f}."]
    for M_, D_, F_ in VARIANT_SIZES:
        out += ["", *variant_table(variant_benchmarks(max(2, reps // 2) if F_ > F else reps, M_, D_, F_))]
    out += ["", machine_line(load0)]
    print("\n".join(out))


if __name__ == "__main__":
    main()
