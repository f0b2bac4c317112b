"""Dashboard benchmark: a report of F = 32,768 features over M = 32 checkpoints, written and opened.

    python benchmarks/bench_dashboard.py [--features 32768] [--checkpoints 32] [--n-top 5] [--out DIR] [--no-browser]

Builds a synthetic run's report data (not trained: random shares, norms, classes, and evidence
of the shape the report stage writes: top contexts per view with token windows, histograms and a
logit lens per checkpoint), writes it with the report stage's own writer
(:func:`crosstime.report.dashboard.write_report`: above ``EMBED_MAX_FEATURES`` features the page
and data.json hold the overview only and the features go, once, to ``report/features/`` in
shards), reads it back (:func:`crosstime.artifacts.read_report_data`), then opens it in headless
Chromium (playwright, /usr/bin/chromium) from ``file://`` and measures:

- the write (and with ``--read-back`` the read): seconds; bytes of report/ on disk, data.json,
  index.html, features/index.js and the largest shard;
- first view: ``goto`` until the overview is drawn, and until the feature list is filled;
- a switch between features in different shards (click to card drawn), median and max of 10;
- a deep link to a feature outside any reported set and one to a non-existent feature.

Prints a markdown section for benchmarks/RESULTS.md. ``synthetic_report`` is also what
tests/report/test_dashboard_browser.py opens.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from crosstime.artifacts import REPORT_DATA, REPORT_SHARDS, FeatureEvidence, ReportData, read_report_data
from crosstime.report.dashboard import write_report

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
N_REPORTED = 100  # features with an attribution (the "reported set")
DEAD_EVERY = 97  # every 97th feature is dead: in no shard, not listed
N_POOL = 64  # distinct evidence records, shared between features (keeps the build fast; each is written in full)


def _window(rng: np.random.Generator, context: int, before: int = 12, after: int = 4) -> dict:
    position = int(rng.integers(before, 120))
    acts = np.round(rng.random(before + after + 1) * rng.random(), 4)
    return {"context": context, "position": position, "value": float(acts.max()), "start": position - before,
            "tokens": rng.integers(0, 1000, before + after + 1).tolist(), "acts": acts.tolist()}


def _evidence(rng: np.random.Generator, views: list[str], revisions: list[str], n_top: int) -> dict:
    """One feature's evidence as :func:`crosstime.evidence.feature_evidence` returns it."""
    top = {v: sorted((_window(rng, int(rng.integers(0, 4000))) for _ in range(n_top)), key=lambda w: -w["value"])
           for v in views}
    hist = {v: {"upper": 2.0, "n_bins": 32, "counts": rng.integers(0, 500, 32).tolist()} for v in views}
    lens = {r: {"promoted": [[int(t), round(float(x), 4)] for t, x in zip(rng.integers(0, 1000, 8), rng.random(8))],
                "suppressed": [[int(t), -round(float(x), 4)] for t, x in zip(rng.integers(0, 1000, 8), rng.random(8))]}
            for r in revisions}
    return {"density": {v: round(float(rng.random()) * 0.05, 4) for v in views}, "histogram": hist, "top": top,
            "quantiles": [{**_window(rng, 7), "quantile": q} for q in (0.1, 0.5, 0.9)], "logit_lens": lens}


def _feature(i: int, rank: int, M: int, rng: np.random.Generator, evidence: dict, tasks: list[str]) -> dict:
    norm = np.round(rng.random(M) * np.linspace(rng.random(), 1.0, M), 4)
    reldec = np.round(norm / norm.sum(), 4)
    onset = int(np.argmax(norm > 0.1 * norm.max()))
    entry = {"id": i, "rank": rank, "norm": norm.tolist(), "reldec": reldec.tolist(),
             "reldec_class": ["early", "late", "persistent", "transient"][i % 4],
             "trajectory": ["emerging", "stable", "fading"][i % 3], "onset": onset, "peak": int(np.argmax(norm)),
             "offset": M - 1, "frequency": round(float(rng.random()) * 0.05, 5), "evidence": evidence, "tasks": {},
             "description": f"plural subject marker {i}" if i % 50 == 7 else None, "annotation": None}
    if rank <= N_REPORTED:
        ie = np.round(rng.normal(size=M) * 0.1, 5)
        relie = np.round(np.abs(ie) / np.abs(ie).sum(), 4)
        entry["tasks"][tasks[0]] = {"ie": ie.tolist(), "ie_lo": (ie - 0.01).tolist(), "ie_hi": (ie + 0.01).tolist(),
                                    "relie": relie.tolist(), "relie_class": "late", "selected_in": "top"}
    return entry


