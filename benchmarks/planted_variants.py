"""Every crosscoder variant on the same planted data: held-out EV, L0, planted directions recovered.

The setting of issue #14: 240 planted unit directions over [M = 2, d = 64] (a quarter live in
checkpoint 0 only, a quarter in checkpoint 1 only), each active with p = 7/240 (≈ 7 per token)
with magnitude U(0.5, 1.5); the data are scaled like the activation store's normalisation
(E‖x_m‖ = √d), so pre-activations are O(1). F = 960, 2,000 steps of 256 rows (65,536 training
rows, 8,192 held out), lr 3e-3 (the default 5e-5 is meant for 100k steps); every sparsity
setting at its default (λ = 2 with its 5% warm-up, jumprelu θ₀ and ε from the data, decoder
init norms the variants' own), k = 8 for the TopK family (≈ the planted 7 per token).
``jumprelu-step-0.001`` (not run by default) is the first version's setting: θ₀ = ε = 0.001 and
decoder rows of norm 0.08.

    nice python benchmarks/planted_variants.py                 # the five, ≈ 10-20 min on 2 busy cores
    nice python benchmarks/planted_variants.py --variants jumprelu-step jumprelu-step-0.001 --steps 500

Prints one Markdown table: held-out EV, L0 (held-out, eval mode), share of planted directions
whose best decoder row has cosine > 0.9, and for jumprelu the thresholds' movement
(median |θ − θ₀| / θ₀) with θ₀, ε and the final median θ.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from crosstime.crosscoder import TrainSettings, fit

RUNS = {  # name -> settings beyond the shared ones
    "relu": {"variant": "relu"},
    "batchtopk": {"variant": "batchtopk", "variant_settings": {"k": 8}},
    "jumprelu-tanh": {"variant": "jumprelu", "variant_settings": {"jumprelu_penalty": "tanh"}},
    "jumprelu-step": {"variant": "jumprelu", "variant_settings": {"jumprelu_penalty": "step"}},
    "matryoshka": {"variant": "matryoshka", "variant_settings": {"k": 8}},
    "jumprelu-step-0.001": {"variant": "jumprelu", "variant_settings": {"jumprelu_penalty": "step",
                            "jumprelu_threshold_init": 0.001, "jumprelu_bandwidth": 0.001}, "dec_init_norm": 0.08},
}
DEFAULT = ["relu", "batchtopk", "jumprelu-tanh", "jumprelu-step", "matryoshka"]


def planted(n: int, K: int = 240, M: int = 2, d: int = 64, active: float = 7.0, seed: int = 0):
    """``x [n, M, d]`` = Σ_k a_k u_k, normalised so E‖x_m‖ = √d, and the unit directions ``U [K, M, d]``."""
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(K, M, d, generator=g)
    U[: K // 4, 1] = 0
    U[K // 4 : K // 2, 0] = 0
    U = U / U.reshape(K, -1).norm(dim=1).view(K, 1, 1)
    a = (torch.rand(n, K, generator=g) < active / K) * (0.5 + torch.rand(n, K, generator=g))
    x = torch.einsum("nk,kmd->nmd", a, U)
    scale = d**0.5 / x.norm(dim=-1).mean(0)  # [M], the store's s_m
    return x * scale.view(1, M, 1), U


@torch.no_grad()
def measure(model, x: torch.Tensor, U: torch.Tensor) -> dict[str, float]:
    model.eval()
    f = model.encode(x)
    x_hat = model.decode(f)
    ev = 1 - float(((x_hat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    W = model.W_dec.reshape(model.n_features, -1)
    cos = (U.reshape(len(U), -1) @ (W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)).t()).max(1).values
    return {"ev": ev, "l0": float((f > 0).sum(1).float().mean()), "recovered": float((cos > 0.9).float().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=DEFAULT, choices=list(RUNS))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--coeff", type=float, default=None, help="sparsity_coeff (default: the settings' default)")
    args = ap.parse_args()
    torch.manual_seed(0)
    x, U = planted(65536 + 8192)
    train, held = x[:65536], x[65536:]
    extra = {} if args.coeff is None else {"sparsity_coeff": args.coeff}
    print(f"planted: {len(U)} directions, each active with p = 7/{len(U)}, M={x.shape[1]}, d={x.shape[2]}; F = 960, "
          f"{args.steps} steps of {args.batch_size}, lr {args.lr:g} {extra}; torch threads {torch.get_num_threads()}")
    print("| variant | held-out EV | L0 | planted recovered (cos > 0.9) | θ moved (median abs(θ−θ₀)/θ₀) | θ₀ / ε / median θ | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in args.variants:
        settings = TrainSettings(**RUNS[name], **extra, n_features=960, steps=args.steps, batch_size=args.batch_size,
                                 lr=args.lr, val_every=0, progress=False, seed=0)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            model = fit(train, settings, out=Path(tmp) / "cc")
            rows = [json.loads(ln) for ln in (Path(tmp) / "cc" / "metrics.jsonl").read_text().splitlines()]
        seconds = time.perf_counter() - t0
        m = measure(model, held, U)
        moved = theta = "–"
        last = rows[-1]
        if "threshold_moved" in last:  # jumprelu's threshold metrics
            moved = f"{last['threshold_moved']:.2f}"
            theta = f"{last['threshold_init']:.3g} / {last['bandwidth']:.3g} / {last['threshold_median']:.3g}"
        print(f"| {name} | {m['ev']:.4f} | {m['l0']:.2f} | {m['recovered']:.0%} | {moved} | {theta} | {seconds:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
