"""Which checkpoints a crosscoder should compare: before the accuracy jump, after it, and late.

:func:`suggest_checkpoints` reads the per-task accuracy curves (a flat–ramp–flat fit per task,
:func:`fit_ramp`) and the linear-CKA matrix (where representations have moved on; contiguous
blocks of similar checkpoints, :func:`cka_blocks`). Its method, as recorded in
``scan/suggestion.json``, is :data:`SUGGESTION_METHOD`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crosstime.artifacts import AccuracyJump, SuggestedCheckpoint, SuggestionNumbers, TaskRamp
from crosstime.checkpoints import Checkpoint
from crosstime.series import log_x


def fit_ramp(x: Sequence[float], y: Sequence[float]) -> dict | None:
    """Least-squares flat–ramp–flat fit of ``y`` over ``x``: low until x[a], linear to x[b], high after.

    Tries every pair a < b of points as ramp ends; for each, ``lo`` and ``hi`` are the least-squares
    levels. Returns the best rising fit {a, b, lo, hi, sse} (ties: the narrower ramp), or None.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    best = None
    for a in range(len(x) - 1):
        for b in range(a + 1, len(x)):
            f = np.clip((x - x[a]) / max(x[b] - x[a], 1e-12), 0.0, 1.0)
            design = np.stack([1 - f, f], axis=1)
            (lo, hi), *_ = np.linalg.lstsq(design, y, rcond=None)
            if hi <= lo:
                continue
            sse = float(((design @ [lo, hi] - y) ** 2).sum())
            key = (round(sse, 9), b - a)
            if best is None or key < best["key"]:
                best = {"a": a, "b": b, "lo": float(lo), "hi": float(hi), "sse": sse, "key": key}
    if best is not None:
        best.pop("key")
    return best


def cka_blocks(sim: np.ndarray, max_blocks: int = 4, keep: float = 0.3) -> list[list[int]]:
    """Split the ordered checkpoints into contiguous blocks of mutually similar representations.

    Exact dynamic programming over split points minimising Σ_blocks Σ_{i,j in block} (1 − sim)
    / |block|; the number of blocks is the smallest k whose cost is at most ``keep`` × the
    one-block cost (or ``max_blocks``). ``sim``: [M, M].
    """
    n = len(sim)
    dis = 1.0 - np.asarray(sim, float)

    def cost(i: int, j: int) -> float:  # block i..j-1
        return float(dis[i:j, i:j].sum()) / (j - i)

    total = cost(0, n)
    best_split: list[list[int]] = [list(range(n))]
    table = {(0, j): (cost(0, j), [0]) for j in range(1, n + 1)}
    for k in range(2, min(max_blocks, n) + 1):
        new = {}
        for j in range(k, n + 1):
            options = [(table[(0, i)][0] + cost(i, j), table[(0, i)][1] + [i]) for i in range(k - 1, j) if (0, i) in table]
            new[(0, j)] = min(options, key=lambda o: o[0])
        table = new
        value, starts = table[(0, n)]
        best_split = [list(range(s, e)) for s, e in zip(starts, starts[1:] + [n])]
        if total <= 1e-12 or value <= keep * total:
            break
    return best_split


SUGGESTION_METHOD = (
    "Accuracy jump: each task's accuracy against log tokens is fitted by least squares with a flat-ramp-flat "
    "curve (low level, linear rise between two checkpoints, high level); tasks whose fitted rise is at least "
    "min_jump have a jump. 'before' = the earliest ramp start over those tasks (no task has started rising), "
    "'after' = the latest ramp end (every task has finished rising). Late: among checkpoints after 'after', the "
    "first whose CKA distance (1 - CKA) from 'after' reaches 90% of the largest such distance, i.e. where "
    "representations have moved on once accuracy has settled. Further picks (n > 3) are farthest-point choices "
    "in CKA distance. Without any jump, picks span representation change (farthest points in CKA distance, "
    "starting from the last checkpoint)."
)


def _level(v: float) -> float:
    """A fitted plateau clipped to [0, 1] (least-squares levels can overshoot slightly)."""
    return float(min(max(v, 0.0), 1.0))


def _token_axis(ckpts: list[Checkpoint]) -> np.ndarray:
    """x of the ramp fits: log10 tokens (step 0 at half the smallest positive count), else checkpoint order."""
    tokens = [c.tokens for c in ckpts]
    if any(tokens) and None not in tokens:
        return np.log10(log_x(tokens))
    return np.arange(len(ckpts), dtype=float)


def _curves(accuracy: Sequence[float] | dict[str, Sequence[float]] | None) -> dict[str, np.ndarray]:
    """Accuracy curves by task (one unnamed curve is called ``accuracy``)."""
    if accuracy is None:
        return {}
    if isinstance(accuracy, dict):
        return {k: np.asarray(v, float) for k, v in accuracy.items()}
    return {"accuracy": np.asarray(accuracy, float)}


