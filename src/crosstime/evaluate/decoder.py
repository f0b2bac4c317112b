"""The evaluate stage's decoder-space readings (normalised-space decoder, as in the paper).

:func:`read_features` reads every feature's decoder (F rows): norms ``‖W_dec[i, m]‖``
(:meth:`Crosscoder.decoder_norms`), presence relative to the feature's own peak, RelDec
shares, decoder-norm trajectories (onset / peak / offset), pairwise RelDec (few checkpoints)
and the cosine between consecutive checkpoints' directions. :func:`decoder_summary` turns
them into the ``decoder`` section of ``evaluation.json``. The math is :mod:`crosstime.shares`.

**Presence** (the classes at any M): feature i is *present* at checkpoint m when
``‖W_dec[i, m]‖ >= presence × max_k ‖W_dec[i, k]‖`` (default 0.5, the rule of the emergence
onsets), *absent* when below ``absent × max_k ‖W_dec[i, k]‖`` (default 0.1) and *weak* in
between (:func:`presence_levels`). Its class comes from the set of checkpoints where it is
present (:func:`crosstime.shares.trajectories`): persistent (all), emerging (not the first;
from onset through the last), fading (the first through offset; not the last), transient (one
interior span), intermittent (several spans), empty (zero decoder).

**RelDec** shares ``‖W_dec[i, m]‖ / Σ_k ‖W_dec[i, k]‖`` stay as numbers at every M. Their
classes (:func:`crosstime.shares.classify_shares`: "<rev>-dominant", "a+b shared", with cut-offs
0.7 / 0.3) are the first paper's view and are written for M <= 3 only: their cut-offs were set
for two or three checkpoints, and at M = 7 a feature present everywhere has shares of 1/7 = 0.14,
below the 0.3 that calls a checkpoint shared.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crosstime.artifacts import (
    EVALUATION_FEATURES,
    ClassThresholds,
    Decoder,
    Dimensionality,
    Emergence,
    Presence,
    ReldecHistogram,
    pairs,
)
from crosstime.crosscoder import Crosscoder
from crosstime.evaluate.geometry import (
    DIMENSIONALITY_BLOCK,
    Spectrum,
    cos_final,
    dimensionality_by_checkpoint,
    rotation,
)
from crosstime.evaluate.scaling import ScalingReading
from crosstime.evaluate.types import TypeReading, empty_type_cells
from crosstime.shares import (
    Trajectories,
    class_order,
    classify_shares,
    decoder_cosines,
    emergence_counts,
    pairwise_shares,
    relative_shares,
    trajectories,
)

MAX_COSINE_CHECKPOINTS = 64  # the [F, M, M] cosine tensor grows as M²: not computed beyond this
RELDEC_PAIR = next(c for c in EVALUATION_FEATURES.columns if c.kind == "pair")  # written up to its max_checkpoints
MAX_CLASS_CHECKPOINTS = 3  # RelDec share classes: the first paper's view (its cut-offs are for M = 2-3)
PRESENT_FRACTION = 0.5  # present: decoder norm >= this × the feature's largest (the emergence onsets' rule)
ABSENT_FRACTION = 0.1  # absent: below this × the largest; weak in between
ABSENT, WEAK, PRESENT = 0, 1, 2  # presence levels
LEVEL_NAMES = ("absent", "weak", "present")
PRESENCE_RULE = ("present at m: decoder norm >= presence_fraction × the feature's largest norm over checkpoints; "
                 "absent: < absent_fraction × it; weak in between. Classes (trajectory) from the present checkpoints: "
                 "persistent = present at every checkpoint; emerging = not present at the first, present at every "
                 "checkpoint from its onset through the last; fading = present at the first and every checkpoint "
                 "through its offset, not present at the last; transient = present on one unbroken span touching "
                 "neither end; intermittent = present on several separate spans; empty = zero decoder")


def presence_levels(norms: torch.Tensor, present: float = PRESENT_FRACTION,
                    absent: float = ABSENT_FRACTION) -> torch.Tensor:
    """``norms [F, M]`` -> ``[F, M]`` int8: :data:`PRESENT` where ``norm >= present × the row's max``,
    :data:`ABSENT` where ``norm < absent × max``, :data:`WEAK` in between; an all-zero row is absent everywhere."""
    if not 0 <= absent <= present <= 1:
        raise ValueError(f"presence fractions must satisfy 0 <= absent <= present <= 1, got {absent}, {present}")
    norms = norms.double()
    peak = norms.max(dim=1, keepdim=True).values
    levels = torch.full(norms.shape, WEAK, dtype=torch.int8)
    levels[norms >= present * peak] = PRESENT
    levels[(norms < absent * peak) | (peak <= 0)] = ABSENT
    return levels


@dataclass
class FeatureReading:
    """Per-feature decoder readings of a crosscoder over ``revisions`` (F features, M checkpoints).

    ``W_dec [F, M, d]`` normalised space; ``norms, shares [F, M]``; ``levels [F, M]`` int8 presence
    (:func:`presence_levels`) at ``presence`` / ``absent``; ``labels`` the RelDec share classes (None for
    M > :data:`MAX_CLASS_CHECKPOINTS`); ``alive [F]`` bool and ``frequency [F]`` from the dead-latent window; ``traj`` the trajectories;
    ``cosines [F, M, M]`` (None beyond :data:`MAX_COSINE_CHECKPOINTS`); ``pairwise [F, M, M]``
    (None where features.csv has no pair columns); ``dimensionality [F, M]`` float64 (0 for features
    not alive) and ``dimensionality_total [M]`` (Σ D_i / d) over the live features, computed in blocks of
    ``dimensionality_block`` rows; ``cos_final [F, M]`` float64, each direction's cosine with the last
    checkpoint's (NaN where a decoder is zero) (:mod:`crosstime.evaluate.geometry`).
    """

    revisions: list[str]
    W_dec: torch.Tensor
    norms: torch.Tensor
    shares: torch.Tensor
    levels: torch.Tensor
    presence: float
    absent: float
    labels: list[str] | None
    alive: torch.Tensor
    frequency: torch.Tensor
    traj: Trajectories
    cosines: torch.Tensor | None
    pairwise: torch.Tensor | None
    dimensionality: torch.Tensor
    dimensionality_total: torch.Tensor
    dimensionality_block: int
    cos_final: torch.Tensor

    @property
    def consecutive_cosines(self) -> torch.Tensor | None:
        """``[F, M-1]``: cosine between checkpoints m and m+1 (None without cosines or with M = 1)."""
        M = len(self.revisions)
        if self.cosines is None or M < 2:
            return None
        return torch.stack([self.cosines[:, k, k + 1] for k in range(M - 1)], 1)


@torch.no_grad()
def read_features(model: Crosscoder, frequency: torch.Tensor, *, presence: float, absent: float, high: float,
                  low: float) -> FeatureReading:
    """Read the decoder of ``model`` (normalised space; pass it on the CPU for device-independent
    numbers); ``frequency [F]``: each feature's firing share over the dead-latent window."""
    if model.is_folded:  # its W_dec is raw-space: cosines would survive, rotation's presence test would not
        raise ValueError("read_features needs the crosscoder in normalised space (as load_for_store returns it), "
                         "not a folded copy")
    revisions = list(model.revisions)
    M = len(revisions)
    W_dec = model.W_dec.detach().float().cpu()
    norms = model.decoder_norms().detach().float().cpu()
    shares = relative_shares(norms)
    alive = (frequency > 0).cpu()
    dimensionality, dimensionality_total = dimensionality_by_checkpoint(W_dec, alive, DIMENSIONALITY_BLOCK)
    return FeatureReading(
        revisions=revisions,
        W_dec=W_dec,
        norms=norms,
        shares=shares,
        levels=presence_levels(norms, presence, absent),
        presence=presence,
        absent=absent,
        labels=classify_shares(shares, revisions, high=high, low=low) if M <= MAX_CLASS_CHECKPOINTS else None,
        alive=alive,
        frequency=frequency.cpu(),
        traj=trajectories(norms, fraction=presence),
        cosines=decoder_cosines(W_dec) if M <= MAX_COSINE_CHECKPOINTS else None,
        pairwise=pairwise_shares(norms) if RELDEC_PAIR.width(M) else None,
        dimensionality=dimensionality,
        dimensionality_total=dimensionality_total,
        dimensionality_block=DIMENSIONALITY_BLOCK,
        cos_final=cos_final(W_dec),
    )