def synthetic_report(F: int = 32768, M: int = 32, n_top: int = 3, seed: int = 0,
                     with_evidence: Callable[[int], bool] | None = None) -> ReportData:
    """Report data of an untrained run with ``F`` features and ``M`` checkpoints; features
    ``i % DEAD_EVERY == DEAD_EVERY - 1`` are dead (absent). Features ``with_evidence(i)`` false
    (default: none) have no top contexts (a quicker build for a test; shards are cut by bytes, so a
    shard of features with evidence is as large as in a full build). The evidence records are
    ``N_POOL`` objects shared between features (memory); each feature's is written in full."""
    rng = np.random.default_rng(seed)
    revisions = [f"step{1000 * (2 ** m)}" for m in range(M)]
    checkpoints = [{"revision": r, "step": 1000 * 2**m, "tokens": 2**20 * 1000 * 2**m, "label": f"{2 ** m}B"}
                   for m, r in enumerate(revisions)]
    views = ["all", *revisions]
    tasks = ["agreement"]
    pool = [FeatureEvidence.model_validate(_evidence(rng, views, revisions, n_top)) for _ in range(N_POOL)]
    live = [i for i in range(F) if i % DEAD_EVERY != DEAD_EVERY - 1]
    order = rng.permutation(live).tolist()  # rank order
    features = [_feature(i, k + 1, M, rng, pool[i % N_POOL] if with_evidence is None or with_evidence(i) else None,
                         tasks) for k, i in enumerate(order)]
    return ReportData.model_validate({"title": f"synthetic F={F} M={M}", "generated": "benchmark", "run": "synthetic", "checkpoints": checkpoints,
            "tasks": tasks, "main_task": tasks[0], "missing": ["synthetic run: no scan, evaluation or attribution"],
            "overview": {"accuracy": {}, "similarity": [], "suggestion": None, "dynamics": None, "figures": [],
                         "ablation": {}, "attribution": {}, "distributions": {"reldec": None, "n_reldec": 0, "relie": {}, "n_relie": {}},
                         "class_counts": {}, "evolution": {"checkpoints": [], "dynamics": None, "phases": None,
                                                           "dimensionality": None, "presence": None, "rotation": None,
                                                           "typed_emergence": None}},
            "crosscoder": None, "features": features, "n_features_total": F, "views": views,
            "vocab": {str(t): f" w{t}" for t in range(1000)},
            "evidence_meta": {"n_rows": 4000 * 127, "n_contexts": 4000, "contexts": [0, 4000],
                              "logit_lens_method": "mean_activation", "token_text": True,
                              "config": {"n_top": n_top, "window_before": 12, "window_after": 4, "n_quantiles": 3,
                                         "sample_size": 512, "n_bins": 32, "split": "heldout", "max_contexts": 4000,
                                         "per_checkpoint": True, "logit_lens": "mean_activation",
                                         "n_logit_tokens": 8, "seed": 0},
                              "excluded_tokens": []},
            "findings": []})


def write_timed(data: ReportData, folder: Path) -> tuple[Path, float]:
    """The report's own writer (data.json, index.html, the shards); its path and seconds."""
    t0 = time.perf_counter()
    html = write_report(data, folder)
    return html, time.perf_counter() - t0


# click a row of the list and wait (one animation frame at a time) until its card is drawn; ms in the page
SWITCH_JS = """async (id) => {
  const t0 = performance.now();
  document.querySelector('#feature-table tr[data-feature="' + id + '"]').click();
  await new Promise(done => { const check = () => {
    const card = document.querySelector('#feature-card');
    if (card && card.dataset.feature === String(id)) done(); else requestAnimationFrame(check); }; check(); });
  return performance.now() - t0;
}"""


def switch_ms(page, feature: int) -> float:
    """Milliseconds, measured in the page, from a click on ``feature``'s row to its card drawn."""
    return page.evaluate(SWITCH_JS, feature)