@dataclass
class _Evidence:
    """What the picks are made from, and how a pick is written down.

    curves: task → accuracy [M]; mean: [M] or None; cka: [M, M] or None; dist = 1 − cka.
    """

    ckpts: list[Checkpoint]
    curves: dict[str, np.ndarray]
    mean: np.ndarray | None
    cka: np.ndarray | None
    dist: np.ndarray | None
    block_of: dict[int, int]

    def entry(self, i: int, role: str, reason: str, numbers: dict) -> SuggestedCheckpoint:
        """Pick ``i`` written down; ``numbers``: the :class:`SuggestionNumbers` its role has."""
        c = self.ckpts[i]
        return SuggestedCheckpoint(revision=c.revision, step=c.step, tokens=c.tokens, label=c.label, role=role,
                                   reason=reason, numbers=SuggestionNumbers(**numbers))

    def acc_numbers(self, i: int) -> dict:
        if self.mean is None:
            return {}
        out = {"accuracy": float(self.mean[i])}
        if len(self.curves) > 1:
            out["task_accuracy"] = {k: float(v[i]) for k, v in self.curves.items()}
        return out

    def acc_text(self, i: int) -> str:
        return "" if self.mean is None else f"mean accuracy {self.mean[i]:.2f}"


def _evidence(ckpts: list[Checkpoint], accuracy, cka: np.ndarray | None) -> tuple[_Evidence, list[list[int]]]:
    """The evidence and the contiguous CKA blocks (one block without a CKA matrix or with one checkpoint)."""
    curves = _curves(accuracy)
    mean = np.mean(list(curves.values()), axis=0) if curves else None
    dist = None if cka is None else 1.0 - np.asarray(cka, float)
    blocks = cka_blocks(cka) if cka is not None and len(ckpts) > 1 else [list(range(len(ckpts)))]
    block_of = {i: bi for bi, block in enumerate(blocks) for i in block}
    return _Evidence(ckpts, curves, mean, cka, dist, block_of), blocks


def _jump_summary(ckpts: list[Checkpoint], jumps: dict[str, dict], curves: dict[str, np.ndarray]) -> AccuracyJump:
    """``suggestion.jump``: the bracketing checkpoints and each task's fitted ramp."""
    a = min(r["a"] for r in jumps.values())
    b = max(r["b"] for r in jumps.values())
    return AccuracyJump(
        before=ckpts[a].revision, after=ckpts[b].revision,
        tasks={k: TaskRamp(starts=ckpts[r["a"]].revision, ends=ckpts[r["b"]].revision, low=_level(r["lo"]),
                           high=_level(r["hi"]), rise=_level(r["hi"]) - _level(r["lo"])) for k, r in jumps.items()},
        no_jump=sorted(set(curves) - set(jumps)))


def _pick_around_jump(ev: _Evidence, jumps: dict[str, dict], n: int) -> dict[int, SuggestedCheckpoint]:
    """*before* (the earliest ramp start) and, for n ≥ 2, *after* (the latest ramp end); n ≥ 3 adds *late*."""
    a = min(r["a"] for r in jumps.values())
    b = max(r["b"] for r in jumps.values())
    first = min(jumps, key=lambda k: jumps[k]["a"])
    last = max(jumps, key=lambda k: jumps[k]["b"])
    cka_ab = None if ev.cka is None else float(ev.cka[a, b])
    chosen = {a: ev.entry(a, "before", (
        f"last checkpoint before the accuracy jump: {ev.acc_text(a)}; {first} starts rising after it "
        f"(fitted {_level(jumps[first]['lo']):.2f} → {_level(jumps[first]['hi']):.2f})"),
        ev.acc_numbers(a) | {"cka_with_after": cka_ab})}
    if n >= 2:
        chosen[b] = ev.entry(b, "after", (
            f"first checkpoint after the jump: {ev.acc_text(b)}; {last} reaches its high plateau here "
            f"(fitted {_level(jumps[last]['hi']):.2f})"),
            ev.acc_numbers(b) | {"cka_with_before": cka_ab})
    if n >= 3 and b + 1 < len(ev.ckpts):
        late, entry = _pick_late(ev, b)
        chosen[late] = entry
    return chosen


def _pick_late(ev: _Evidence, b: int) -> tuple[int, SuggestedCheckpoint]:
    """*late*: the first checkpoint after ``b`` whose 1 − CKA with ``b`` reaches 90% of the largest
    (the last checkpoint when representations barely move, or without a CKA matrix)."""
    later = list(range(b + 1, len(ev.ckpts)))
    if ev.dist is None:
        late = later[-1]
        why = f"last checkpoint (no similarity matrix to locate representation change); {ev.acc_text(late)}"
        return late, ev.entry(late, "late", why, ev.acc_numbers(late))
    d = np.array([ev.dist[b, c] for c in later])
    if d.max() < 0.01:
        late = later[-1]
        why = (f"last checkpoint; representations barely move after the jump (1 - CKA with "
               f"{ev.ckpts[b].label} at most {d.max():.3f}), so a late checkpoint adds little")
    else:
        late = later[int(np.argmax(d >= 0.9 * d.max()))]
        why = (f"late checkpoint where representations have moved on: CKA with the 'after' checkpoint "
               f"({ev.ckpts[b].label}) is {ev.cka[b, late]:.2f} (lowest after the jump: {1 - d.max():.2f}); "
               f"{ev.acc_text(late)}")
    numbers = ev.acc_numbers(late) | {"cka_with_after": float(ev.cka[b, late]),
                                      "min_cka_with_after": float(1 - d.max()), "cka_block": ev.block_of.get(late)}
    return late, ev.entry(late, "late", why, numbers)


