"""A few findings of a run, in words (for the end of ``crosstime demo`` and the top of a report).

    from crosstime.report.findings import findings
    for line in findings("runs/toy"):     # or findings(data) with the dashboard data dict
        print("-", line)

Each finding is built only from what the run has; missing stages just give fewer findings.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from crosstime.artifacts import (
    REPORT_DATA,
    ArtifactError,
    ReportData,
    RunDir,
    read_model,
)
from crosstime.shares import NO_EFFECT


def _load(source: str | Path | dict) -> dict:
    """The dashboard data: ``source`` itself, or ``data.json`` of a run directory (or that file)."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.is_dir():
        path = RunDir(path).report / REPORT_DATA
    if not path.is_file():
        raise ArtifactError(f"{path} not found: run `crosstime report RUN` first")
    return read_model(ReportData, path).model_dump(mode="json")


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _label(ck: list[dict], m: int) -> str:
    c = ck[m]
    return c["revision"] if c.get("label") in (None, c["revision"]) else f"{c['revision']} ({c['label']} tokens)"


def _tok(vocab: dict, token_id: int) -> str:
    return repr(str(vocab.get(str(token_id), f"#{token_id}")).strip())


def accuracy_finding(data: dict) -> str | None:
    """The largest rise in task accuracy between consecutive evaluated checkpoints."""
    acc = (data.get("overview") or {}).get("accuracy") or {}
    best = None
    for task, points in acc.items():
        pts = [p for p in points if p.get("accuracy") is not None]
        for a, b in itertools.pairwise(pts):
            gain = b["accuracy"] - a["accuracy"]
            if best is None or gain > best[0]:
                best = (gain, task, a, b, pts[0], pts[-1])
    if best is None or best[0] <= 0:
        return None
    gain, task, a, b, first, last = best
    return (f"{task}: accuracy jumps from {_pct(a['accuracy'])} at {a['revision']} to {_pct(b['accuracy'])} at "
            f"{b['revision']} (the largest step; {_pct(first['accuracy'])} at {first['revision']}, "
            f"{_pct(last['accuracy'])} at {last['revision']}).")


def main_task(data: dict) -> str | None:
    """The task with the largest total Σ_m |IE_m| over the reported features (ties: the first)."""
    tasks = data.get("tasks") or []

    def total(task: str) -> float:
        return sum(abs(v) for f in data.get("features") or [] for v in ((f.get("tasks") or {}).get(task) or {}).get("ie") or []
                   if v is not None)

    return max(tasks, key=total) if tasks else None


def _with_effect(task_entry: dict) -> bool:
    """A feature's entry for a task has an effect to cite: RelIE shares, and a class other than "no effect"
    (a total |IE| below the attribution's floor: its RelIE profile is noise)."""
    return bool(task_entry.get("relie")) and task_entry.get("relie_class") != NO_EFFECT


def top_feature_finding(data: dict) -> str | None:
    """The reported feature with the largest Σ|IE| on the main task (none labelled "no effect"): where its
    effect sits, what it reads and writes."""
    ck = data.get("checkpoints") or []
    tasks = data.get("tasks") or []
    if not ck or not tasks:
        return None
    task = main_task(data)
    scored = []
    for f in data.get("features") or []:
        t = (f.get("tasks") or {}).get(task) or {}
        if t.get("ie") and _with_effect(t):
            scored.append((sum(abs(v) for v in t["ie"] if v is not None), f, t))
    if not scored:
        return None
    _, f, t = max(scored, key=lambda s: s[0])
    relie = t["relie"]
    m = max(range(len(relie)), key=lambda k: relie[k] if relie[k] is not None else -1)
    vocab = data.get("vocab") or {}
    text = (f"Feature {f['id']} has the largest effect on {task}: {_pct(relie[m])} of it (RelIE) is at {_label(ck, m)}"
            + (f", class {t['relie_class']}" if t.get("relie_class") else "") + ".")
    ev = f.get("evidence") or {}
    top = (ev.get("top") or {}).get("all") or []
    if top:
        words = []
        for w in top[:5]:
            tok = _tok(vocab, w["tokens"][w["position"] - w["start"]])
            if tok not in words:
                words.append(tok)
        text += f" It fires most on {', '.join(words[:3])}"
        lens = (ev.get("logit_lens") or {}).get(ck[-1]["revision"])
        if lens and lens.get("promoted"):
            text += f" and, at the last checkpoint, promotes {', '.join(_tok(vocab, p[0]) for p in lens['promoted'][:3])}"
        text += "."
    if f.get("description"):
        text += f" Annotated: “{f['description']}”."
    return text


def emergence_counts(data: dict) -> tuple[list[int], float] | None:
    """What ``evaluation/emergence.png`` draws, from the report data: features that fired on the
    evaluation's tokens (live), by onset checkpoint (entry 0: present at the first checkpoint;
    entry m: onset in (checkpoint m-1, checkpoint m]), and the presence fraction of onset."""
    emergence = (data.get("overview") or {}).get("emergence")
    if not emergence:
        return None
    return list(emergence["counts_live"]), float(emergence["presence_fraction"])


def emergence_finding(data: dict) -> str | None:
    """How many live features' decoders emerge after the first checkpoint, and when: the counts of the
    emergence plot (the same set: features that fired during evaluation), said in words."""
    ck = data.get("checkpoints") or []
    read = emergence_counts(data)
    if read is None or len(ck) < 2:
        return None
    counts, fraction = read
    live = sum(counts)
    later = live - counts[0]
    when = ", ".join(f"{c} between {ck[m - 1]['revision']} and {ck[m]['revision']}" for m, c in enumerate(counts) if m > 0)
    return (f"{later} of {live} live features ({_pct(later / live) if live else '0%'}) have decoders that emerge after "
            f"{ck[0]['revision']} ({when}); {counts[0]} are present from {ck[0]['revision']} on. Counted as in "
            f"evaluation/emergence.png: features that fired on the evaluation's tokens, onset = the first checkpoint "
            f"where the decoder norm reaches {_pct(fraction)} of its maximum.")


def agreement_finding(data: dict) -> str | None:
    """How often a reported feature's effect (RelIE) peaks where its decoder (RelDec) peaks."""
    task = main_task(data)
    if task is None:
        return None
    same, n = 0, 0
    for f in data.get("features") or []:
        t = (f.get("tasks") or {}).get(task) or {}
        if _with_effect(t) and f.get("reldec"):
            n += 1
            a = max(range(len(t["relie"])), key=lambda k: t["relie"][k] or 0)
            b = max(range(len(f["reldec"])), key=lambda k: f["reldec"][k] or 0)
            same += a == b
    if n < 3:
        return None
    return (f"For {same} of {n} reported features on {task}, the checkpoint that carries most of the effect (RelIE) is "
            f"also where the decoder is strongest (RelDec): strength and use " + ("mostly coincide." if same * 2 > n else "often differ."))


def findings(source: str | Path | dict[str, Any], n: int = 3) -> list[str]:
    """Up to ``n`` findings in words, most telling first (accuracy jump, top feature, emergence, RelIE vs RelDec)."""
    data = _load(source)
    out = [f(data) for f in (accuracy_finding, top_feature_finding, emergence_finding, agreement_finding)]
    return [line for line in out if line][:n]
