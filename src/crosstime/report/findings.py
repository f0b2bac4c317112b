"""A few findings of a run, in words (for the end of ``crosstime demo`` and the top of a report).

    from crosstime.report.findings import findings
    for line in findings("runs/toy"):     # or findings(data) with the dashboard data (a ReportData)
        print("-", line)

Each finding is built only from what the run has; missing stages just give fewer findings.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from crosstime.artifacts import (
    REPORT_DATA,
    ArtifactError,
    Dimensionality,
    Evolution,
    Presence,
    ReportCheckpoint,
    ReportData,
    ReportFeature,
    RunDir,
    TaskEntry,
    read_report_data,
)
from crosstime.shares import NO_EFFECT


def _load(source: str | Path | ReportData) -> ReportData:
    """The dashboard data: ``source`` itself, or ``data.json`` of a run directory (or that file)."""
    if isinstance(source, ReportData):
        return source
    path = Path(source)
    if path.is_dir():
        path = RunDir(path).report / REPORT_DATA
    if not path.is_file():
        raise ArtifactError(f"{path} not found: run `crosstime report RUN` first")
    return read_report_data(path.parent)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _label(ck: list[ReportCheckpoint], m: int) -> str:
    c = ck[m]
    return c.revision if c.label == c.revision else f"{c.revision} ({c.label} tokens)"


def _tok(vocab: dict, token_id: int) -> str:
    return repr(str(vocab.get(str(token_id), f"#{token_id}")).strip())


def accuracy_finding(data: ReportData) -> str | None:
    """The largest rise in task accuracy between consecutive evaluated checkpoints."""
    best = None
    for task, points in data.overview.accuracy.items():
        pts = [p for p in points if p.accuracy is not None]
        for a, b in itertools.pairwise(pts):
            gain = b.accuracy - a.accuracy
            if best is None or gain > best[0]:
                best = (gain, task, a, b, pts[0], pts[-1])
    if best is None or best[0] <= 0:
        return None
    gain, task, a, b, first, last = best
    return (f"{task}: accuracy jumps from {_pct(a.accuracy)} at {a.revision} to {_pct(b.accuracy)} at "
            f"{b.revision} (the largest step; {_pct(first.accuracy)} at {first.revision}, "
            f"{_pct(last.accuracy)} at {last.revision}).")


def _task(feature: ReportFeature, task: str | None) -> TaskEntry | None:
    """A listed feature's attribution in ``task`` (None where the task does not report it)."""
    return feature.tasks.get(task) if task is not None else None


def main_task(data: ReportData) -> str | None:
    """The task with the largest total Σ_m |IE_m| over the reported features (ties: the first)."""

    def total(task: str) -> float:
        return sum(abs(v) for f in data.features if task in f.tasks for v in f.tasks[task].ie or [] if v is not None)

    return max(data.tasks, key=total) if data.tasks else None


def _with_effect(task_entry: TaskEntry | None) -> bool:
    """A feature's entry for a task has an effect to cite: RelIE shares, and a class other than "no effect"
    (a total |IE| below the attribution's floor: its RelIE profile is noise)."""
    return task_entry is not None and bool(task_entry.relie) and task_entry.relie_class != NO_EFFECT


def top_feature_finding(data: ReportData) -> str | None:
    """The reported feature with the largest Σ|IE| on the main task (none labelled "no effect"): where its
    effect sits, what it reads and writes."""
    ck = data.checkpoints
    if not ck or not data.tasks:
        return None
    task = main_task(data)
    scored = []
    for f in data.features:
        t = _task(f, task)
        if t is not None and t.ie and _with_effect(t):
            scored.append((sum(abs(v) for v in t.ie if v is not None), f, t))
    if not scored:
        return None
    _, f, t = max(scored, key=lambda s: s[0])
    relie = t.relie
    m = max(range(len(relie)), key=lambda k: relie[k] if relie[k] is not None else -1)
    vocab = data.vocab
    text = (f"Feature {f.id} has the largest effect on {task}: {_pct(relie[m])} of it (RelIE) is at {_label(ck, m)}"
            + (f", class {t.relie_class}" if t.relie_class else "")
            + (" (uncertain: its bootstrap interval over pairs reaches a cut-off of the class rule)"
               if t.relie_class_uncertain else "") + ".")
    ev = f.evidence
    top = (ev.top.get("all") or []) if ev is not None else []
    if top:
        words = []
        for w in top[:5]:
            tok = _tok(vocab, w.tokens[w.position - w.start])
            if tok not in words:
                words.append(tok)
        text += f" It fires most on {', '.join(words[:3])}"
        lens = ev.logit_lens.get(ck[-1].revision)
        if lens and lens.promoted:
            text += f" and, at the last checkpoint, promotes {', '.join(_tok(vocab, p[0]) for p in lens.promoted[:3])}"
        text += "."
    if f.description:
        text += f" Annotated: “{f.description}”."
    return text


