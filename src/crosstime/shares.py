"""Reading the time axis of a crosscoder from its decoder: shares, classes, trajectories.

Pure functions on tensors, for any number of checkpoints ``M``; nothing here loads a
model or a run. The same share / class functions serve RelDec (decoder norms, here) and
RelIE (indirect effects, in the attribution stage):

    norms   = decoder_norms(W_dec)             # [F, M]   ‖W_dec[i, m]‖
    shares  = relative_shares(norms)           # [F, M]   RelDec, rows sum to one (1/M if all zero)
    pairs   = pairwise_shares(norms)           # [F, M, M] v_b / (v_a + v_b), 0.5 if both zero
    classes = classify_shares(shares, revs)    # ["step512-dominant", "all shared", ...]
    classes = classify_effects(ie.T, revs, floor)  # RelIE classes; "no effect" below the floor
    cos     = decoder_cosines(W_dec)           # [F, M, M] direction agreement between checkpoints
    traj    = trajectories(norms)              # onset / peak / offset / label per feature
    counts  = emergence_counts(traj.onset, M)  # features emerging at each checkpoint

Nothing returns NaN: every ratio has a documented value where its denominator is zero
(the reference code returns NaN for a zero pairwise sum and 0.5 instead of 1/3 for an
all-zero feature — notes B10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

# The paper's thresholds (reference `classify_cont_value` / `table_generator_three_way`).
HIGH_SHARE = 0.7
LOW_SHARE = 0.3

SHARED_ALL = "all shared"
OTHER = "other"
NO_EFFECT = "no effect"  # classify_effects: a total |effect| below the floor has no checkpoint profile

# Trajectory (presence) classes (see `trajectories`): from the set of checkpoints where a feature is present.
PERSISTENT = "persistent"  # present at every checkpoint
EMERGING = "emerging"  # not present at the first; present at every checkpoint from its onset through the last
FADING = "fading"  # present at the first checkpoint and every one through its offset; not present at the last
TRANSIENT = "transient"  # present on one unbroken span that touches neither the first nor the last checkpoint
INTERMITTENT = "intermittent"  # present on two or more separate spans
EMPTY = "empty"  # zero decoder norm everywhere
TRAJECTORY_LABELS = (PERSISTENT, EMERGING, FADING, TRANSIENT, INTERMITTENT, EMPTY)


def _as_float(values: torch.Tensor, name: str, dims: int) -> torch.Tensor:
    values = torch.as_tensor(values)
    if values.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {tuple(values.shape)}")
    if not values.is_floating_point():
        values = values.double()
    return values


def decoder_norms(W_dec: torch.Tensor) -> torch.Tensor:
    """``‖W_dec[i, m, :]‖₂``: ``W_dec [F, M, d]`` -> ``[F, M]``."""
    W_dec = _as_float(W_dec, "W_dec [F, M, d]", 3)
    return torch.linalg.vector_norm(W_dec, dim=-1)


def relative_shares(values: torch.Tensor) -> torch.Tensor:
    """Each checkpoint's share of a feature's total: ``|v[i, m]| / Σ_k |v[i, k]|``.

    ``values [F, M]`` (decoder norms for RelDec, indirect effects for RelIE; magnitudes
    are taken, so signed effects can be passed as they are) -> ``[F, M]``, every row
    summing to one. A row that is zero everywhere gets ``1/M`` in every column (it has
    no preference for any checkpoint), never NaN.
    """
    values = _as_float(values, "values [F, M]", 2).abs()
    M = values.shape[1]
    total = values.sum(dim=1, keepdim=True)
    zero = total == 0
    shares = values / torch.where(zero, torch.ones_like(total), total)
    return torch.where(zero, torch.full_like(shares, 1.0 / M), shares)


def pairwise_shares(values: torch.Tensor) -> torch.Tensor:
    """Two-checkpoint shares for every pair: ``P[i, a, b] = |v_b| / (|v_a| + |v_b|)``.

    ``values [F, M]`` -> ``[F, M, M]``; ``P[i, a, b] + P[i, b, a] = 1`` and the diagonal is
    0.5. Where ``v_a = v_b = 0`` the share is 0.5, never NaN. For ``M = 2`` the paper's
    RelDec is ``P[:, 0, 1]`` (= ``relative_shares(values)[:, 1]``); the reference's 3-way
    pairwise vector is ``[P[:,0,1], P[:,1,2], P[:,0,2]]``.
    """
    values = _as_float(values, "values [F, M]", 2).abs()
    a = values[:, :, None]
    b = values[:, None, :]
    total = a + b
    zero = total == 0
    shares = b / torch.where(zero, torch.ones_like(total), total)
    return torch.where(zero, torch.full_like(shares, 0.5), shares)


def classify_shares(
    shares: torch.Tensor,
    revisions: Sequence[str],
    high: float = HIGH_SHARE,
    low: float = LOW_SHARE,
) -> list[str]:
    """One class label per feature from its shares ``[F, M]`` (rows of `relative_shares`).

    Rules, applied in order (the paper's; general for any M):

    1. ``"<rev>-dominant"`` — one checkpoint holds more than ``high`` (0.7) and the most.
       For M = 2 this is the paper's "later-specific" (RelDec > 0.7) or "earlier-specific"
       (RelDec < 0.3) and is spelt ``"<rev>-specific"``.
    2. ``"all shared"`` — every share is at least ``low`` (0.3). Only possible for M ≤ 3.
    3. ``"<a>+<b> shared"`` — the checkpoints with share ≥ ``low`` (two, or for M > 3 up to
       three) in checkpoint order.
    4. ``"other"``.
    """
    shares = _as_float(shares, "shares [F, M]", 2)
    M = shares.shape[1]
    if len(revisions) != M:
        raise ValueError(f"classify_shares got {len(revisions)} revisions for shares over {M} checkpoints")
    if not 0 <= low < high <= 1:
        raise ValueError(f"class thresholds must satisfy 0 <= low < high <= 1, got low={low}, high={high}")
    suffix = "specific" if M == 2 else "dominant"
    top_value, top_index = shares.max(dim=1)
    present = shares >= low
    labels: list[str] = []
    for i in range(shares.shape[0]):
        if top_value[i] > high:
            labels.append(f"{revisions[int(top_index[i])]}-{suffix}")
        elif bool(present[i].all()):
            labels.append(SHARED_ALL)
        else:
            group = [revisions[m] for m in range(M) if present[i, m]]
            labels.append("+".join(group) + " shared" if len(group) >= 2 else OTHER)
    return labels


def classify_effects(
    effects: torch.Tensor,
    revisions: Sequence[str],
    floor: float,
    high: float = HIGH_SHARE,
    low: float = LOW_SHARE,
) -> list[str]:
    """RelIE classes with an effect floor: ``effects [F, M]`` (signed or not) -> one label per feature.

    A feature whose total ``Σ_m |effects[i, m]|`` is below ``floor`` gets ``"no effect"``: its
    shares would be ratios of noise (0.001 / 0.0015 reads as "dominant" as well as 1 / 1.5
    does). The others get :func:`classify_shares` of their shares.
    """
    effects = _as_float(effects, "effects [F, M]", 2)
    if floor < 0:
        raise ValueError(f"the effect floor must be >= 0, got {floor}")
    labels = classify_shares(relative_shares(effects), revisions, high=high, low=low)
    total = effects.abs().sum(dim=1)
    return [NO_EFFECT if float(total[i]) < floor else label for i, label in enumerate(labels)]


def class_order(labels: Sequence[str], revisions: Sequence[str]) -> list[str]:
    """The distinct labels of `classify_shares` / `classify_effects` in a stable reading order.

    Dominant/specific classes in checkpoint order, then "all shared", then the pairwise
    groups in checkpoint order, then "other", then "no effect".
    """
    present = set(labels)
    order = [lab for rev in revisions for lab in (f"{rev}-specific", f"{rev}-dominant") if lab in present]
    order += [SHARED_ALL] if SHARED_ALL in present else []
    index = {rev: k for k, rev in enumerate(revisions)}
    groups = [lab for lab in present if lab.endswith(" shared") and lab != SHARED_ALL]
    order += sorted(groups, key=lambda lab: [index.get(r, len(index)) for r in lab[: -len(" shared")].split("+")])
    order += [OTHER] if OTHER in present else []
    rest = present - set(order) - {NO_EFFECT}
    return order + sorted(rest) + ([NO_EFFECT] if NO_EFFECT in present else [])


def decoder_cosines(W_dec: torch.Tensor) -> torch.Tensor:
    """Per-feature cosine similarity between checkpoints' decoder directions.

    ``W_dec [F, M, d]`` -> ``[F, M, M]`` with ones on the diagonal of every feature whose
    decoder is non-zero there. A zero decoder vector has no direction: its cosine with
    anything is 0 (not NaN).
    """
    W_dec = _as_float(W_dec, "W_dec [F, M, d]", 3)
    norms = torch.linalg.vector_norm(W_dec, dim=-1, keepdim=True)
    unit = W_dec / torch.where(norms == 0, torch.ones_like(norms), norms)
    return torch.einsum("fmd,fnd->fmn", unit, unit)


def consecutive_cosines(W_dec: torch.Tensor) -> torch.Tensor:
    """Cosine between each checkpoint's decoder direction and the next one's: ``[F, M-1]``.

    Computed directly (not via the full M × M matrix), so it stays cheap for large M.
    Zero vectors give 0.
    """
    W_dec = _as_float(W_dec, "W_dec [F, M, d]", 3)
    norms = torch.linalg.vector_norm(W_dec, dim=-1, keepdim=True)
    unit = W_dec / torch.where(norms == 0, torch.ones_like(norms), norms)
    return (unit[:, :-1] * unit[:, 1:]).sum(-1)


@dataclass(frozen=True)
class Trajectories:
    """Per-feature reading of decoder-norm trajectories ``norms [F, M]`` (checkpoints in order).

    ``onset``/``peak``/``offset`` are checkpoint indices ``[F]`` (-1 for an all-zero
    feature); ``labels`` one of `TRAJECTORY_LABELS` per feature; ``fraction`` the presence
    threshold used (share of each feature's own maximum norm).
    """

    onset: torch.Tensor
    peak: torch.Tensor
    offset: torch.Tensor
    labels: list[str]
    fraction: float


def trajectories(norms: torch.Tensor, fraction: float = 0.5) -> Trajectories:
    """Onset, peak, offset and a label for each feature's norm trajectory ``norms [F, M]``.

    A feature is *present* at checkpoint m when its norm is at least ``fraction`` of its
    own maximum (so it is always present at its peak). onset = first present checkpoint,
    offset = last present checkpoint, peak = argmax (first one on ties). Classes, for any M,
    from the set of present checkpoints (the same rule at every M; no share cut-off):

    - ``persistent``: present at every checkpoint;
    - ``emerging``: not present at the first; present at every checkpoint from onset
      through the last;
    - ``fading``: present at the first and at every checkpoint through offset; not
      present at the last;
    - ``transient``: present on one unbroken span touching neither the first nor the last;
    - ``intermittent``: present on two or more separate spans (any other pattern);
    - ``empty``: zero norm everywhere (onset/peak/offset = -1).
    """
    norms = _as_float(norms, "norms [F, M]", 2)
    if not 0 < fraction <= 1:
        raise ValueError(f"trajectory presence fraction must be in (0, 1], got {fraction}")
    F, M = norms.shape
    peak_value, peak = norms.max(dim=1)
    empty = peak_value <= 0
    present = (norms >= fraction * peak_value[:, None]) & ~empty[:, None]
    idx = torch.arange(M).expand(F, M)
    onset = torch.where(present, idx, torch.full_like(idx, M)).min(dim=1).values
    offset = torch.where(present, idx, torch.full_like(idx, -1)).max(dim=1).values
    minus = torch.full_like(onset, -1)
    onset = torch.where(empty, minus, onset)
    peak = torch.where(empty, minus, peak)
    # one unbroken span: every checkpoint from onset to offset is present
    unbroken = present.sum(dim=1) == offset - onset + 1
    labels = []
    for i in range(F):
        if empty[i]:
            labels.append(EMPTY)
        elif not unbroken[i]:
            labels.append(INTERMITTENT)
        elif onset[i] == 0:
            labels.append(PERSISTENT if offset[i] == M - 1 else FADING)
        else:
            labels.append(EMERGING if offset[i] == M - 1 else TRANSIENT)
    return Trajectories(onset=onset, peak=peak, offset=offset, labels=labels, fraction=fraction)


def emergence_counts(onset: torch.Tensor, n_checkpoints: int) -> list[int]:
    """Number of features whose onset is each checkpoint: ``[M]``.

    Entry 0 counts features present from the first checkpoint; entry m ≥ 1 counts
    features that emerged in the interval (checkpoint m-1, checkpoint m]. Empty features
    (onset -1) are not counted.
    """
    onset = torch.as_tensor(onset)
    kept = onset[onset >= 0]
    if kept.numel() and int(kept.max()) >= n_checkpoints:
        raise ValueError(f"onset index {int(kept.max())} is outside {n_checkpoints} checkpoints")
    return torch.bincount(kept.long(), minlength=n_checkpoints).tolist()
