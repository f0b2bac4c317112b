"""Benchmark: integrated-gradient attribution through a crosscoder, and its two shortcuts.

Compares, in one run on the same model, crosscoder and pairs (numbers must agree):

  per-step   one forward+backward per IG step, all blocks recomputed   (the obvious loop)
  batched    all S steps in one forward of S·B rows, all blocks
  site       batched, and the forward starts at the site (blocks 0..L are not recomputed)

and the exact single-feature ablation cost per feature for scale. The model is a random
GPT-NeoX of Pythia's shape ratio (site at the middle block), so the script needs nothing
from a run directory:

    python benchmarks/bench_attribution.py                       # default size
    python benchmarks/bench_attribution.py --layers 8 --d 256 --pairs 128 --features 4096

For the toy-world acceptance run (the real stage on a run directory) see
``benchmarks/toy_attribution.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import torch


def build(args):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from crosstime.attribution import make_batches
    from crosstime.crosscoder import CrosscoderConfig, build

    torch.manual_seed(0)
    models = []
    for s in range(args.checkpoints):
        torch.manual_seed(s)
        cfg = GPTNeoXConfig(vocab_size=args.vocab, hidden_size=args.d, num_hidden_layers=args.layers,
                            num_attention_heads=max(1, args.d // 64), intermediate_size=4 * args.d,
                            max_position_embeddings=256, rotary_pct=0.25)
        models.append(GPTNeoXForCausalLM(cfg).eval())
    g = torch.Generator().manual_seed(0)
    M, d, F = args.checkpoints, args.d, args.features
    # a ReLU crosscoder on raw activations (scales 1) with random weights
    cc = build(CrosscoderConfig(n_checkpoints=M, d_model=d, n_features=F, revisions=[f"ckpt{m}" for m in range(M)],
                                scales=[1.0] * M, normalised=False)).eval()
    with torch.no_grad():
        cc.W_enc.copy_(torch.randn(M, d, F, generator=g) / math.sqrt(M * d))
        cc.b_enc.fill_(-0.02)
        cc.W_dec.copy_(torch.randn(F, M, d, generator=g) / math.sqrt(d))
        cc.b_dec.zero_()
    lengths = torch.randint(args.min_len, args.max_len + 1, (args.pairs,), generator=g)
    prefixes = [torch.randint(4, args.vocab, (int(n),), generator=g).tolist() for n in lengths]
    correct = torch.randint(4, args.vocab, (args.pairs,), generator=g)
    wrong = (correct + 1) % args.vocab
    batches = make_batches(prefixes, correct, wrong, args.batch_size)
    return models, cc, batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--layer", type=int, default=None, help="site block (default: the middle one, layers//2 - 1)")
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--features", type=int, default=4096)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--min-len", type=int, default=6)
    ap.add_argument("--max-len", type=int, default=14)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exact-features", type=int, default=32, help="features ablated exactly, for the per-feature cost")
    ap.add_argument("--variants", default="per-step,batched,site", help="comma-separated subset of per-step,batched,site")
    ap.add_argument("--atp", action="store_true", help="also compute AtP alongside IG (as the stage does by default)")
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layer = args.layer if args.layer is not None else args.layers // 2 - 1

    from crosstime.attribution import ablate_features, compute_attribution

    models, cc, batches = build(args)
    load = lambda m: models[m]  # noqa: E731
    variants = {
        "per-step": dict(step_chunk=1, skip_early_blocks=False),
        "batched": dict(step_chunk=None, skip_early_blocks=False),
        "site": dict(step_chunk=None, skip_early_blocks=True),
    }
    variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
    # warm-up (allocator, lazy imports)
    compute_attribution(load, cc, batches[:1], layer, method="ig", steps=2, compare=False, progress=False)
    results, ref = {}, None
    for name, kw in variants.items():
        t0 = time.perf_counter()
        att = compute_attribution(load, cc, batches, layer, method="ig", steps=args.steps,
                                  compare=args.atp, progress=False, **kw)
        results[name] = {"seconds": time.perf_counter() - t0, "effects_seconds": att.seconds["effects"]}
        if ref is None:
            ref = att.ie
            results[name]["read_seconds"] = att.seconds["read_sites"]
        else:
            results[name]["max_abs_diff_vs_per_step"] = float((att.ie - ref).abs().max())
    feats = list(range(args.exact_features))
    t0 = time.perf_counter()
    ablate_features(load, cc, batches, layer, feats, progress=False)
    exact_s = time.perf_counter() - t0

    if "per-step" in results:
        base = results["per-step"]["effects_seconds"]
        for r in results.values():
            r["speedup_vs_per_step"] = base / r["effects_seconds"]
    if "batched" in results and "site" in results:
        results["site"]["speedup_vs_batched"] = results["batched"]["effects_seconds"] / results["site"]["effects_seconds"]
    out = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, {args.threads} threads",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "setup": {k: v for k, v in vars(args).items() if k != "json"} | {"site_layer": layer},
        "ig": results,
        "ablation_seconds": exact_s,
        "exact_seconds_per_feature_all_checkpoints": exact_s / max(1, args.exact_features),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