def emergence_counts(data: ReportData) -> tuple[list[int], float] | None:
    """What ``evaluation/emergence.png`` draws, from the report data: features that fired on the
    evaluation's tokens (live), by onset checkpoint (entry 0: present at the first checkpoint;
    entry m: onset in (checkpoint m-1, checkpoint m]), and the presence fraction of onset."""
    emergence = data.overview.emergence
    if emergence is None:
        return None
    return list(emergence.counts_live), float(emergence.presence_fraction)


def emergence_finding(data: ReportData) -> str | None:
    """How many live features' decoders emerge after the first checkpoint, and when: the counts of the
    emergence plot (the same set: features that fired during evaluation), said in words."""
    ck = data.checkpoints
    read = emergence_counts(data)
    if read is None or len(ck) < 2:
        return None
    counts, fraction = read
    live = sum(counts)
    later = live - counts[0]
    if later == 0:
        return f"All {live} live features are present from {ck[0].revision} on (decoder norm ≥ {_pct(fraction)} of its peak)."
    m = max(range(1, len(counts)), key=lambda k: counts[k])
    return (f"{later} of {live} live features ({_pct(later / live)}) emerge after {ck[0].revision} (decoder norm first "
            f"≥ {_pct(fraction)} of its peak), most between {ck[m - 1].revision} and {ck[m].revision} ({counts[m]}); "
            "per interval in evaluation/emergence.png.")


def agreement_finding(data: ReportData) -> str | None:
    """How often a reported feature's effect (RelIE) peaks where its decoder (RelDec) peaks."""
    task = main_task(data)
    if task is None:
        return None
    same, n = 0, 0
    for f in data.features:
        t = _task(f, task)
        if _with_effect(t) and f.reldec:
            n += 1
            a = max(range(len(t.relie)), key=lambda k: t.relie[k] or 0)
            b = max(range(len(f.reldec)), key=lambda k: f.reldec[k] or 0)
            same += a == b
    if n < 3:
        return None
    return (f"For {same} of {n} reported features on {task}, the checkpoint that carries most of the effect (RelIE) is "
            f"also where the decoder is strongest (RelDec): strength and use " + ("mostly coincide." if same * 2 > n else "often differ."))


# -- the Evolution panel's readings (overview.evolution, crosstime.report.evolution) ------------

# which phase (scan/phases.json: "n-gram statistics" or a task) a feature type should follow
TYPE_PHASES = {"current_token": ("n-gram statistics",), "previous_token": ("previous_token",),
               "induction": ("induction",), "subject_number": ("pp_attractor", "rc_attractor"),
               "attractor": ("pp_attractor", "rc_attractor"), "subject_end": ("pp_attractor", "rc_attractor")}
UNTYPED = ("other", "unscored")  # not a kind of feature the phases speak of


def _revisions(evolution: Evolution) -> list[str]:
    """The crosscoder's revisions, as the Evolution panel has them."""
    return [c.revision for c in evolution.checkpoints]


def _numbers(values: list[float | None], fmt: str = ".2f") -> str:
    return ", ".join("—" if v is None else format(v, fmt) for v in values)