def measure(html: Path, data: ReportData, switches: int = 10) -> dict:
    """Times in headless Chromium (seconds), from ``file://``; see the module docstring."""
    from playwright.sync_api import sync_playwright

    live = {f.id for f in data.features}
    F = data.n_features_total
    far = [i for i in range(0, F, F // (switches + 1))][1 : switches + 1]  # ids spread over many shards
    far = [i if i in live else i + 1 for i in far]
    unreported = next(f.id for f in data.features if not f.tasks and f.id > F // 2)
    out: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        t0 = time.perf_counter()
        page.goto(html.resolve().as_uri())
        page.wait_for_selector("#overview.active")
        out["first_view"] = time.perf_counter() - t0
        page.wait_for_function("() => / live features/.test(document.getElementById('list-count').textContent) && "
                               "!/loading/.test(document.getElementById('list-count').textContent)")
        out["list_ready"] = time.perf_counter() - t0
        page.click("#tab-features")
        times = []
        for i in far:
            page.fill("#filter-text", str(i))
            times.append(switch_ms(page, i) / 1000)
        out["switch_median"], out["switch_max"] = statistics.median(times), max(times)
        q = browser.new_page(viewport={"width": 1280, "height": 800})
        t0 = time.perf_counter()
        q.goto(f"{html.resolve().as_uri()}#feature={unreported}")
        q.wait_for_selector(f'#feature-card[data-feature="{unreported}"]')
        out["deep_link"] = time.perf_counter() - t0
        q.goto(f"{html.resolve().as_uri()}#feature={F + 5}")
        q.wait_for_selector("#feature-absent")
        out["absent_text"] = q.inner_text("#feature-absent")
        browser.close()
    return out


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.2f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=int, default=32768)
    ap.add_argument("--checkpoints", type=int, default=32)
    ap.add_argument("--n-top", type=int, default=3, help="top contexts per feature and view")
    ap.add_argument("--out", type=Path, default=None, help="folder for the report (default: a temporary one)")
    ap.add_argument("--no-browser", action="store_true", help="measure the write only (no Chromium)")
    ap.add_argument("--read-back", action="store_true", help="also time read_report_data (memory: every feature's "
                                                              "evidence as Python objects, ~6 GB at the default size)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp) / "report"
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        data = synthetic_report(args.features, args.checkpoints, args.n_top)
        build = time.perf_counter() - t0
        html, write = write_timed(data, folder)
        read = None
        if args.read_back:
            t0 = time.perf_counter()
            read_report_data(folder)  # every shard checked against its sha256, every feature validated
            read = time.perf_counter() - t0
        shards = sorted((folder / REPORT_SHARDS).glob("shard-*.js"))
        total = sum(s.stat().st_size for s in shards)
        largest = max(shards, key=lambda s: s.stat().st_size)
        disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"## Dashboard at F = {args.features:,}, M = {args.checkpoints} (benchmarks/bench_dashboard.py)\n")
        print(f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load {load:.2f} at "
              f"the start, {os.getloadavg()[0]:.2f} after the write; Python {sys.version.split()[0]}; headless "
              f"Chromium from file://. Synthetic data, {len(data.features):,} live features, {args.n_top} top "
              f"contexts per feature and view ({args.checkpoints + 1} views).\n")
        print("| measure | value |\n|---|---|")
        print(f"| build the data (Python) | {build:.1f} s |")
        print(f"| write it (data.json + page + shards) | {write:.1f} s |")
        if read is not None:
            print(f"| read it back (read_report_data: shards checked and validated) | {read:.1f} s |")
        print(f"| report/ on disk | {disk / 2**20:.0f} MiB |")
        print(f"| data.json | {_size(folder / REPORT_DATA)} |")
        print(f"| index.html | {_size(html)} |")
        print(f"| features/index.js (list + search) | {_size(folder / REPORT_SHARDS / 'index.js')} |")
        print(f"| shards | {len(shards)}, {total / 2**20:.0f} MiB in all, largest {_size(largest)} |")
        if args.no_browser:
            return
        t = measure(html, data)
        print(f"| first view (overview drawn) | {t['first_view'] * 1000:.0f} ms |")
        print(f"| feature list filled (index.js read) | {t['list_ready'] * 1000:.0f} ms |")
        print(f"| switch to a feature in another shard (median / max of 10) | {t['switch_median'] * 1000:.0f} / "
              f"{t['switch_max'] * 1000:.0f} ms |")
        print(f"| deep link to an unreported feature, fresh page | {t['deep_link'] * 1000:.0f} ms |")
        print(f"| deep link to feature F + 5 says | {t['absent_text']} |")
        # the targets live here, not in the browser test (which only measures)
        met = {"first view < 3 s": t["first_view"] < 3.0, "median switch < 300 ms": t["switch_median"] < 0.3}
        print("targets: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in met.items()))


if __name__ == "__main__":
    main()