def decoder_summary(reading: FeatureReading, tokens: list[int | None], spectrum: Spectrum | None, *, high: float,
                    low: float, turn_bound: float) -> Decoder:
    """The ``decoder`` section of ``evaluation.json`` (its latent scaling and typed emergence are the
    evaluate stage's to add); ``tokens`` the tokens seen per checkpoint; ``spectrum`` the activations'
    effective rank beside dimensionality (None: not measured)."""
    revisions, alive = reading.revisions, reading.alive
    M = len(revisions)
    out = Decoder(
        reldec_mean=reading.shares.mean(0).tolist(),
        reldec_mean_live=reading.shares[alive].mean(0).tolist() if alive.any() else None,
        **_class_counts(reading),
        class_thresholds=ClassThresholds(high=high, low=low),
        **_trajectory_counts(reading),
        presence_fraction=reading.presence,
        presence=presence_counts(reading),
        emergence=Emergence(
            revisions=revisions, tokens_seen=tokens, counts_live=emergence_counts(reading.traj.onset[alive], M),
            counts=emergence_counts(reading.traj.onset, M),
            meaning="entry 0: present at the first checkpoint; entry m: onset in (checkpoint m-1, checkpoint m]"),
        rotation=rotation(reading.W_dec, reading.cos_final, reading.levels == PRESENT, alive, revisions,
                          presence=reading.presence, bound=turn_bound),
        dimensionality=Dimensionality(total=reading.dimensionality_total.tolist(), live_features=int(alive.sum()),
                                      d=int(reading.W_dec.shape[-1]), block=reading.dimensionality_block,
                                      **(spectrum.fields() if spectrum is not None else {})),
    )
    if reading.cosines is not None:  # absent beyond MAX_COSINE_CHECKPOINTS
        live = reading.cosines[alive] if alive.any() else reading.cosines
        out.mean_cosine_live = live.mean(0).tolist()  # [M, M]: mean over live features
    if M == 2:
        edges = np.linspace(0, 1, 21)
        out.reldec_histogram_live = ReldecHistogram(
            edges=edges.tolist(), counts=np.histogram(reading.shares[alive, 1].numpy(), bins=edges)[0].tolist())
    return out