def rotation_reading(data: ReportData) -> str | None:
    """Whether decoder directions turn or rotate steadily, from the consecutive-checkpoint cosines
    (evaluation.json's decoder.rotation: live features present at both checkpoints)."""
    rot = data.overview.evolution.rotation
    if rot is None or not rot.intervals or all(c is None for c in rot.median_cosine):
        return None
    of = (f"median cosine between consecutive checkpoints' decoder directions {_numbers(rot.median_cosine)} over "
          f"{', '.join(rot.intervals)} (live features present at both, norm ≥ {_pct(rot.presence_fraction)} of their "
          f"peak; {min(rot.n_features)}–{max(rot.n_features)} features)")
    final = rot.final_median[0]
    tail = "" if final is None else f"; the median cosine of {rot.revisions[0]}'s direction with the last is {final:.2f}"
    if not rot.turns:
        return (f"Decoder directions rotate without a turn: {of}, never below the turn bound {rot.turn_bound:g}"
                f"{tail}.")
    where = ", ".join(f"{rot.intervals[m]} ({rot.median_cosine[m]:.2f})" for m in rot.turns)
    return f"Decoder directions turn at {where}, below the turn bound {rot.turn_bound:g}: {of}{tail}."


def _pearson(a: list[float], b: list[float]) -> float | None:
    """Pearson r of two equal-length series (None where either is constant)."""
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    va, vb = sum((x - ma) ** 2 for x in a), sum((y - mb) ** 2 for y in b)
    if va <= 0 or vb <= 0:
        return None
    return sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (va * vb) ** 0.5


RANK_TRACKS = 0.7  # Pearson r of dimensionality with the activations' PCs for 90% at or above which it "moves with" it


def dimensionality_reading(data: ReportData) -> str | None:
    """Where the total feature dimensionality Σ D_i / d is lowest and where it ends, beside its baselines: the
    activations' effective rank (PCs for 90% of the variance) and the present features per checkpoint."""
    evolution = data.overview.evolution
    dim, revisions = evolution.dimensionality, _revisions(evolution)
    if dim is None or len(dim.total) != len(revisions) or len(revisions) < 2:
        return None
    total = dim.total
    low = min(range(len(total)), key=lambda m: total[m])
    last = len(total) - 1
    of = f"(Σ D_i / d, {dim.live_features} live features, d = {dim.d})"
    if low == last:
        text = (f"Feature dimensionality {of} falls from {total[0]:.2f} at {revisions[0]} to {total[last]:.2f} "
                f"at {revisions[last]}, without rising again")
    elif low == 0:
        text = (f"Feature dimensionality {of} rises from {total[0]:.2f} at {revisions[0]} to {total[last]:.2f} at "
                f"{revisions[last]}, without falling first")
    else:
        text = (f"Feature dimensionality {of} falls from {total[0]:.2f} at {revisions[0]} to {total[low]:.2f} at "
                f"{revisions[low]}, then rises to {total[last]:.2f} at {revisions[last]}")
    return text + _baselines(dim, evolution.presence) + "."


def _baselines(dim: Dimensionality, presence: Presence | None) -> str:
    """The dimensionality reading's baselines, in words (empty without them)."""
    parts = []
    if dim.pcs_90 is not None:
        r = _pearson(list(dim.total), [float(k) for k in dim.pcs_90])
        verdict = ("it moves with the activations' rank, so the curve alone does not tell superposition from rank "
                   "collapse" if r is not None and r >= RANK_TRACKS else "it does not simply follow the activations' "
                   "rank")
        parts.append(f"the activations need {', '.join(map(str, dim.pcs_90))} principal components for 90% of their "
                     f"variance ({dim.spectrum_rows:,} held-out rows"
                     + (f"; Pearson r with the dimensionality {r:.2f}" if r is not None else "") + f"): {verdict}")
    if presence is not None:
        parts.append(f"present features (decoder ≥ {_pct(presence.present_fraction)} of their peak): "
                     f"{', '.join(map(str, presence.present))}")
    return "; " + "; ".join(parts) if parts else ""


