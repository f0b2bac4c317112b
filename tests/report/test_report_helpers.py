"""Run directories made by the real stages, for the report tests (no tests here; imported by test_report*.py).

`fabricate_run(root, M)` builds, in seconds, a run with every stage's output: a tiny local
series with M checkpoints (and a corpus), a real activation store harvested from it, a
small random crosscoder built over the store's checkpoints (or a subset) and saved with
their revisions and scales, then `scan`, `evaluate` and `attribute` (two tasks in the
series' vocabulary) run on it. The report reads what those stages wrote, nothing hand-made.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from conftest import WORDS, make_tiny_series

from crosstime.artifacts import Distributions, Evolution, Overview, ReportData

CONTEXT_LEN = 16
LAYER = 1
N_FEATURES = 48
TOP_K = 4  # features reported per checkpoint by the attribution
# two tasks whose answers are one token of the tiny word-level tokenizer (conftest.WORDS)
PAIRS = {
    "agreement": [("the dog", "runs", "run"), ("the dogs", "run", "runs"), ("the cat", "sleeps", "sleep"),
                  ("the cats", "sleep", "sleeps"), ("a big dog", "runs", "run"), ("the old men", "sleep", "sleeps"),
                  ("the child", "is", "are"), ("the children", "are", "is"), ("a small cat", "was", "were"),
                  ("the red dogs", "were", "was")],
    "attractor": [("the man near the dogs", "is", "are"), ("the men near the dog", "are", "is"),
                  ("the child with the cats", "was", "were"), ("the children with the cat", "were", "was"),
                  ("the dog of the men", "runs", "run"), ("the dogs of the man", "run", "runs"),
                  ("the cat near the children", "sleeps", "sleep"), ("the cats near the child", "sleep", "sleeps")],
}
TASKS = tuple(sorted(PAIRS))
MANY = 6  # checkpoints of the larger run: more than the 4 up to which pair columns are written


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


def _corpus(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) for _ in range(n)) + "\n")
    return path


def write_tasks(folder: Path) -> list[Path]:
    """The JSONL task files of ``PAIRS`` (one-prefix BLiMP layout), named by task."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for task, pairs in PAIRS.items():
        path = folder / f"{task}.jsonl"
        path.write_text("".join(json.dumps({"one_prefix_prefix": p, "one_prefix_word_good": g, "one_prefix_word_bad": b,
                                            "sentence_good": f"{p} {g} .", "sentence_bad": f"{p} {b} ."}) + "\n"
                                for p, g, b in pairs))
        paths.append(path)
    return paths


def make_series(root: Path, M: int, seed: int = 0) -> Path:
    """A tiny series of M checkpoints (log-spaced steps like the toy world) with corpus/train.txt and heldout.txt."""
    steps = tuple([0] + [2**k for k in range(M - 1)])
    series = make_tiny_series(root / "series", steps=steps, layers=2, d=32)
    _corpus(series / "corpus" / "train.txt", 300, seed)
    _corpus(series / "corpus" / "heldout.txt", 60, seed + 1)
    return series


def harvest_run(run: Path, series: Path):
    from crosstime.store import HarvestConfig
    from crosstime.stages.harvest import harvest

    return harvest(HarvestConfig(run=run, series=str(series), layer=LAYER, tokens=24 * CONTEXT_LEN,
                                 heldout_tokens=8 * CONTEXT_LEN, context_len=CONTEXT_LEN, chunk_contexts=8,
                                 batch_size=8, device="cpu", progress=False))


def save_crosscoder(run: Path, store, revisions: list[str] | None = None, seed: int = 0, **kw):
    """A random crosscoder over ``revisions`` (default: all the store's) saved as RUN/crosscoder."""
    revisions = list(revisions or store.revisions)
    cc = make_crosscoder(revisions, [store.scales[r] for r in revisions], store.d_model, seed=seed, **kw)
    cc.save(run / "crosscoder")
    return cc


def run_stages(run: Path, series: Path, task_files: list[Path], stages: tuple[str, ...]) -> None:
    """The scan, evaluate and attribute stages on ``run``, as small as they go."""
    from crosstime.attribution import AttributeConfig
    from crosstime.stages.attribute import attribute
    from crosstime.evaluate import EvaluateConfig
    from crosstime.stages.evaluate import evaluate
    from crosstime.scan import ScanConfig
    from crosstime.stages.scan import scan

    if "scan" in stages:
        scan(ScanConfig(run=run, series=str(series), layer=LAYER, tasks=[str(t) for t in task_files],
                        similarity_tokens=256, corpus_sequences=16, max_length=32, ngram_tokens=2000, device="cpu",
                        progress=False))
    if "evaluate" in stages:
        evaluate(EvaluateConfig(run=run, contexts=2, dead_tokens=256, plots=False, device="cpu", progress=False))
    if "attribute" in stages:
        for path in task_files:
            attribute(AttributeConfig(run=run, task=str(path), method="ig", steps=4, top_k=TOP_K, bootstrap=50,
                                      compare=False, device="cpu", progress=False))


def fabricate_run(root: Path, M: int = 3, seed: int = 0, revisions: list[int] | None = None,
                  stages: tuple[str, ...] = ("scan", "evaluate", "attribute")) -> tuple[Path, object]:
    """A run directory at ``root/run`` over a series of ``M`` checkpoints whose crosscoder covers the
    checkpoints at indices ``revisions`` (default: all); returns (run path, the crosscoder as saved)."""
    root.mkdir(parents=True, exist_ok=True)
    series = make_series(root, M, seed)
    run = root / "run"
    store = harvest_run(run, series)
    chosen = [store.revisions[m] for m in revisions] if revisions is not None else None
    cc = save_crosscoder(run, store, chosen, seed=seed)
    run_stages(run, series, write_tasks(root / "tasks"), stages)
    return run, cc


_CACHE: dict = {}


def cached_run(tmp_path_factory, M: int = 3, **kw) -> tuple[Path, object]:
    """`fabricate_run` once per process and settings (shared by the report test modules; copy before mutating)."""
    key = (M, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items())))
    if key not in _CACHE:
        _CACHE[key] = fabricate_run(tmp_path_factory.mktemp(f"report_run_m{M}"), M=M, **kw)
    return _CACHE[key]


def report_data(**fields) -> ReportData:
    """A valid ``report/data.json`` of a run with nothing in it, ``fields`` replacing its parts (hand-built data
    for the readings; ``evolution`` replaces the overview's Evolution panel)."""
    evolution = fields.pop("evolution", None) or Evolution(checkpoints=[], dynamics=None, phases=None,
                                                          dimensionality=None, presence=None, rotation=None,
                                                          typed_emergence=None)
    overview = Overview(accuracy={}, similarity=[], suggestion=None, dynamics=None, figures=[], ablation={},
                        attribution={}, distributions=Distributions(reldec=None, n_reldec=0, relie={}, n_relie={}),
                        class_counts={}, evolution=evolution)
    base = {"title": "t", "generated": "now", "run": "run", "checkpoints": [], "tasks": [], "main_task": None,
            "missing": [], "overview": overview, "crosscoder": None, "features": [], "n_features_total": None,
            "views": [], "vocab": {}, "evidence_meta": None, "findings": []}
    return ReportData(**(base | fields))
