"""The dashboard data: everything a run directory holds, gathered into one JSON document.

:func:`collect` reads whatever stages exist (each one optional; what is missing is listed
in ``data["missing"]``) and returns plain JSON-ready data; :func:`render` embeds it with
the template (``dashboard.html/.css/.js``, package data) into one self-contained HTML
file: inline CSS and JS, no network, plots drawn as inline SVG or embedded PNGs.

Inputs read (column names are matched case-insensitively; per-checkpoint columns may be
spelt ``NAME_REV``, ``NAME[REV]``, ``NAME:REV``, ``NAME@REV`` or ``NAME_m`` with ``m`` the
checkpoint index):

- ``activations/manifest.json``: ``revisions``, ``checkpoints[rev].step/tokens_seen``, ``series.source``
- ``crosscoder/config.json``: shown as is (``revisions`` used when the store is missing)
- ``scan/accuracy.csv``: ``revision, step, tokens, task, accuracy`` (``n, mean_m`` optional)
- ``scan/similarity.npz``: every square 2-D array; labels from a 1-D string array of that length
- ``scan/dynamics.csv``: numeric columns plotted against ``tokens`` (or ``step``)
- ``scan/suggestion.json``: shown as key/values
- ``evaluation.json``: per-checkpoint metrics (lists of length M, ``{rev: {metric: v}}``
  maps, or lists of records with ``revision``), scalars as "overall"
- ``evaluation/features.csv``: ``feature``, ``reldec_<rev>`` (or ``norm_<rev>``),
  ``reldec_class``, ``onset``/``peak``/``offset``, ``trajectory``, ``frequency``
- ``attribution/TASK/features.csv``: ``feature``, ``ie_<rev>``, ``ie_lo_<rev>``,
  ``ie_hi_<rev>``, ``relie_<rev>``, ``relie_class`` (and RelDec columns, used when the
  evaluation table lacks them), ``frequency``
- ``attribution/TASK/ablation.csv``: ``feature, checkpoint`` + metrics (``delta_lpd``, …): a table, and per feature
- ``attribution/TASK/summary.json`` (scalars, and lists of length M as a per-checkpoint table),
  ``attribution/TASK/confusion.csv`` (RelIE class × RelDec class): shown per task
- ``*.png`` under ``scan/``, ``evaluation/``, ``attribution/*/``: embedded as data URIs
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from crosstime.files import write_text
from crosstime.rundir import RunDir

MAX_PNG_BYTES = 3 * 2**20
SHARE_BINS = 10


# ---------------------------------------------------------------------------------------
# small readers
# ---------------------------------------------------------------------------------------
def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def number(value: Any) -> float | int | None:
    """A CSV cell as an int or float (``None`` when empty or not a finite number)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    text = str(value).strip()
    if text == "" or text.lower() in ("nan", "none", "null", "na"):
        return None
    try:
        as_int = int(text)
        return as_int
    except ValueError:
        pass
    try:
        as_float = float(text)
    except ValueError:
        return None
    return as_float if math.isfinite(as_float) else None


def _lower_map(fieldnames) -> dict[str, str]:
    return {name.strip().lower(): name for name in fieldnames or []}


def series_columns(fieldnames, names: list[str], revisions: list[str]) -> list[str] | None:
    """The columns holding one value per checkpoint for the first of ``names`` that has them all."""
    lower = _lower_map(fieldnames)
    for name in names:
        patterns = [name] if "{r}" in name or "{m}" in name else \
            ["{n}_{r}", "{n}[{r}]", "{n}:{r}", "{n}@{r}", "{n}.{r}", "{n}_{m}", "{n}[{m}]", "{n}{m}"]
        for pattern in patterns:
            cols = [lower.get(pattern.replace("{n}", name).replace("{r}", r.lower()).replace("{m}", str(m)))
                    for m, r in enumerate(revisions)]
            if revisions and all(cols):
                return cols  # type: ignore[return-value]
    return None


