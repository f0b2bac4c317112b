"""Fabricated run directories for the report tests (no tests here; imported by test_report*.py).

`fabricate_run(root, M)` builds, in a few seconds, a run with every stage's outputs:
a tiny local series with M checkpoints, a real activation store harvested from it, a small
random crosscoder over the M checkpoints, and scan / evaluation / attribution files with
the columns those stages write. Update the writers here when a stage's format changes.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import torch

from conftest import WORDS, make_tiny_series

CONTEXT_LEN = 16
LAYER = 1
N_FEATURES = 48
TASKS = ("simple_agreement", "pp_attractor")


def make_crosscoder(revisions: list[str], scales: list[float], d: int, F: int = N_FEATURES, seed: int = 0,
                    variant: str = "relu", **kw):
    """A real ``crosstime.crosscoder`` model with random, varied weights (decoder norms differ per
    checkpoint so RelDec classes and trajectories vary), in eval mode."""
    from crosstime.crosscoder import CrosscoderConfig, build

    M = len(revisions)
    cc = build(CrosscoderConfig(variant=variant, n_checkpoints=M, d_model=d, n_features=F, seed=seed,
                                revisions=list(revisions), scales=list(scales), **kw))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cc.W_enc.copy_(torch.randn(M, d, F, generator=g) / (M * d) ** 0.5)
        cc.W_dec.copy_(torch.randn(F, M, d, generator=g) * torch.rand(F, M, 1, generator=g) / d**0.5)
        cc.b_enc.copy_(torch.randn(F, generator=g) * 0.1 - 0.1)
    return cc.eval()


def _corpus(path: Path, n: int = 300, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) for _ in range(n)) + "\n")
    return path


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def fabricate_run(root: Path, M: int = 3, seed: int = 0, stages: tuple[str, ...] = ("scan", "evaluation", "attribution"),
                  train_tokens: int = 24 * CONTEXT_LEN, heldout_tokens: int = 8 * CONTEXT_LEN) -> tuple[Path, object]:
    """A run directory at ``root`` over ``M`` checkpoints; returns (run path, its crosscoder as saved
    in ``run/crosscoder``)."""
    from crosstime.store import HarvestConfig, harvest

    root.mkdir(parents=True, exist_ok=True)
    steps = tuple([0] + [2**k for k in range(M - 1)])  # log-spaced like the toy world
    series = make_tiny_series(root / "series", steps=steps, layers=2, d=32)
    corpus = _corpus(root / "train.txt", seed=seed)
    run = root / "run"
    store = harvest(HarvestConfig(series=str(series), layer=LAYER, corpus=str(corpus), tokens=train_tokens,
                                  heldout_tokens=heldout_tokens, context_len=CONTEXT_LEN,
                                  out=str(run / "activations"), chunk_contexts=8, batch_size=8, progress=False))
    revisions = store.revisions
    tokens = {r: store.manifest["checkpoints"][r].get("tokens_seen") for r in revisions}
    cc = make_crosscoder(revisions, [store.scales[r] for r in revisions], store.d_model, seed=seed)
    cc.save(run / "crosscoder")
    rng = np.random.default_rng(seed)
    if "scan" in stages:
        scan = run / "scan"
        rows = []
        for task in TASKS:
            for m, r in enumerate(revisions):
                acc = 0.5 + 0.45 * m / max(M - 1, 1) * (1 if task == TASKS[0] else 0.7)
                rows.append({"revision": r, "step": steps[m], "tokens": tokens[r], "task": task, "n": 40,
                             "accuracy": round(acc, 3), "mean_m": round(-acc + 0.5, 3), "n_sentence": "", "sentence_accuracy": ""})
        _write_csv(scan / "accuracy.csv", rows)
        sim = np.clip(1 - np.abs(np.subtract.outer(np.arange(M), np.arange(M))) / M, 0, 1)
        np.savez(scan / "similarity.npz", revisions=np.array(revisions), steps=np.array(steps),
                 tokens=np.array([tokens[r] for r in revisions]), labels=np.array(revisions), cosine=sim, cka=sim**2,
                 layer=LAYER, n_tokens=100)
        (scan / "suggestion.json").write_text(json.dumps({
            "revisions": [revisions[0], revisions[M // 2], revisions[-1]],
            "checkpoints": [{"revision": r, "label": r, "role": role, "reason": f"fabricated {role}", "tokens": tokens[r]}
                            for r, role in zip([revisions[0], revisions[M // 2], revisions[-1]], ["before", "during", "after"])],
            "series": str(series), "layer": LAYER, "tasks": list(TASKS)}))
        _write_csv(scan / "dynamics.csv", [{"revision": r, "step": steps[m], "tokens": tokens[r], "loss": 4 - m * 0.2,
                                            "kl_unigram": 1.0 / (m + 1), "kl_bigram": 0.5 / (m + 1), "unigram_loss": 3.0,
                                            "bigram_loss": 2.5, "n_tokens": 100} for m, r in enumerate(revisions)])
    norms = cc.decoder_norms().detach()  # [F, M]
    shares = norms / norms.sum(1, keepdim=True)
    from crosstime.shares import classify_shares, trajectories

    classes = classify_shares(shares, revisions)
    traj = trajectories(norms)
    if "evaluation" in stages:
        ev = {"settings": {"revisions": revisions, "n_features": N_FEATURES},
              "summary": {"l0": 7.5, "dead_fraction": 0.0, "explained_variance": 0.61},
              "checkpoints": [{"revision": r, "step": steps[m], "tokens_seen": tokens[r], "scale": store.scales[r],
                               "mse": 0.3 + 0.01 * m, "explained_variance": 0.6 - 0.01 * m, "fvu": 0.4 + 0.01 * m,
                               "reldec_mean": 1 / M, "delta_ce": 0.1 * m} for m, r in enumerate(revisions)]}
        (run / "evaluation.json").write_text(json.dumps(ev))
        rows = []
        for i in range(N_FEATURES):
            row = {"feature": i, "frequency": f"{rng.uniform(0, 0.3):.4g}", "alive": 1, "class": classes[i],
                   "trajectory": traj.labels[i], "onset": int(traj.onset[i]), "onset_revision": revisions[int(traj.onset[i])],
                   "onset_tokens": tokens[revisions[int(traj.onset[i])]], "peak": int(traj.peak[i]),
                   "peak_revision": revisions[int(traj.peak[i])], "offset": int(traj.offset[i]),
                   "offset_revision": revisions[int(traj.offset[i])], "max_norm": f"{float(norms[i].max()):.6g}"}
            row.update({f"reldec_{r}": f"{float(shares[i, m]):.6g}" for m, r in enumerate(revisions)})
            row.update({f"norm_{r}": f"{float(norms[i, m]):.6g}" for m, r in enumerate(revisions)})
            rows.append(row)
        _write_csv(run / "evaluation" / "features.csv", rows)
    if "attribution" in stages:
        for t_idx, task in enumerate(TASKS):
            ie = rng.normal(0, 1, size=(N_FEATURES, M)) * rng.uniform(0, 1, size=(N_FEATURES, 1))
            ie[:, -1] *= 3 if t_idx == 0 else 1  # most effect late for the first task
            relie = np.abs(ie) / np.abs(ie).sum(1, keepdims=True)
            relie_cls = classify_shares(torch.tensor(relie), revisions)
            reported = sorted(np.argsort(-np.abs(ie).sum(1))[:20].tolist())
            rows, abl = [], []
            for i in reported:
                row = {"feature": i, "selected_in": revisions[-1]}
                for m, r in enumerate(revisions):
                    row[f"ie_{r}"], row[f"ie_{r}_lo"], row[f"ie_{r}_hi"] = ie[i, m], ie[i, m] - 0.1, ie[i, m] + 0.1
                for m, r in enumerate(revisions):
                    row[f"relie_{r}"] = relie[i, m]
                row["relie_class"] = relie_cls[i]
                for m, r in enumerate(revisions):
                    row[f"reldec_{r}"] = float(shares[i, m])
                row["reldec_class"] = classes[i]
                row["freq"] = 0.1
                rows.append(row)
                for m, r in enumerate(revisions):
                    abl.append({"feature": i, "checkpoint": r, "acc_clean": 0.9, "acc_ablated": 0.8, "delta_acc_pp": 10.0,
                                "lpd_clean": 1.0, "lpd_ablated": 1.0 - ie[i, m], "delta_lpd": ie[i, m], "ablation_share": relie[i, m]})
            _write_csv(run / "attribution" / task / "features.csv", rows)
            _write_csv(run / "attribution" / task / "ablation.csv", abl)
            conf: dict = {}
            for i in reported:
                conf.setdefault(relie_cls[i], {}).setdefault(classes[i], 0)
                conf[relie_cls[i]][classes[i]] += 1
            cols = sorted({c for row in conf.values() for c in row})
            _write_csv(run / "attribution" / task / "confusion.csv",
                       [{"relie_class \\ reldec_class": a, **{c: row.get(c, 0) for c in cols}} for a, row in conf.items()])
            (run / "attribution" / task / "summary.json").write_text(json.dumps({
                "task": task, "revisions": revisions, "layer": LAYER, "method": "ig", "steps": 10, "pairs_kept": 40,
                "pairs_dropped": 0, "accuracy_clean": [0.5 + 0.4 * m / max(M - 1, 1) for m in range(M)], "seconds": 1.5}))
    return run, cc


_CACHE: dict = {}


def cached_run(tmp_path_factory, M: int = 3, **kw) -> tuple[Path, object]:
    """`fabricate_run` once per process and M (shared by the report test modules; copy before mutating)."""
    key = (M, tuple(sorted(kw.items())))
    if key not in _CACHE:
        _CACHE[key] = fabricate_run(tmp_path_factory.mktemp(f"report_run_m{M}"), M=M, **kw)
    return _CACHE[key]