def type_onsets(data: ReportData) -> list[tuple[str, int, int]] | None:
    """``(type, median onset checkpoint index, features of the type)`` of the typed features with an onset, by onset."""
    typed = data.overview.evolution.typed_emergence
    if typed is None:
        return None
    onsets = [(t, typed.onset_median[t], typed.counts.get(t, 0)) for t in typed.types
              if t not in UNTYPED and typed.onset_median.get(t) is not None]
    return sorted(onsets, key=lambda o: o[1])


def typed_emergence_reading(data: ReportData) -> str | None:
    """Per feature type, its median onset, in onset order."""
    onsets = type_onsets(data)
    if not onsets:
        return None
    revisions = _revisions(data.overview.evolution)
    parts = [f"{t} at {revisions[m]} (median of {n})" for t, m, n in onsets]
    return f"Features emerge by type: {parts[0].replace(' at ', ' features at ', 1)}" + "".join(f", {p}" for p in parts[1:]) + "."


def _phase_steps(data: ReportData) -> dict[str, tuple[str, int]]:
    """Feature type -> (its phase, the phase's onset step), for the types whose phase was learned (the
    agreement types: the first of the attractor tasks learned)."""
    phases = data.overview.evolution.phases
    learned = {p.name: p.step for p in phases.phases if p.step is not None} if phases is not None else {}
    out = {}
    for kind, names in TYPE_PHASES.items():
        found = sorted((learned[n], n) for n in names if n in learned)
        if found:
            out[kind] = (found[0][1], found[0][0])
    return out


def phase_order_reading(data: ReportData) -> str | None:
    """Whether the feature types emerge (crosscoder, by training step) in the order their phases are learned
    (scan/phases.json); the pairs out of order named. Ties on either side count as in order (the crosscoder's
    checkpoints are a subset of the scanned ones)."""
    onsets, phase_of = type_onsets(data), _phase_steps(data)
    ck = data.overview.evolution.checkpoints
    pairs = [(t, ck[m].step, *phase_of[t]) for t, m, _ in onsets or [] if t in phase_of and ck[m].step is not None]
    if len(pairs) < 2:
        return None
    mapping = ", ".join(f"{t} (step {a}) → {p} (step {b})" for t, a, p, b in pairs)
    wrong = [f"{a[0]} features emerge at step {a[1]}, after {b[0]} at step {b[1]}, but {a[2]} is learned at step "
             f"{a[3]}, before {b[2]} at step {b[3]}"
             for a in pairs for b in pairs if a[2] != b[2] and a[3] < b[3] and a[1] > b[1]]
    verdict = "matches (ties count as in order)" if not wrong else "differs: " + "; ".join(wrong)
    trust = data.overview.evolution.phases.trust()
    return (f"The feature types' emergence order {verdict}; median onset of each type → the phase it serves, learned "
            f"at: {mapping}" + (f" (the phase order {trust})." if trust else "."))


def evolution_lines(source: str | Path | ReportData) -> list[str]:
    """The second paper's readings that a run supports (phase order, rotation, dimensionality with its
    baselines, typed emergence), from a run directory, its data.json, or the data itself."""
    return [line for line in evolution_readings(_load(source)).values() if line]


def evolution_readings(data: ReportData) -> dict[str, str | None]:
    """The Evolution figures' captions (keys of crosstime.report.evolution.EVOLUTION_FIGURES' values)."""
    return {"phases": phase_order_reading(data), "dimensionality": dimensionality_reading(data),
            "rotation": rotation_reading(data), "typed_emergence": typed_emergence_reading(data)}


def findings(source: str | Path | ReportData, n: int = 3) -> list[str]:
    """Up to ``n`` findings in words, most telling first (accuracy jump, top feature, emergence, the feature types'
    order against the phases, rotation, dimensionality beside its baselines, RelIE vs RelDec). Each says what it
    rests on: the decoder readings on presence relative to a feature's own peak, not on share cut-offs."""
    data = _load(source)
    out = [f(data) for f in (accuracy_finding, top_feature_finding, emergence_finding, phase_order_reading,
                             rotation_reading, dimensionality_reading, agreement_finding)]
    return [line for line in out if line][:n]
