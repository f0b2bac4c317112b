"""Typed emergence: a rule-based type per crosscoder feature and when each type appears.

No language model is involved: each feature is scored against properties of the tokens it
fires on, over the held-out rows of the reconstruction metrics (the encode pass).

Properties (group labels per row; -1 = the row is not labelled for that property and is left
out of its score):

- ``current_token``: the token id at the row's position (the statistical phase: a feature that
  tracks the token itself);
- ``previous_token``: the token id at position − 1;
- ``induction`` (0/1): the last ``min_match`` tokens ending at the position occurred earlier in
  the same context (so copying what followed the earlier occurrence predicts the next token).
  n-grams holding the context-start token (BOS, which also separates documents: see
  :mod:`crosstime.store.corpus`) are never matched, or every ``. <bos> the`` would count;
  positions before the ``min_match``-th are 0;
- the labels of the series' own token labeller, where its family has one
  (:meth:`crosstime.series.CheckpointSeries.labeller`, given to :class:`Labeler`): on the toy world
  the grammar's labels from a parser of each complete line (:mod:`crosstime.toy.labels`),
  ``subject_number`` (none / singular / plural), ``attractor`` (0/1) and ``subject_end`` (0/1); rows
  outside complete grammar lines are unlabelled. Each needs a ``score_<property>`` column in
  features.csv (:data:`ALL_PROPERTIES`, read from :data:`crosstime.artifacts.EVALUATION_FEATURES`).

Score: the correlation ratio η² of feature i and property P over the rows labelled for P, the
share of the variance of f_i explained by P's groups,

    η²[i, P] = (Σ_g S_g²/N_g − S²/N) / (Σ f² − S²/N),    S_g = Σ_{rows in g} f_i,  S = Σ_g S_g

(0 ≤ η² ≤ 1; 1 when f_i is constant within every group). Accumulated streaming in float64
(:class:`TypeStats`). The group sums S_g are kept sparse, over the nonzero (group, feature)
pairs only, so a token-id property never allocates ``[V, F]``: memory is 16 bytes per distinct
(group, feature) pair that fired, plus as many pending pairs of the batches not merged yet (at
most the number of nonzeros seen, ≈ L0 × rows: measured 1.39M pairs per token property for 100k
rows at L0 30, F 16,384, V 50k, i.e. ≈ 22 MB each, ≤ 45 MB with pending) plus the group counts
(``[V]`` int64, 0.4 MB for 50k) and ``[F]`` sums per property.

A token-id property has as many groups as the vocabulary, so η² is biased upward for a feature
that fires on few rows (a feature firing once on a token seen once scores 1); judge types of
rarely firing features with that in mind (``beta_tokens`` in features.csv counts its rows).

Flag-like properties (:attr:`Labeler.flags`: induction and the labeller's labels, whose group 0
means "not this") are scored by *specificity* instead, max over groups g ≥ 1 of
(S_g / S − N_g / N) / (1 − N_g / N): the share of the feature's activation mass inside the label,
above the label's share of rows (0: no more than chance, 1: all of it). η² would call a feature that
fires only inside a label, on part of it, weak (≈ 0.2 for a feature covering a third of a label that
holds a third of the rows), although "fires on" is what the type means.

Type (:func:`assign_types`, :class:`TypeRules`): ``other`` when no score reaches ``threshold``; else the
first property, in :data:`GENERIC_PROPERTIES` then the labeller's order (simplest explanation first),
whose score is within ``margin`` of the best one; ``unscored`` for a feature that fired on fewer than
``min_rows`` held-out rows. A label of the series' labeller counts only where its score rests on the
labelled rows (a minimum of labelled firing rows, of activation mass on labelled rows, of distinct
tokens inside the label) and beats the simpler token properties scored on those same rows: the
labels cover only part of the rows (complete grammar lines: 38.5% of the demo's), and a single-noun
or copy-marker detector scores high on a grammar label by what it fires on, not by the grammar.

Typed emergence (:func:`typed_emergence`): per type, the number of features, the onset counts per
checkpoint (features.csv ``onset``: the first checkpoint where the decoder norm reaches
``presence`` × its max) and the median onset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crosstime.artifacts import EVALUATION_FEATURES, TypedEmergence
from crosstime.evaluate.plots import PALETTE, log_token_axis, plt, save_figure, token_x
from crosstime.series import TokenLabeller

GENERIC_PROPERTIES = ("current_token", "previous_token", "induction")
# The generic properties whose group 0 means "not this" (a flag): scored by specificity, not η² (see the
# module docstring), as every label of a series' labeller is.
GENERIC_FLAGS = ("induction",)
# The token-id properties, the simpler explanations a label must beat on its own rows (assign_types).
TOKEN_PROPERTIES = ("current_token", "previous_token")
# Every property features.csv has a score_<property> column for, in column order: the generic ones, then
# the labels of the series labellers (the toy grammar's). A labeller's label without one is refused.
ALL_PROPERTIES = tuple(c.name.removeprefix("score_") for c in EVALUATION_FEATURES.columns
                       if c.name.startswith("score_"))
UNLABELLED = -1  # the group of a row left out of a property's score
OTHER, UNSCORED = "other", "unscored"
MERGE_PAIRS = 1 << 20  # pending (group, feature) pairs held before the first merge


def type_names(properties: Sequence[str]) -> list[str]:
    """The types in their fixed order: the properties, then other, then unscored."""
    return [*properties, OTHER, UNSCORED]


# -- row labels ----------------------------------------------------------------------------------

def induction_flags(tokens: np.ndarray, min_match: int, boundary: int | None) -> np.ndarray:
    """``[n, T]`` bool: the ``min_match`` tokens ending at each position occurred earlier in the same
    context (n-grams holding ``boundary`` excluded). Hashing: one ``np.unique`` over the rows
    (context, n-gram), whose first occurrence is compared with each occurrence's position."""
    n, T = tokens.shape
    flags = np.zeros((n, T), dtype=bool)
    if T < min_match or n == 0:
        return flags
    windows = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int64), min_match, axis=1)  # [n, W, m]
    W = windows.shape[1]
    keys = np.concatenate([np.repeat(np.arange(n), W)[:, None], windows.reshape(n * W, min_match)], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    seen_before = first[inverse.ravel()] < np.arange(n * W)  # the same (context, n-gram) at an earlier row
    if boundary is not None:
        seen_before &= ~(windows == boundary).any(axis=-1).ravel()
    flags[:, min_match - 1:] = seen_before.reshape(n, W)
    return flags


@dataclass(frozen=True)
class Labeler:
    """Row labels of the scored :attr:`properties` for whole contexts of a store: the generic ones, then
    the labels of the series' own ``labeller`` (None: the generic ones only).

    ``first_position``: the store's first kept position (rows are positions first..T-1);
    ``boundary``: the context-start/separator token id (None: none). A labeller whose label has no
    ``score_<property>`` column in features.csv, or is named like a generic property, is refused."""

    first_position: int
    min_match: int = 3
    boundary: int | None = None
    labeller: TokenLabeller | None = None

    def __post_init__(self):
        own = self.own_properties
        columns = ", ".join(f"score_{p}" for p in ALL_PROPERTIES)
        uncovered = [p for p in own if p not in ALL_PROPERTIES]
        if uncovered:
            raise ValueError(f"the series labeller {type(self.labeller).__name__} labels {uncovered}, which "
                             f"evaluation/features.csv has no score column for (it has {columns}); add a "
                             "score_<property> column to crosstime.artifacts.EVALUATION_FEATURES or drop the label")
        clashing = [p for p in own if p in GENERIC_PROPERTIES]
        if clashing or len(set(own)) != len(own):
            raise ValueError(f"the series labeller {type(self.labeller).__name__} labels {list(own)}: each label "
                             f"once, none named like a generic property ({', '.join(GENERIC_PROPERTIES)})")

    @property
    def own_properties(self) -> tuple[str, ...]:
        """The labeller's labels (none without a labeller)."""
        return () if self.labeller is None else tuple(self.labeller.properties)

    @property
    def properties(self) -> tuple[str, ...]:
        """The scored properties: the generic ones, then the labeller's."""
        return GENERIC_PROPERTIES + self.own_properties

    @property
    def flags(self) -> tuple[str, ...]:
        """The flag-like properties (scored by specificity): induction and the labeller's labels."""
        return GENERIC_FLAGS + self.own_properties

    def labels(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """``tokens`` int [n, T] -> {property: int64 [n · (T − first_position)]}, rows in store order."""
        tokens = np.asarray(tokens, dtype=np.int64)
        first = self.first_position
        previous = np.concatenate([np.full((len(tokens), 1), UNLABELLED), tokens[:, :-1]], axis=1)
        out = {"current_token": tokens[:, first:],
               "previous_token": previous[:, first:],  # position 0 has none: unlabelled
               "induction": induction_flags(tokens, self.min_match, self.boundary)[:, first:].astype(np.int64)}
        if self.labeller is not None:
            per_context = [self.labeller.label(row) for row in tokens]
            for p in self.own_properties:
                out[p] = np.stack([c[p] for c in per_context])[:, first:].astype(np.int64)
        return {p: out[p].reshape(-1) for p in self.properties}


# -- streaming sums ------------------------------------------------------------------------------

class _PropertySums:
    """Sums of one property (float64, CPU): N, S [F], Σf² [F], group counts, sparse S_g."""

    def __init__(self, F: int):
        self.F = F
        self.n = 0
        self.total = torch.zeros(F, dtype=torch.float64)
        self.squares = torch.zeros(F, dtype=torch.float64)
        self.group_n = torch.zeros(0, dtype=torch.int64)  # rows per group id [max group + 1]
        self.keys = torch.zeros(0, dtype=torch.int64)  # group · F + feature, unique (merged so far)
        self.sums = torch.zeros(0, dtype=torch.float64)
        # batches not merged yet: merging costs a sort of everything kept, so it waits until the
        # pending pairs outnumber the merged ones (amortised O(n log n); memory at most doubles)
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.n_pending = 0

    def update(self, rows: torch.Tensor, feats: torch.Tensor, vals: torch.Tensor, groups: torch.Tensor) -> None:
        """One batch as its nonzeros ``f[rows, feats] = vals`` and the batch's ``groups [B]`` (-1: skip)."""
        labelled = groups >= 0
        self.n += int(labelled.sum())
        counts = torch.bincount(groups[labelled])
        if len(counts) > len(self.group_n):
            self.group_n = torch.cat([self.group_n, torch.zeros(len(counts) - len(self.group_n), dtype=torch.int64)])
        self.group_n[:len(counts)] += counts
        if not bool(labelled.all()):  # (boolean masks are slow on the CPU: select by index, and only when needed)
            keep = labelled.index_select(0, rows).nonzero().squeeze(1)
            rows, feats, vals = rows.index_select(0, keep), feats.index_select(0, keep), vals.index_select(0, keep)
        self.total.index_add_(0, feats, vals)
        self.squares.index_add_(0, feats, vals * vals)
        self.pending.append((groups[rows] * self.F + feats, vals))
        self.n_pending += len(vals)
        if self.n_pending > max(len(self.keys), MERGE_PAIRS):
            self.merge()

    def merge(self) -> None:
        """Fold the pending pairs into the unique (key, sum) arrays."""
        if not self.pending:
            return
        keys = torch.cat([self.keys, *(k for k, _ in self.pending)])
        vals = torch.cat([self.sums, *(v for _, v in self.pending)])
        self.keys, inverse = torch.unique(keys, return_inverse=True)
        self.sums = torch.zeros(len(self.keys), dtype=torch.float64).index_add_(0, inverse, vals)
        self.pending, self.n_pending = [], 0

    def specificity(self) -> torch.Tensor:
        """[F]: how exclusively f_i's activation mass falls in one labelled group g ≥ 1, above chance:
        max over g ≥ 1 of (S_g / S − N_g / N) / (1 − N_g / N) (0: no more than the group's share of rows;
        1: all of it there); NaN where f never fired on the labelled rows."""
        if self.n == 0:
            return torch.full((self.F,), float("nan"), dtype=torch.float64)
        self.merge()
        groups, feats = self.keys // self.F, self.keys % self.F
        best = torch.zeros(self.F, dtype=torch.float64)
        for g in range(1, len(self.group_n)):
            base = float(self.group_n[g]) / self.n
            if base >= 1:
                continue
            in_g = groups == g
            mass = torch.zeros(self.F, dtype=torch.float64).index_add_(0, feats[in_g], self.sums[in_g])
            share = mass / torch.where(self.total > 0, self.total, torch.ones_like(self.total))
            best = torch.maximum(best, ((share - base) / (1 - base)).clamp(0, 1))
        return torch.where(self.total > 0, best, torch.full_like(best, float("nan")))

    def eta_squared(self) -> torch.Tensor:
        """η² [F]; NaN where f has no variance over the labelled rows (never fired there)."""
        if self.n == 0:
            return torch.full((self.F,), float("nan"), dtype=torch.float64)
        self.merge()
        n_g = self.group_n[self.keys // self.F].double()
        between = torch.zeros(self.F, dtype=torch.float64).index_add_(0, self.keys % self.F, self.sums ** 2 / n_g)
        mean_part = self.total ** 2 / self.n
        total_ss = self.squares - mean_part
        fired = total_ss > 1e-12 * self.squares  # float64 rounding of a constant f leaves ~1e-16 · Σf²
        eta = ((between - mean_part) / torch.where(fired, total_ss, torch.ones_like(total_ss))).clamp(0, 1)
        return torch.where(fired, eta, torch.full_like(eta, float("nan")))


class TypeStats:
    """Streaming η² sums of every property over batches: ``update(f [B, F], labels {property: [B]})``
    (labels from :meth:`Labeler.labels`, -1 = unlabelled); :meth:`scores` gives ``[F, P]``, the
    ``flags`` (some of the properties: :attr:`Labeler.flags`) scored by specificity.
    Memory: see the module docstring (sparse over fired (group, feature) pairs)."""

    def __init__(self, properties: Sequence[str], n_features: int, flags: Sequence[str]):
        self.properties = tuple(properties)
        self.flags = tuple(flags)
        if not set(self.flags) <= set(self.properties):
            raise ValueError(f"flags {list(self.flags)} are not all among the properties {list(self.properties)}")
        self.labels = tuple(p for p in self.flags if p not in GENERIC_FLAGS)  # the series labeller's labels
        if self.labels and not set(TOKEN_PROPERTIES) <= set(self.properties):
            raise ValueError(f"the labels {list(self.labels)} are typed against the simpler token properties "
                             f"{list(TOKEN_PROPERTIES)} on the same rows: score those too")
        self.F = n_features
        self.fired = torch.zeros(n_features, dtype=torch.int64)
        self.sums = {p: _PropertySums(n_features) for p in self.properties}
        # What a label's type rests on (see assign_types): the simpler token properties scored on the rows the
        # labeller labels, the current tokens inside each label, and the activation mass on labelled rows.
        self.on_labelled = {p: _PropertySums(n_features) for p in TOKEN_PROPERTIES} if self.labels else {}
        self.inside = {p: _PropertySums(n_features) for p in self.labels}
        self.labelled_fired = torch.zeros(n_features, dtype=torch.int64)
        self.labelled_mass = torch.zeros(n_features, dtype=torch.float64)
        self.mass = torch.zeros(n_features, dtype=torch.float64)

    def update(self, f: torch.Tensor, labels: dict[str, np.ndarray]) -> None:
        """Add a batch ``f [B, F]`` (any device; only its nonzeros are moved to the CPU)."""
        rows, feats = f.nonzero(as_tuple=True)
        vals = f[rows, feats].to("cpu", torch.float64)
        rows, feats = rows.cpu(), feats.cpu()
        self.fired += torch.bincount(feats, minlength=self.F)
        self.mass.index_add_(0, feats, vals)
        groups = {p: torch.as_tensor(labels[p], dtype=torch.int64) for p in self.properties}
        for p, g in groups.items():
            if len(g) != len(f):
                raise ValueError(f"{p}: {len(g)} labels for {len(f)} rows")
            self.sums[p].update(rows, feats, vals, g)
        if self.labels:
            self._update_labelled(rows, feats, vals, groups)

    def _update_labelled(self, rows: torch.Tensor, feats: torch.Tensor, vals: torch.Tensor,
                         groups: dict[str, torch.Tensor]) -> None:
        """The labelled-row sums of one batch (rows labelled for any of the labeller's labels)."""
        labelled = torch.stack([groups[p] >= 0 for p in self.labels]).any(dim=0)  # [B]
        on_row = labelled.index_select(0, rows)
        self.labelled_fired.index_add_(0, feats, on_row.long())
        self.labelled_mass.index_add_(0, feats, vals * on_row)
        unlabelled = torch.full_like(groups["current_token"], UNLABELLED)
        for p in TOKEN_PROPERTIES:
            self.on_labelled[p].update(rows, feats, vals, torch.where(labelled, groups[p], unlabelled))
        for p in self.labels:
            self.inside[p].update(rows, feats, vals, torch.where(groups[p] >= 1, groups["current_token"], unlabelled))

    def labelled_share(self) -> torch.Tensor:
        """``[F]``: the share of each feature's activation mass on labelled rows (NaN: never fired)."""
        return torch.where(self.mass > 0, self.labelled_mass / self.mass.clamp_min(1e-300),
                           torch.full_like(self.mass, float("nan")))

    def label_tokens(self, label: str) -> torch.Tensor:
        """``[F]`` int: distinct current tokens among the rows inside ``label`` (group ≥ 1) where the feature fired."""
        sums = self.inside[label]
        sums.merge()
        return torch.bincount(sums.keys % self.F, minlength=self.F)

    def on_labelled_scores(self) -> torch.Tensor:
        """``[F, 2]``: η² of the current and the previous token over the labelled rows only (NaN: no variance)."""
        return torch.stack([self.on_labelled[p].eta_squared() for p in TOKEN_PROPERTIES], dim=1)

    def scores(self) -> torch.Tensor:
        """``[F, P]`` float64 (NaN where unscored): η² for the token-id properties, specificity for the
        flag-like ones (``flags``)."""
        if not self.properties:
            return torch.zeros(self.F, 0, dtype=torch.float64)
        return torch.stack([self.sums[p].specificity() if p in self.flags else self.sums[p].eta_squared()
                            for p in self.properties], dim=1)


# -- types and typed emergence -------------------------------------------------------------------

@dataclass
class TypeReading:
    """Per feature: ``types`` (a property, other or unscored), ``type_score`` (the type's score, the best
    eligible score for other, NaN when unscored), ``scores [F, P]`` over ``properties``, and what a label's
    type rests on (NaN / -1 without a labeller): ``labelled_share [F]`` (activation mass on labelled rows),
    ``labelled_rows [F]`` (labelled rows it fired on), ``label_tokens [F]`` (distinct current tokens inside
    its best-scoring label)."""

    properties: tuple[str, ...]
    threshold: float
    types: list[str]
    type_score: np.ndarray
    scores: np.ndarray
    labelled_share: np.ndarray
    labelled_rows: np.ndarray
    label_tokens: np.ndarray

    def feature_cells(self, i: int) -> dict[str, Any]:
        """features.csv cells of feature i: feature_type, type_score, score_<property>, the label evidence
        (None where not scored)."""
        def cell(v: float) -> float | None:
            return None if np.isnan(v) else float(v)

        def count(v: int) -> int | None:
            return None if v < 0 else int(v)

        by_property = dict(zip(self.properties, self.scores[i].tolist()))
        return {"feature_type": self.types[i], "type_score": cell(float(self.type_score[i])),
                **{f"score_{p}": cell(by_property[p]) if p in by_property else None for p in ALL_PROPERTIES},
                "labelled_share": cell(float(self.labelled_share[i])),
                "labelled_rows": count(int(self.labelled_rows[i])), "label_tokens": count(int(self.label_tokens[i]))}


def empty_type_cells() -> dict[str, Any]:
    """features.csv type cells of a feature that was not scored (all empty)."""
    return {"feature_type": None, "type_score": None, **{f"score_{p}": None for p in ALL_PROPERTIES},
            "labelled_share": None, "labelled_rows": None, "label_tokens": None}


@dataclass(frozen=True)
class TypeRules:
    """The rules of :func:`assign_types`: ``threshold`` a score must reach; ``margin`` within which the
    simpler property wins; ``min_rows`` firing rows to be scored at all (and labelled firing rows for a
    label's type); ``min_labelled_share`` of the activation mass on labelled rows and ``min_label_tokens``
    distinct current tokens inside the label for a label's type."""

    threshold: float
    min_rows: int = 1
    margin: float = 0.0
    min_labelled_share: float = 0.5
    min_label_tokens: int = 5


def _label_evidence(stats: TypeStats) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``labelled_share [F]``, ``labelled_rows [F]``, ``label_tokens [F, L]`` and the simpler properties'
    best score on the labelled rows ``[F]`` (NaN / -1 without labels)."""
    F = stats.F
    if not stats.labels:
        return np.full(F, np.nan), np.full(F, -1), np.full((F, 0), -1), np.full(F, np.nan)
    tokens = np.stack([stats.label_tokens(p).numpy() for p in stats.labels], axis=1)
    simpler = np.nan_to_num(stats.on_labelled_scores().numpy(), nan=-1.0).max(axis=1)
    return stats.labelled_share().numpy(), stats.labelled_fired.numpy(), tokens, simpler


def assign_types(stats: TypeStats, rules: TypeRules) -> TypeReading:
    """Type per feature: ``unscored`` when it fired on fewer than ``rules.min_rows`` held-out rows (a score
    from a handful of rows is mostly chance: one firing on a rare token scores 1); else the FIRST property,
    in ``stats.properties`` order (simplest explanation first: current token, previous token, induction,
    then the series labeller's), whose score is within ``margin`` of the best eligible score and reaches
    ``threshold``; ``other`` when none does. The margin keeps a feature the current token all but explains
    (a plural-noun feature: η² 0.99) a token feature although a correlated label fits it perfectly.

    A label (the series labeller's) is eligible only when its score rests on the labelled rows: the feature
    fired on at least ``min_rows`` labelled rows, puts at least ``min_labelled_share`` of its activation mass
    on them (a feature firing mostly outside grammar lines is not described by a grammar label), fires inside
    the label on at least ``min_label_tokens`` distinct tokens (a single-noun detector is not a number
    feature), and its score beats the simpler properties measured on the same rows (η² of the current and
    previous token over the labelled rows) by more than ``margin``."""
    scores = stats.scores().numpy()
    share, labelled_rows, tokens, simpler = _label_evidence(stats)
    label_index = [stats.properties.index(p) for p in stats.labels]
    fired = stats.fired.numpy() >= max(1, rules.min_rows)
    types, best = [], np.full(stats.F, np.nan)
    best_label = np.full(stats.F, -1)
    for i in range(stats.F):
        row = np.nan_to_num(scores[i], nan=-1.0)
        if label_index:
            best_label[i] = tokens[i, int(np.argmax(row[label_index]))]
        if not fired[i] or len(row) == 0 or row.max() < 0:
            types.append(UNSCORED)
            continue
        for k, p in zip(label_index, stats.labels):
            rests = (labelled_rows[i] >= rules.min_rows and share[i] >= rules.min_labelled_share
                     and tokens[i, stats.labels.index(p)] >= rules.min_label_tokens
                     and row[k] > simpler[i] + rules.margin)
            row[k] = row[k] if rests else -1.0
        top = row.max()
        if top < rules.threshold:
            best[i] = top if top >= 0 else np.nan
            types.append(OTHER)
            continue
        k = int(np.flatnonzero((row >= top - rules.margin) & (row >= rules.threshold))[0])
        best[i] = row[k]
        types.append(stats.properties[k])
    return TypeReading(stats.properties, rules.threshold, types, best, scores, share, labelled_rows, best_label)


def typed_emergence(reading: TypeReading, onset: Sequence[int], revisions: Sequence[str]) -> TypedEmergence:
    """``decoder["typed_emergence"]`` of evaluation.json: counts, onset counts per checkpoint and
    median onset (a checkpoint index; the lower median, None when no feature of the type has one)
    per type, in :func:`type_names` order. Features with onset -1 (all-zero decoder) count in
    ``counts`` but not in the onsets."""
    M = len(revisions)
    names = type_names(reading.properties)
    counts = {t: 0 for t in names}
    onsets: dict[str, list[int]] = {t: [] for t in names}
    for t, o in zip(reading.types, onset):
        counts[t] += 1
        if o >= 0:
            onsets[t].append(int(o))
    return TypedEmergence(
        properties=list(reading.properties),
        threshold=reading.threshold,
        types=names,
        counts=counts,
        onset_counts={t: np.bincount(np.asarray(onsets[t], dtype=np.int64), minlength=M).tolist() for t in names},
        onset_median={t: int(np.sort(onsets[t])[(len(onsets[t]) - 1) // 2]) if onsets[t] else None for t in names},
        revisions=list(revisions),
    )


# -- a store's context boundary -------------------------------------------------------------------

def context_boundary(tokens: np.ndarray) -> int | None:
    """The token every context starts with (BOS, which the packing also uses between documents),
    or None when the contexts do not all start with one token."""
    first = np.unique(np.asarray(tokens[:, 0])) if len(tokens) else np.zeros(0)
    return int(first[0]) if len(first) == 1 else None


# -- figure ---------------------------------------------------------------------------------------

def plot_typed_emergence(emergence: TypedEmergence, tokens: Sequence[int | None], path) -> Any:
    """``evaluation/typed_emergence.png``: one row per type with features, the share of its features
    whose onset is at each checkpoint (bars on the log token axis), the median onset marked."""

    shown = [t for t in emergence.types if emergence.counts[t] and t != UNSCORED]
    x, _floor = token_x(tokens)
    # bar width a fixed fraction of the log spacing, so bars do not overlap on the log axis
    log_x = np.log(x)
    step = np.min(np.diff(log_x)) if len(x) > 1 else 1.0
    lo, hi = np.exp(log_x - 0.35 * step), np.exp(log_x + 0.35 * step)
    fig, axes = plt.subplots(max(1, len(shown)), 1, figsize=(9, 1.1 + 1.0 * max(1, len(shown))), sharex=True,
                             squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[:, 0], shown)):
        counts = np.asarray(emergence.onset_counts[name], dtype=float)
        with_onset = counts.sum()
        share = counts / with_onset if with_onset else counts
        ax.bar(lo, share, width=hi - lo, align="edge", color=PALETTE[k % len(PALETTE)])
        median = emergence.onset_median[name]
        if median is not None:
            ax.axvline(x[median], color="black", lw=1.2, ls="--")
        ax.set_ylabel(f"{name}\nn={emergence.counts[name]}", rotation=0, ha="right", va="center", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.tick_params(axis="y", labelsize=6)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no scored features", ha="center", va="center", transform=axes[0, 0].transAxes)
    log_token_axis(axes[-1, 0], tokens)
    axes[0, 0].set_title(f"Onset by feature type (share of the type's features per checkpoint; dashed: median "
                         f"onset; type = simplest property scoring ≥ {emergence.threshold:g})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