def presence_counts(reading: FeatureReading) -> Presence:
    """Live features present / weak / absent at each checkpoint."""
    live = reading.levels[reading.alive]
    counts = {name: (live == level).sum(0).tolist() for level, name in enumerate(LEVEL_NAMES)}
    return Presence(present_fraction=reading.presence, absent_fraction=reading.absent, **counts, rule=PRESENCE_RULE)


def _class_counts(reading: FeatureReading) -> dict[str, dict[str, int] | None]:
    """RelDec class counts over all features and over the live ones, in :func:`class_order` (None for
    M > :data:`MAX_CLASS_CHECKPOINTS`)."""
    if reading.labels is None:
        return {"classes": None, "classes_live": None}
    order = class_order(reading.labels, reading.revisions)
    counts_all = Counter(reading.labels)
    counts_alive = Counter(lab for lab, a in zip(reading.labels, reading.alive.tolist()) if a)
    return {"classes": {lab: counts_all[lab] for lab in order},
            "classes_live": {lab: counts_alive[lab] for lab in order}}


def _trajectory_counts(reading: FeatureReading) -> dict[str, dict[str, int]]:
    live = [lab for lab, a in zip(reading.traj.labels, reading.alive.tolist()) if a]
    return {"trajectory_labels_live": dict(Counter(live)), "trajectory_labels": dict(Counter(reading.traj.labels))}


def feature_rows(reading: FeatureReading, scaling: ScalingReading,
                 types: TypeReading | None = None) -> list[dict[str, Any]]:
    """One row of ``evaluation/features.csv`` (:data:`~crosstime.artifacts.EVALUATION_FEATURES`) per feature;
    ``scaling`` the latent scaling of the same features, ``types`` their typed-emergence reading (None:
    not scored, the type cells empty)."""
    M = len(reading.revisions)
    norms, shares = reading.norms.tolist(), reading.shares.tolist()
    freq, alive = reading.frequency.tolist(), reading.alive.tolist()
    traj, levels = reading.traj, reading.levels.tolist()
    onset, peak, offset = traj.onset.tolist(), traj.peak.tolist(), traj.offset.tolist()
    pw, pair_index = reading.pairwise, pairs(M)
    cc = reading.consecutive_cosines
    cc = cc.tolist() if cc is not None else None
    dim = reading.dimensionality.tolist()
    cos_last = [[None if math.isnan(c) else c for c in row] for row in reading.cos_final.tolist()]
    return [{
        "feature": i,
        "frequency": freq[i],
        "alive": bool(alive[i]),
        "reldec_class": reading.labels[i] if reading.labels is not None else None,
        "trajectory": traj.labels[i],
        "presence": [LEVEL_NAMES[v] for v in levels[i]],
        "onset": onset[i],
        "peak": peak[i],
        "offset": offset[i],
        "max_norm": max(norms[i]),
        "reldec": shares[i],
        "norm": norms[i],
        "reldec_pair": [float(pw[i, a, b]) for a, b in pair_index] if pw is not None else None,
        "cos": cc[i] if cc is not None else None,
        "dimensionality": dim[i] if alive[i] else None,  # computed over the live features only
        "cos_final": cos_last[i],
        **scaling.feature_cells(i),
        **(types.feature_cells(i) if types is not None else empty_type_cells()),
    } for i in range(len(norms))]