def column(fieldnames, *names: str) -> str | None:
    lower = _lower_map(fieldnames)
    for name in names:
        if name in lower:
            return lower[name]
    return None


def _checkpoint_index(value: Any, revisions: list[str], steps: list[int | None]) -> int | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text in revisions:
        return revisions.index(text)
    v = number(text)
    if isinstance(v, int):
        if v < 0:
            return None
        if v < len(revisions):
            return v
        if v in steps:
            return steps.index(v)
    return None


def png_data_uri(path: Path) -> str | None:
    if path.stat().st_size > MAX_PNG_BYTES:
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# ---------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------
def checkpoints(run: RunDir) -> list[dict]:
    """The crosscoder's checkpoints in order: ``revision, step, tokens, label``."""
    revisions: list[str] = []
    info: dict[str, dict] = {}
    manifest_path = run.activations / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        revisions = list(manifest.get("revisions") or [])
        for rev, entry in (manifest.get("checkpoints") or {}).items():
            info[rev] = {"step": entry.get("step"), "tokens": entry.get("tokens_seen", entry.get("tokens"))}
    if not revisions and (run.crosscoder / "config.json").is_file():
        cfg = json.loads((run.crosscoder / "config.json").read_text())
        revisions = list(cfg.get("revisions") or cfg.get("checkpoints") or [])
    if not revisions and run.evaluation_file.is_file():
        ev = json.loads(run.evaluation_file.read_text())
        revisions = [r for r in ev.get("revisions", []) if isinstance(r, str)] if isinstance(ev, dict) else []
    acc_path = run.scan / "accuracy.csv"
    if acc_path.is_file():
        for row in read_csv(acc_path):
            rev = row.get("revision")
            if rev and rev not in info:
                info[rev] = {"step": number(row.get("step")), "tokens": number(row.get("tokens"))}
    from crosstime.series import format_tokens

    out = []
    for rev in revisions:
        entry = info.get(rev, {})
        tokens = entry.get("tokens")
        out.append({"revision": rev, "step": entry.get("step"), "tokens": tokens,
                    "label": format_tokens(tokens) if isinstance(tokens, (int, float)) and tokens else rev})
    # two checkpoints with the same token label (e.g. step 0 and 1 both "0") fall back to revisions
    labels = [c["label"] for c in out]
    for c in out:
        if labels.count(c["label"]) > 1:
            c["label"] = c["revision"]
    return out


