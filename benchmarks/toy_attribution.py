"""Acceptance run of the attribution stage on the toy world (needs nothing downloaded).

1. the toy world (built once, cached); agreement accuracy of every checkpoint on TASK;
2. three checkpoints bracketing the jump: the last one below 60% accuracy, the first one
   halfway between it and the final accuracy, and the final one (or --revisions);
3. harvest + train a crosscoder into RUN (skipped when already there);
4. ``attribute`` over all pairs of TASK, timed (wall clock);
5. evidence that top features track the subject's number: for each reported feature, its
   mean activation at the verb-predicting (last prefix) token and over the prefix, for
   singular- vs plural-subject pairs, and the AUC of "activation separates the numbers".

    python benchmarks/toy_attribution.py --run /tmp/toy_attr --task simple_agreement
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def choose_revisions(series, task_name: str, search_dirs) -> tuple[list[str], dict[str, float]]:
    from crosstime.tasks import load_task, pair_metric
    from crosstime.toy import read_build

    table = read_build(series.local_root).get("accuracy", {})
    if all(task_name in table.get(r, {}) for r in series.revisions):
        acc = {r: float(table[r][task_name]) for r in series.revisions}  # recorded by the toy build
    else:
        tok = series.load_tokenizer()
        task = load_task(task_name, tok, search_dirs=search_dirs)
        acc = {}
        for rev in series.revisions:
            model = series.load_model(rev)
            acc[rev] = float((pair_metric(model, task) < 0).float().mean())
    revs = series.revisions
    final = revs[-1]
    below = [r for r in revs if acc[r] < 0.6]
    pre = below[-1] if below else revs[0]
    half = (acc[pre] + acc[final]) / 2
    after = revs[revs.index(pre) + 1:]
    mid = next((r for r in after if acc[r] >= half), after[0] if after else final)
    if mid == final and len(after) > 1:
        mid = after[-2]
    return [pre, mid, final], acc


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random positive > a random negative) (ties count one half)."""
    from scipy.stats import mannwhitneyu

    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def number_evidence(run, store, task_name, search_dirs, revisions, features, series) -> dict:
    """Per reported feature: activation on singular vs plural subject pairs."""
    from crosstime.attribution import SiteForward, make_batches
    from crosstime.attribution.compute import encode_sites
    from crosstime.crosscoder import load_for_store
    from crosstime.tasks import load_task

    tok = series.load_tokenizer()
    task = load_task(task_name, tok, search_dirs=search_dirs)
    # the toy pair files list singular/plural twins; the good verb form tells the subject's number
    rows = [json.loads(line) for line in open(Path(series.local_root) / "pairs" / f"{task_name}.jsonl")]
    sg_verbs = {r["one_prefix_word_good"] for i, r in enumerate(rows) if i % 2 == 0}
    pl_verbs = {r["one_prefix_word_good"] for i, r in enumerate(rows) if i % 2 == 1}
    assert not sg_verbs & pl_verbs, (sg_verbs, pl_verbs)
    good = tok.convert_ids_to_tokens(task.correct.tolist())
    plural = np.array([g in pl_verbs for g in good])
    raw = load_for_store(run.crosscoder, store).folded()  # raw activations in, as the models give them
    batches = make_batches(task.prefixes, task.correct, task.wrong, 64, exclude_first=store.first_position > 0)
    runners = [SiteForward(series.load_model(r), store.layer) for r in revisions]
    last_act = np.zeros((len(task), len(features)))
    mean_act = np.zeros((len(task), len(features)))
    for b in batches:
        f = encode_sites(raw, [r.read(b) for r in runners])[..., features]  # [B, T, K]
        last_act[b.index.numpy()] = f[torch.arange(len(b)), b.last].numpy()
        m = b.attr_mask.unsqueeze(-1).float()
        mean_act[b.index.numpy()] = ((f * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
    out = {}
    for k, i in enumerate(features):
        out[int(i)] = {
            "last_token_mean_sg": float(last_act[~plural, k].mean()), "last_token_mean_pl": float(last_act[plural, k].mean()),
            "last_token_auc_pl_vs_sg": auc(last_act[plural, k], last_act[~plural, k]),
            "prefix_mean_sg": float(mean_act[~plural, k].mean()), "prefix_mean_pl": float(mean_act[plural, k].mean()),
            "prefix_auc_pl_vs_sg": auc(mean_act[plural, k], mean_act[~plural, k]),
        }
    return {"n_singular": int((~plural).sum()), "n_plural": int(plural.sum()), "features": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="/tmp/crosstime_toy_attr")
    ap.add_argument("--task", default="simple_agreement")
    ap.add_argument("--layer", type=int, default=0)
    ap.add_argument("--revisions", nargs="*", default=None)
    ap.add_argument("--tokens", type=int, default=400_000)
    ap.add_argument("--features", type=int, default=512)
    ap.add_argument("--train-steps", type=int, default=1500)
    ap.add_argument("--train-batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sparsity", type=float, default=2.0)
    ap.add_argument("--method", default="ig")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--toy-config", default=None, help="JSON of ToyConfig overrides (default: the standard toy world)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from crosstime.artifacts import RunDir
    from crosstime.attribution import AttributeConfig, print_attribution
    from crosstime.stages.attribute import attribute
    from crosstime.crosscoder import TrainConfig
    from crosstime.stages.train import train
    from crosstime.series import open_series
    from crosstime.store import ActivationStore, HarvestConfig
    from crosstime.stages.harvest import harvest
    from crosstime.toy import ToyConfig, toy_world

    world = toy_world(ToyConfig(**json.loads(args.toy_config)) if args.toy_config else None)
    series = open_series(world)
    search = [Path(world) / "pairs"]
    run = RunDir(args.run)
    report: dict = {"world": str(world), "task": args.task}
    if args.revisions:
        revisions, acc = args.revisions, {}
    else:
        t0 = time.perf_counter()
        revisions, acc = choose_revisions(series, args.task, search)
        report["choose_seconds"] = time.perf_counter() - t0
    report["accuracy"] = acc
    report["revisions"] = revisions
    print("checkpoints:", revisions, {r: acc.get(r) for r in revisions})

    if not (run.activations / "manifest.json").exists():
        t0 = time.perf_counter()
        harvest(HarvestConfig(run=run.root, series=str(world), revisions=revisions, layer=args.layer,
                              tokens=args.tokens, device="cpu"))
        report["harvest_seconds"] = time.perf_counter() - t0
    store = ActivationStore(run.activations)
    if not (run.crosscoder / "model.safetensors").exists():
        t0 = time.perf_counter()
        train(TrainConfig(run=run.root, n_features=args.features, steps=args.train_steps, batch_size=args.train_batch,
                          lr=args.lr, sparsity_coeff=args.sparsity, val_every=0, save_every=10_000))
        report["train_seconds"] = time.perf_counter() - t0

    cfg = AttributeConfig(run=run.root, task=args.task, method=args.method, steps=args.steps, top_k=args.top_k,
                          task_dirs=search)
    t0 = time.perf_counter()
    res = attribute(cfg)
    report["attribute_wall_seconds"] = time.perf_counter() - t0
    report["attribute_stage_seconds"] = res.attribution.seconds
    print_attribution(res)
    s = res.summary
    report["summary"] = json.loads((res.out / "summary.json").read_text())
    relie = s.relie[s.features]  # [K, M]
    report["reported_features"] = s.features
    report["relie_of_reported"] = {int(i): [round(float(v), 3) for v in relie[k]] for k, i in enumerate(s.features)}
    report["relie_class_counts"] = {c: s.relie_class.count(c) for c in sorted(set(s.relie_class))}
    report["reldec_class_counts"] = {c: s.reldec_class.count(c) for c in sorted(set(s.reldec_class))}
    report["post_transition_share"] = float(np.mean(relie[:, 1:].sum(1) > 0.7)) if len(relie) else float("nan")
    report["number_evidence"] = number_evidence(run, store, args.task, search, revisions, s.features, series)
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