def _pick_last(ev: _Evidence, ramps: dict[str, dict | None], min_jump: float) -> dict[int, SuggestedCheckpoint]:
    """Without any jump: the last checkpoint, saying so (others are then farthest points)."""
    start = len(ev.ckpts) - 1
    rises = [r["hi"] - r["lo"] for r in ramps.values() if r is not None]
    reason = ("no accuracy jump" + (f" (largest fitted rise {max(rises):.2f} < {min_jump})" if rises else "")
              + "; last checkpoint, others chosen to span representation change")
    return {start: ev.entry(start, "last", reason, ev.acc_numbers(start))}


def _add_farthest(ev: _Evidence, chosen: dict[int, SuggestedCheckpoint], n: int) -> None:
    """Fill ``chosen`` up to n picks: each time the checkpoint farthest in 1 − CKA from all chosen ones
    (the middle of the rest without a CKA matrix)."""
    count = len(ev.ckpts)
    while len(chosen) < min(n, count):
        rest = [i for i in range(count) if i not in chosen]
        if ev.dist is not None:
            gaps = [min(ev.dist[i, j] for j in chosen) for i in rest]
            pick = rest[int(np.argmax(gaps))]
            why = f"farthest from the other picks in representation space (min 1 - CKA = {max(gaps):.2f})"
            nums = {"min_cka_distance": float(max(gaps))}
        else:
            pick = rest[len(rest) // 2]
            why = "spacing (no similarity matrix)"
            nums = {}
        chosen[pick] = ev.entry(pick, "extra", why, nums | ev.acc_numbers(pick))


def suggest_checkpoints(
    checkpoints: Sequence[Checkpoint],
    accuracy: Sequence[float] | dict[str, Sequence[float]] | None,
    cka: np.ndarray | None,
    n: int = 3,
    min_jump: float = 0.1,
) -> dict:
    """Suggest ``n`` checkpoints for a crosscoder: before the accuracy jump, after it, and late.

    ``accuracy`` is one curve or a dict task → curve (one value per checkpoint, in order);
    ``cka`` the [M, M] linear-CKA matrix. Method (also :data:`SUGGESTION_METHOD`):

    1. x = log10 tokens (step 0 at half the smallest positive count). For each task,
       :func:`fit_ramp` finds the best flat–ramp–flat curve; a fitted rise ≥ ``min_jump`` is a
       jump. *before* = the earliest ramp start over tasks with a jump (the last checkpoint
       where no task has started to rise: a per-task choice, so one task dipping below
       chance while another rises cannot hide the onset in a mean), *after* = the latest
       ramp end (every task on its high plateau).
    2. *late*: d(c) = 1 − CKA(after, c) for checkpoints c after *after*; the first c with
       d(c) ≥ 0.9 · max d — representations have (mostly) finished moving on there. If they
       barely move (max d < 0.01), the last checkpoint, with the reason saying so.
    3. n > 3: add the checkpoint farthest (in 1 − CKA) from all chosen ones, repeatedly.
       n = 2: before, after; n = 1: before. Without any jump: the last checkpoint, then
       farthest points.

    Returns {"method", "jump" (an :class:`AccuracyJump`, or None), "blocks" (contiguous CKA blocks,
    :func:`cka_blocks`), "checkpoints" (:class:`SuggestedCheckpoint` s, ordered by tokens), "revisions"}:
    the fields of :class:`crosstime.artifacts.Suggestion` the scan does not add.
    """
    ckpts = list(checkpoints)
    ev, blocks = _evidence(ckpts, accuracy, cka)
    x = _token_axis(ckpts)
    ramps = {k: fit_ramp(x, v) for k, v in ev.curves.items()} if len(ckpts) >= 2 else {}
    jumps = {k: r for k, r in ramps.items() if r is not None and r["hi"] - r["lo"] >= min_jump}
    chosen: dict[int, SuggestedCheckpoint] = {}
    jump = None
    if jumps:
        jump = _jump_summary(ckpts, jumps, ev.curves)
        chosen = _pick_around_jump(ev, jumps, n)
    elif n >= 1 and ckpts:
        chosen = _pick_last(ev, ramps, min_jump)
    _add_farthest(ev, chosen, n)
    picks = [chosen[i] for i in sorted(chosen)]
    return {"method": SUGGESTION_METHOD, "jump": jump,
            "blocks": [[ckpts[i].revision for i in block] for block in blocks],
            "checkpoints": picks, "revisions": [p.revision for p in picks]}