def scan_overview(run: RunDir) -> tuple[dict, list[str]]:
    out: dict[str, Any] = {"accuracy": {}, "similarity": [], "suggestion": None, "dynamics": None}
    missing: list[str] = []
    from crosstime.series import format_tokens

    acc_path = run.scan / "accuracy.csv"
    if acc_path.is_file():
        for row in read_csv(acc_path):
            task = row.get("task") or "task"
            tokens = number(row.get("tokens"))
            out["accuracy"].setdefault(task, []).append({
                "revision": row.get("revision"), "step": number(row.get("step")), "tokens": tokens,
                "label": format_tokens(tokens) if tokens else row.get("revision"),
                "accuracy": number(row.get("accuracy")), "n": number(row.get("n")), "mean_m": number(row.get("mean_m")),
            })
        for points in out["accuracy"].values():
            points.sort(key=lambda p: (p["tokens"] if p["tokens"] is not None else p["step"] or 0))
    else:
        missing.append("scan/accuracy.csv (run `crosstime scan`)")
    sim_path = run.scan / "similarity.npz"
    if sim_path.is_file():
        with np.load(sim_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        for key, arr in arrays.items():
            if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.shape[0] > 0 and np.issubdtype(arr.dtype, np.number):
                n = arr.shape[0]
                named = [k for k in ("labels", "revisions") if k in arrays] + list(arrays)  # prefer scan's "labels"
                labels = next((list(map(str, arrays[k].tolist())) for k in named
                               if arrays[k].ndim == 1 and len(arrays[k]) == n and arrays[k].dtype.kind in "USO"), None)
                if labels is None:
                    toks = next((a for k, a in arrays.items() if a.ndim == 1 and len(a) == n and "token" in k.lower()), None)
                    labels = [format_tokens(int(t)) for t in toks] if toks is not None else [str(i) for i in range(n)]
                out["similarity"].append({"name": key, "labels": labels,
                                          "matrix": [[_json_float(v) for v in r] for r in arr.astype(float).tolist()]})
    else:
        missing.append("scan/similarity.npz")
    sug = run.scan / "suggestion.json"
    if sug.is_file():
        out["suggestion"] = json.loads(sug.read_text())
    else:
        missing.append("scan/suggestion.json")
    dyn = run.scan / "dynamics.csv"
    if dyn.is_file():
        rows = read_csv(dyn)
        if rows:
            fields = list(rows[0].keys())
            xcol = column(fields, "tokens", "tokens_seen", "step")
            skip = {xcol, column(fields, "step"), column(fields, "revision"), column(fields, "n_tokens"), column(fields, "n")}
            series = []
            for name in fields:
                if name in skip:
                    continue
                pts = [[number(r.get(xcol)) if xcol else i, number(r.get(name)), r.get("revision")] for i, r in enumerate(rows)]
                if any(p[1] is not None for p in pts) and all(isinstance(p[1], (int, float)) or p[1] is None for p in pts):
                    series.append({"name": name, "points": [p for p in pts if p[1] is not None]})
            ticks = [[number(r.get(xcol)), format_tokens(number(r.get(xcol))) if xcol and "token" in xcol.lower() else str(r.get(xcol))]
                     for r in rows] if xcol else []
            out["dynamics"] = {"series": series, "ticks": ticks, "xlabel": f"{xcol} (log)" if xcol else ""}
    out["figures"] = [f for f in (_figure(p, "scan") for p in sorted(run.scan.glob("*.png"))) if f] if run.scan.is_dir() else []
    return out, missing


def _figure(path: Path, group: str) -> dict | None:
    uri = png_data_uri(path)
    return {"name": f"{group}/{path.name}", "group": group, "src": uri} if uri else None


def _json_float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def evaluation_table(obj: Any, revisions: list[str]) -> dict:
    """Per-checkpoint rows from ``evaluation.json`` (whatever its nesting) plus overall scalars."""
    M = len(revisions)
    columns: dict[str, list] = {}
    overall: dict[str, Any] = {}

    def numeric(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            if revisions and set(revisions) <= set(node) and all(isinstance(node[r], dict) for r in revisions):
                for m, r in enumerate(revisions):  # {rev: {metric: value}}
                    for metric, v in node[r].items():
                        if numeric(v):
                            columns.setdefault(prefix + metric, [None] * M)[m] = v
                return
            for k, v in node.items():
                if k == "revisions":
                    continue
                if isinstance(v, (str, bool)) or numeric(v):
                    overall[prefix + k] = v
                elif isinstance(v, list) and M and len(v) == M and all(numeric(x) for x in v):
                    columns[prefix + k] = list(v)  # {metric: [M values]}
                else:
                    visit(v, prefix if _is_container_key(k) else f"{prefix}{k}.")
        elif isinstance(node, list) and node and all(isinstance(x, dict) and "revision" in x for x in node):
            for x in node:  # [{revision, metric: value}]
                if x["revision"] in revisions:
                    for metric, v in x.items():
                        if metric != "revision" and numeric(v):
                            columns.setdefault(prefix + metric, [None] * M)[revisions.index(x["revision"])] = v

    records = obj.get("checkpoints") if isinstance(obj, dict) else None
    if isinstance(records, list) and records and all(isinstance(x, dict) and "revision" in x for x in records):
        # the evaluate stage's layout: {"checkpoints": [{revision, metric: value}], "summary": {...}}
        visit(records, "")
        summary = obj.get("summary")
        if isinstance(summary, dict):
            overall.update({k: v for k, v in summary.items() if isinstance(v, (str, bool)) or numeric(v)})
    else:
        visit(obj, "")
    if columns:
        names = list(columns)
        rows = [[revisions[m]] + [columns[c][m] for c in names] for m in range(M)]
        return {"columns": ["checkpoint"] + names, "rows": rows, "overall": overall}
    return {"columns": [], "rows": [], "overall": overall}


def _is_container_key(key: str) -> bool:
    return key in ("per_checkpoint", "checkpoints", "metrics", "per_revision")


# ---------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------
def read_feature_table(path: Path, revisions: list[str], steps: list[int | None], kind: str = "evaluation") -> dict[int, dict]:
    """One dict per feature id from an evaluation (``kind="evaluation"``: a bare ``class``
    column is the RelDec class) or attribution (``"attribution"``) ``features.csv``."""
    rows = read_csv(path)
    if not rows:
        return {}
    fields = list(rows[0].keys())
    fid = column(fields, "feature", "feature_id", "id", "latent", "index")
    if fid is None:
        raise ValueError(f"{path} has no feature id column (expected one of feature, feature_id, id); columns: {fields}")
    want = {
        "reldec": ["reldec", "rel_dec", "relative_decoder_norm"],
        "norms": ["norm", "dec_norm", "decoder_norm", "w_dec_norm"],
        "ie": ["ie", "ie_mean", "mean_ie", "signed_ie"],
        "ie_lo": ["ie_{r}_lo", "ie_lo", "ie_low", "ie_ci_lo", "ci_lo", "ie_lower"],
        "ie_hi": ["ie_{r}_hi", "ie_hi", "ie_high", "ie_ci_hi", "ci_hi", "ie_upper"],
        "relie_lo": ["relie_{r}_lo", "relie_lo"],
        "relie_hi": ["relie_{r}_hi", "relie_hi"],
        "relie": ["relie", "rel_ie", "relative_ie"],
    }
    cols = {key: series_columns(fields, names, revisions) for key, names in want.items()}
    scalar = {
        "reldec_class": column(fields, "reldec_class", "class_reldec", "dec_class", *(["class"] if kind == "evaluation" else [])),
        "relie_class": column(fields, "relie_class", "class_relie", "ie_class"),
        "trajectory": column(fields, "trajectory", "trajectory_label"),
        "frequency": column(fields, "frequency", "freq", "firing_frequency", "density"),
        "onset": column(fields, "onset"), "peak": column(fields, "peak"), "offset": column(fields, "offset"),
    }
    out: dict[int, dict] = {}
    for row in rows:
        i = number(row.get(fid))
        if not isinstance(i, int):
            continue
        entry: dict[str, Any] = {}
        for key, cs in cols.items():
            if cs:
                entry[key] = [_json_float(number(row.get(c))) for c in cs]
        for key, c in scalar.items():
            if c is None:
                continue
            if key in ("onset", "peak", "offset"):
                entry[key] = _checkpoint_index(row.get(c), revisions, steps)
            elif key == "frequency":
                entry[key] = _json_float(number(row.get(c)))
            else:
                entry[key] = (row.get(c) or "").strip() or None
        out[i] = entry
    return out


def share_histograms(values: list[list[float | None]], M: int, bins: int = SHARE_BINS) -> list[list[int]]:
    """Per checkpoint, counts of shares in ``bins`` equal bins of [0, 1] (1.0 in the last bin)."""
    counts = [[0] * bins for _ in range(M)]
    for vec in values:
        for m, v in enumerate(vec[:M]):
            if v is None:
                continue
            counts[m][min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def class_counts(labels: list[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for lab in labels:
        if lab:
            out[lab] = out.get(lab, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def attribution_tasks(run: RunDir) -> list[str]:
    root = run.root / "attribution"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "features.csv").is_file())


def rank_features(features: dict[int, dict], tasks: list[str], norms: dict[int, list] | None = None) -> list[int]:
    """Feature ids, most interesting first: by max over tasks of Σ_m |IE_m|; else decoder norm; else frequency."""

    def ie_score(entry: dict) -> float:
        best = 0.0
        for t in tasks:
            ie = (entry.get("tasks") or {}).get(t, {}).get("ie")
            if ie:
                best = max(best, sum(abs(v) for v in ie if v is not None))
        return best

    if any(ie_score(e) > 0 for e in features.values()):
        key = ie_score
    elif norms:
        key = lambda e: sum(v for v in norms.get(e["id"], []) if v)  # noqa: E731
    else:
        key = lambda e: e.get("frequency") or 0.0  # noqa: E731
    return [e["id"] for e in sorted(features.values(), key=lambda e: (-key(e), e["id"]))]


def collect(run: RunDir) -> dict:
    """Everything but the feature evidence: checkpoints, overview and per-feature summaries."""
    ck = checkpoints(run)
    revisions = [c["revision"] for c in ck]
    steps = [c["step"] for c in ck]
    M = len(ck)
    missing: list[str] = []
    overview, scan_missing = scan_overview(run)
    missing += scan_missing
    if not (run.activations / "manifest.json").is_file():
        missing.append("activations/ (run `crosstime harvest`): no top contexts")
    if not (run.crosscoder / "model.safetensors").is_file():
        missing.append("crosscoder/model.safetensors (run `crosstime train`): no decoder norms, no top contexts")
    if (run.crosscoder / "config.json").is_file():
        cfg = json.loads((run.crosscoder / "config.json").read_text())
        overview["crosscoder"] = {k: v for k, v in cfg.items() if not isinstance(v, (dict, list)) or len(json.dumps(v)) < 200}
    if run.evaluation_file.is_file():
        overview["evaluation"] = evaluation_table(json.loads(run.evaluation_file.read_text()), revisions)
    else:
        missing.append("evaluation.json (run `crosstime evaluate`)")
    features: dict[int, dict] = {}
    ev_csv = run.evaluation / "features.csv"
    if ev_csv.is_file():
        for i, entry in read_feature_table(ev_csv, revisions, steps).items():
            entry.pop("ie", None), entry.pop("relie", None)
            features[i] = {"id": i, **entry, "tasks": {}}
    else:
        missing.append("evaluation/features.csv: no RelDec classes or onsets")
    if run.evaluation.is_dir():
        overview["figures"] += [f for f in (_figure(p, "evaluation") for p in sorted(run.evaluation.glob("*.png"))) if f]
    tasks = attribution_tasks(run)
    if not tasks:
        missing.append("attribution/TASK/features.csv (run `crosstime attribute`): no IE or RelIE")
    overview["ablation"] = {}
    for task in tasks:
        folder = run.attribution(task)
        for i, entry in read_feature_table(folder / "features.csv", revisions, steps, kind="attribution").items():
            feat = features.setdefault(i, {"id": i, "tasks": {}})
            feat["tasks"][task] = {k: entry.get(k) for k in ("ie", "ie_lo", "ie_hi", "relie", "relie_lo", "relie_hi", "relie_class")
                                   if entry.get(k) is not None}
            for k in ("reldec", "reldec_class", "frequency", "norms"):
                if feat.get(k) is None and entry.get(k) is not None:
                    feat[k] = entry[k]
        if (folder / "ablation.csv").is_file():
            rows = read_csv(folder / "ablation.csv")
            if rows:
                cols = list(rows[0].keys())
                overview["ablation"][task] = {"columns": cols, "rows": [[_cell(r.get(c)) for c in cols] for r in rows]}
                _attach_ablation(features, task, rows, revisions)
        info: dict[str, Any] = {}
        if (folder / "summary.json").is_file():
            summ = json.loads((folder / "summary.json").read_text())
            info["summary"] = {k: v for k, v in summ.items() if isinstance(v, (int, float, str, bool)) and k != "task"}
            per_ck = {k: v for k, v in summ.items() if isinstance(v, list) and len(v) == len(revisions) and revisions
                      and all(isinstance(x, (int, float)) or x is None for x in v)}
            if per_ck:
                info["per_checkpoint"] = {"columns": ["checkpoint", *per_ck],
                                          "rows": [[r, *[per_ck[k][m] for k in per_ck]] for m, r in enumerate(revisions)]}
        if (folder / "confusion.csv").is_file():
            rows = read_csv(folder / "confusion.csv")
            if rows:
                cols = list(rows[0].keys())
                info["confusion"] = {"columns": cols, "rows": [[_cell(r.get(c)) for c in cols] for r in rows]}
        if info:
            overview.setdefault("attribution", {})[task] = info
        overview["figures"] += [f for f in (_figure(p, f"attribution/{task}") for p in sorted(folder.glob("*.png"))) if f]
    # distributions and class counts over every feature in the tables
    reldec = [f["reldec"] for f in features.values() if f.get("reldec")]
    overview["distributions"] = {
        "reldec": share_histograms(reldec, M) if reldec and M else None, "n_reldec": len(reldec),
        "relie": {}, "n_relie": {},
    }
    counts = {}
    if any(f.get("reldec_class") for f in features.values()):
        counts["RelDec class"] = class_counts([f.get("reldec_class") for f in features.values()])
    if any(f.get("trajectory") for f in features.values()):
        counts["decoder-norm trajectory"] = class_counts([f.get("trajectory") for f in features.values()])
    for task in tasks:
        relie = [f["tasks"][task]["relie"] for f in features.values() if task in f["tasks"] and f["tasks"][task].get("relie")]
        if relie and M:
            overview["distributions"]["relie"][task] = share_histograms(relie, M)
            overview["distributions"]["n_relie"][task] = len(relie)
        labels = [f["tasks"][task].get("relie_class") for f in features.values() if task in f["tasks"]]
        if any(labels):
            counts[f"RelIE class ({task})"] = class_counts(labels)
    overview["class_counts"] = counts
    return {"checkpoints": ck, "overview": overview, "tasks": tasks, "all_features": features, "missing": missing}


def _attach_ablation(features: dict[int, dict], task: str, rows: list[dict], revisions: list[str]) -> None:
    """Per feature, the exact-ablation columns of ``ablation.csv`` (one row per feature and checkpoint) as [M] lists."""
    fields = list(rows[0].keys())
    fcol, ccol = column(fields, "feature"), column(fields, "checkpoint", "revision")
    if fcol is None or ccol is None:
        return
    metrics = [c for c in fields if c not in (fcol, ccol)]
    for r in rows:
        i, rev = number(r.get(fcol)), r.get(ccol)
        if not isinstance(i, int) or rev not in revisions or i not in features or task not in features[i]["tasks"]:
            continue
        abl = features[i]["tasks"][task].setdefault("ablation", {})
        for c in metrics:
            abl.setdefault(c, [None] * len(revisions))[revisions.index(rev)] = _json_float(number(r.get(c)))


def _cell(value: Any) -> Any:
    n = number(value)
    return n if n is not None else value


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------
def _asset(name: str) -> str:
    return resources.files("crosstime.report").joinpath(name).read_text(encoding="utf-8")


def _script_json(data: dict) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</``, no U+2028/9 surprises)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default)
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return _json_float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _clean(obj: Any) -> Any:
    """Replace NaN/inf by None everywhere (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def render(data: dict, path: str | Path) -> Path:
    """Write the self-contained dashboard for ``data`` to ``path`` (atomically)."""
    import html

    page = _asset("dashboard.html")
    title = html.escape(data.get("title") or "crosstime report")
    body = (page.replace("__TITLE__", title)
                .replace("__CSS__", _asset("dashboard.css"))
                .replace("__JS__", _asset("dashboard.js"))
                .replace("__DATA__", _script_json(_clean(data))))
    return write_text(path, body)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["collect", "render", "checkpoints", "read_feature_table", "rank_features", "evaluation_table",
           "series_columns", "share_histograms", "class_counts", "now"]
