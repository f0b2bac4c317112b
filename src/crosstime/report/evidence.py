"""Feature evidence: what a crosscoder feature fires on, per checkpoint, and what it writes.

For a set of reported features ``i`` of a crosscoder over ``M`` checkpoints, from the run's
activation store (exact random access, no re-harvesting):

- **views.** A crosscoder's activation ``f_i = σ(Σ_m x_m W_enc[m] + b_enc)_i`` is *one*
  number per token, read jointly from every checkpoint. To see a feature over training
  time we also encode each checkpoint *alone* (the other checkpoints' activations set to
  zero, so their terms of the sum vanish): ``f_i^(m) = encode(x · 1[k = m])_i``. View 0
  (``"all"``) is the joint activation; view ``m + 1`` is checkpoint ``m`` alone. Both go
  through ``Crosscoder.encode`` in eval mode, so a JumpReLU or BatchTopK threshold the
  model carries is applied (the reference dashboard used a bare ReLU).
- **top contexts** per view: the ``n_top`` contexts with the largest activation (one
  entry per context: its maximum position), kept as a running top-k while streaming over
  the store in row order, memory ``O(views × features × n_top)``;
- an exact **histogram** of the non-zero activations per view (bins of equal width on
  ``[0, R)``; ``R`` doubles, merging bin pairs, whenever a larger value arrives, so the
  counts are exact for the final bins), the firing density, and a uniform **sample** of
  the non-zero activations (random keys, the smallest kept) from which examples at evenly
  spaced **quantiles** are drawn;
- a **window** of tokens around each example's position with the feature's activation at
  every token of the window (re-read from the store by ``(context, position)``);
- the **logit lens** per checkpoint: the decoder direction ``W_dec[i, m]`` (raw activation
  space) through checkpoint ``m``'s final norm and unembedding. The final norm is not
  linear, so by default (``"mean_activation"``) the direction is added, at the feature's
  typical strength ``a`` (mean of its top activations), to the mean site activation
  ``x̄_m`` of that checkpoint and the logit *difference*
  ``U(norm(x̄_m + a·W_dec[i, m])) − U(norm(x̄_m))`` is ranked; ``"norm_weight"`` instead
  uses the norm's linear part only, ``U(γ ⊙ centre(W_dec[i, m]))`` (centring for LayerNorm,
  none for RMSNorm; the 1/σ factor is a positive constant and does not change the ranking).
  The reference skipped the final norm entirely.

Everything returned is plain JSON-ready Python (lists, floats, ints, strings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn
from tqdm.auto import tqdm

ALL = "all"  # name of the joint view


class EvidenceConfig(BaseModel):
    """How much evidence to gather per feature."""

    n_top: int = Field(10, ge=1, description="top activating contexts kept per feature and view")
    window_before: int = Field(12, ge=0, description="tokens shown before an example's position")
    window_after: int = Field(4, ge=0, description="tokens shown after an example's position")
    n_quantiles: int = Field(6, ge=0, description="examples drawn at evenly spaced activation quantiles (joint view)")
    sample_size: int = Field(512, ge=1, description="uniform sample of non-zero activations kept per feature and view")
    n_bins: int = Field(32, ge=2, description="histogram bins (a power of two)")
    split: Literal["train", "heldout", "all"] = Field("heldout", description="store split streamed over")
    max_contexts: int | None = Field(4000, ge=1, description="stream at most this many contexts (None: the whole split)")
    batch_rows: int = Field(2048, ge=1, description="token rows encoded at once (memory: batch_rows × F floats per encode)")
    per_checkpoint: bool = Field(True, description="also gather each checkpoint-alone view (M more encodes per batch)")
    logit_lens: Literal["mean_activation", "norm_weight", "none"] = "mean_activation"
    n_logit_tokens: int = Field(10, ge=1, description="promoted and suppressed tokens listed per checkpoint")
    seed: int = 0
    device: str = "cpu"


# ---------------------------------------------------------------------------------------
# streaming accumulators
# ---------------------------------------------------------------------------------------
class RunningTopK:
    """Running top-``k`` of scores per slot, each with a small payload vector; ``-inf`` = empty.

    ``update(scores [S, n], payload)`` keeps, per slot, the ``k`` largest scores seen so far;
    ``payload(idx [S, j]) -> [S, j, P]`` builds the payload of the chosen batch columns only,
    so memory stays ``O(S × (k + n))`` scores and ``O(S × k × P)`` payload. On equal scores
    an entry already kept wins over a new one.
    """

    def __init__(self, slots: int, k: int, payload: int):
        self.values = torch.full((slots, k), -math.inf, dtype=torch.float64)
        self.payload = torch.full((slots, k, payload), -1.0, dtype=torch.float64)  # float64: ids < 2**53 exact

    def update(self, scores: torch.Tensor, payload: Callable[[torch.Tensor], torch.Tensor]) -> None:
        k = self.values.shape[1]
        best = torch.topk(scores.double(), min(k, scores.shape[1]), dim=1)  # the batch's own top-k first
        vals = torch.cat([self.values, best.values], dim=1)
        pay = torch.cat([self.payload, payload(best.indices).double()], dim=1)
        order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :k]
        self.values = torch.gather(vals, 1, order)
        self.payload = torch.gather(pay, 1, order[..., None].expand(-1, -1, pay.shape[2]))


class DoublingHistogram:
    """Exact equal-width histograms of positive values ``[slots]`` with a growing range.

    Bins of slot ``s`` cover ``[0, R_s)`` in ``n_bins`` equal parts (``n_bins`` a power of two).
    ``R_s`` starts at the first power of two above the first value and doubles (adjacent
    bins merge) whenever a value ``≥ R_s`` arrives; merging equal-width bins of a range that
    doubles is exact, so the final counts equal a histogram of all values on the final bins.
    """

    def __init__(self, slots: int, n_bins: int):
        if n_bins & (n_bins - 1):
            raise ValueError(f"n_bins must be a power of two, got {n_bins}")
        self.n_bins = n_bins
        self.counts = torch.zeros(slots, n_bins, dtype=torch.long)
        self.upper = torch.zeros(slots, dtype=torch.float64)  # 0 = nothing seen yet

    def update(self, values: torch.Tensor) -> None:
        """``values [slots, n]``; only entries > 0 count."""
        values = values.double()
        vmax = values.max(dim=1).values
        need = vmax >= self.upper
        for s in torch.nonzero(need & (vmax > 0)).flatten().tolist():
            target = 2.0 ** (math.floor(math.log2(float(vmax[s]))) + 1)
            if self.upper[s] == 0:
                self.upper[s] = target
                continue
            factor = int(round(target / float(self.upper[s])))
            if factor >= self.n_bins:
                merged = torch.zeros(self.n_bins, dtype=torch.long)
                merged[0] = self.counts[s].sum()
            else:
                merged = torch.zeros(self.n_bins, dtype=torch.long)
                merged[: self.n_bins // factor] = self.counts[s].view(-1, factor).sum(1)
            self.counts[s] = merged
            self.upper[s] = target
        pos = values > 0
        width = (self.upper / self.n_bins).clamp_min(1e-300)[:, None]
        bins = torch.div(values, width, rounding_mode="floor").clamp(0, self.n_bins - 1).long()
        slot = torch.arange(values.shape[0])[:, None].expand_as(bins)
        flat = (slot * self.n_bins + bins)[pos]
        self.counts += torch.bincount(flat, minlength=self.counts.numel()).view_as(self.counts)

    def edges(self, s: int) -> list[float]:
        return np.linspace(0.0, float(self.upper[s]), self.n_bins + 1).tolist()


@dataclass
class StreamResult:
    """What one pass over the store found, for features ``features`` and views ``views``.

    ``top_values/top_where`` are ``[V, K, n_top]`` / ``[V, K, n_top, 2]`` (context, position),
    sorted descending, ``-inf`` / -1 where fewer contexts fired; ``sample_*`` likewise for the
    uniform sample (``sample_values`` is the activation, unsorted). ``mean_activation`` is
    the mean raw site activation per checkpoint ``[M, d]`` over the streamed rows.
    """

    features: list[int]
    views: list[str]
    top_values: torch.Tensor
    top_where: torch.Tensor
    sample_values: torch.Tensor
    sample_where: torch.Tensor
    histogram: DoublingHistogram
    nonzero: torch.Tensor  # [V, K] rows with activation > 0
    n_rows: int
    n_contexts: int
    mean_activation: torch.Tensor
    contexts: tuple[int, int] = field(default=(0, 0))


# ---------------------------------------------------------------------------------------
# reading the store in crosscoder space
# ---------------------------------------------------------------------------------------
def input_scales(crosscoder, store, revisions: Sequence[str]) -> torch.Tensor:
    """Per-checkpoint factors ``[M]`` turning raw store rows into the crosscoder's input.

    A crosscoder with normalisation folded into its weights reads raw activations (factor
    1); an unfolded one reads ``s_m · x_m`` with the scales it was trained with (its
    recorded ``scales``; the store's where it records none).
    """
    if is_folded(crosscoder):
        return torch.ones(len(revisions))
    recorded = getattr(crosscoder, "scales", None)
    if isinstance(recorded, (list, tuple)) and len(recorded) == len(revisions):
        return torch.tensor([float(s) for s in recorded])
    return torch.tensor([float(store.scales[r]) for r in revisions])


def is_folded(crosscoder) -> bool:
    """Whether the normalisation scales are folded into the weights (``Crosscoder.is_folded``;
    a ``folded`` flag on the model or its config for other implementations)."""
    for owner in (crosscoder, getattr(crosscoder, "config", None), getattr(crosscoder, "cfg", None)):
        if owner is None:
            continue
        for name in ("folded", "scales_folded", "is_folded"):
            value = getattr(owner, name, None)
            if value is not None and not callable(value):
                return bool(value)
            if isinstance(owner, dict) and name in owner:
                return bool(owner[name])
    return False


def decoder_directions(crosscoder, store, revisions: Sequence[str], features: Sequence[int]) -> torch.Tensor:
    """Raw-space decoder directions ``[K, M, d]`` of ``features`` (``W_dec[i, m] / s_m`` if unfolded)."""
    W = crosscoder.W_dec.detach()[list(features)].float().cpu()
    scales = input_scales(crosscoder, store, revisions)
    return W / scales[None, :, None]


class Encoder:
    """The crosscoder's encode in each view, on ``config.device``, without gradients.

    ``view(x [n, M, d], v) -> f [n, F]``: ``v = 0`` the joint ``encode(x)``; ``v = m + 1``
    checkpoint ``m`` alone, i.e. ``encode`` of ``x`` with the other checkpoints zeroed. For a
    ``crosstime.crosscoder.Crosscoder`` that is computed as ``activate(x_m W_enc[m] + b_enc)``
    — the same pre-activation (the zeroed terms vanish) at 1/M of the GEMM cost — and
    through the model's own ``activate``, so thresholds apply exactly as in ``encode``.
    """

    def __init__(self, crosscoder, device: str = "cpu"):
        self.model = crosscoder
        self.device = device
        self.fast = callable(getattr(crosscoder, "activate", None)) and hasattr(crosscoder, "W_enc") \
            and hasattr(crosscoder, "b_enc")

    @torch.no_grad()
    def view(self, x: torch.Tensor, v: int) -> torch.Tensor:
        x = x.to(self.device)
        if v == 0:
            return self.model.encode(x).float().cpu()
        m = v - 1
        if self.fast:
            W, b = self.model.W_enc[m], self.model.b_enc
            return self.model.activate(torch.addmm(b.to(x.dtype), x[:, m], W.to(x.dtype))).float().cpu()
        alone = torch.zeros_like(x)
        alone[:, m] = x[:, m]
        return self.model.encode(alone).float().cpu()


def _read(store, revisions, rows_start: int, n: int, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_in [n, M, d], x_raw [n, M, d])`` for ``n`` consecutive global rows."""
    raw = torch.stack([store.read_block(r, rows_start, n) for r in revisions], dim=1)
    return raw * scales[None, :, None], raw


def view_activations(encoder: Encoder, x: torch.Tensor, features: Sequence[int], per_checkpoint: bool,
                     chunk_rows: int = 2048, views: Sequence[int] | None = None) -> torch.Tensor:
    """Activations ``[V, n, K]`` of ``features`` for ``x [n, M, d]``: view 0 joint, view m+1
    checkpoint m alone (``views`` picks some; default all, or only view 0 without
    ``per_checkpoint``). Encodes ``chunk_rows`` rows at a time and keeps only the K columns."""
    idx = torch.as_tensor(list(features), dtype=torch.long)
    M = x.shape[1]
    views = list(views) if views is not None else ([0] + list(range(1, M + 1)) if per_checkpoint else [0])
    out = torch.empty(len(views), x.shape[0], len(idx))
    for s0 in range(0, x.shape[0], chunk_rows):
        xc = x[s0 : s0 + chunk_rows]
        for j, view in enumerate(views):
            out[j, s0 : s0 + len(xc)] = encoder.view(xc, view)[:, idx]
    return out


def split_contexts(store, split: str, max_contexts: int | None) -> tuple[int, int]:
    if split == "all":
        lo, hi = 0, len(store.tokens)
    else:
        lo, hi = store.context_range(split)
    if max_contexts is not None:
        hi = min(hi, lo + max_contexts)
    if hi <= lo:
        raise ValueError(f"the store's {split!r} split has no contexts; choose another --split")
    return lo, hi


def stream(store, crosscoder, features: Sequence[int], config: EvidenceConfig, progress: bool = True) -> StreamResult:
    """One pass over the store in row order: top contexts, histograms, samples (see module doc)."""
    revisions = list(store.revisions)
    M = len(revisions)
    views = [ALL] + (revisions if config.per_checkpoint else [])
    V, K = len(views), len(features)
    encode = Encoder(crosscoder, config.device)
    scales = input_scales(crosscoder, store, revisions)
    lo, hi = split_contexts(store, config.split, config.max_contexts)
    P, first = store.rows_per_context, store.first_position
    top = RunningTopK(V * K, config.n_top, 2)
    sample = RunningTopK(V * K, config.sample_size, 3)  # payload: context, position, activation
    hist = DoublingHistogram(V * K, config.n_bins)
    nonzero = torch.zeros(V * K, dtype=torch.long)
    mean_sum = torch.zeros(M, store.d_model, dtype=torch.float64)
    gen = torch.Generator().manual_seed(config.seed)
    step = max(1, config.batch_rows // P)  # whole contexts per batch
    bar = tqdm(range(lo, hi, step), desc="feature evidence", unit="batch", disable=not progress)
    for c0 in bar:
        c1 = min(hi, c0 + step)
        n_ctx = c1 - c0
        x, raw = _read(store, revisions, c0 * P, n_ctx * P, scales)
        mean_sum += raw.double().sum(0)
        acts = view_activations(encode, x, features, config.per_checkpoint, config.batch_rows)  # [V, n_ctx*P, K]
        acts = acts.view(V, n_ctx, P, K).permute(0, 3, 1, 2).reshape(V * K, n_ctx, P)
        # top contexts: one entry per context, at its maximum position
        best, arg = acts.max(dim=2)  # [VK, n_ctx]
        top.update(torch.where(best > 0, best, torch.full_like(best, -math.inf)),
                   lambda i, arg=arg, c0=c0: torch.stack([c0 + i, torch.gather(arg, 1, i) + first], dim=-1))
        # histogram, density and uniform sample over rows
        flat = acts.reshape(V * K, -1)
        hist.update(flat)
        nonzero += (flat > 0).sum(1)
        keys = torch.rand(flat.shape, generator=gen, dtype=torch.float64)
        keys = torch.where(flat > 0, -keys, torch.full_like(keys, -math.inf))  # keep the smallest keys
        sample.update(keys, lambda i, flat=flat, c0=c0: torch.stack(
            [(c0 + i // P).double(), (first + i % P).double(), torch.gather(flat, 1, i).double()], dim=-1))
    n_rows = (hi - lo) * P
    return StreamResult(
        features=list(features), views=views,
        top_values=top.values.view(V, K, -1), top_where=top.payload.long().view(V, K, -1, 2),
        sample_values=torch.where(sample.values > -math.inf, sample.payload[..., 2], torch.full_like(sample.values, -math.inf)).view(V, K, -1),
        sample_where=sample.payload[..., :2].long().view(V, K, -1, 2),
        histogram=hist, nonzero=nonzero.view(V, K), n_rows=n_rows, n_contexts=hi - lo,
        mean_activation=(mean_sum / max(n_rows, 1)).float(), contexts=(lo, hi),
    )


# ---------------------------------------------------------------------------------------
# windows around examples
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One place a feature fired: view index, feature id, context, position, activation."""

    view: int
    feature: int
    context: int
    position: int
    value: float


def windows(store, crosscoder, examples: Sequence[Example], config: EvidenceConfig) -> list[dict]:
    """Token window around each example with the feature's activation (in the example's view) per token.

    Returns one dict per example: ``context, position, value, start`` (first window position),
    ``tokens`` (ids) and ``acts`` (one float per token; ``None`` at positions the store
    excludes, e.g. position 0). Each needed context is read once per checkpoint as one
    contiguous block (random access by context); only the window rows are encoded, in the
    example's view.
    """
    revisions = list(store.revisions)
    scales = input_scales(crosscoder, store, revisions)
    encode = Encoder(crosscoder, config.device)
    T, first, P = store.context_len, store.first_position, store.rows_per_context
    out: list[dict] = []
    by_context: dict[int, list[int]] = {}
    for e_idx, ex in enumerate(examples):
        a, b = max(0, ex.position - config.window_before), min(T, ex.position + config.window_after + 1)
        out.append({"context": ex.context, "position": ex.position, "value": _r(ex.value), "start": a,
                    "tokens": [int(t) for t in store.tokens[ex.context, a:b]], "acts": [None] * (b - a)})
        by_context.setdefault(ex.context, []).append(e_idx)
    contexts = sorted(by_context)
    step = max(1, config.batch_rows // P)
    for s0 in range(0, len(contexts), step):
        part = contexts[s0 : s0 + step]
        raw = torch.stack([torch.cat([store.read_block(r, c * P, P) for c in part]) for r in revisions], dim=1)
        x = (raw * scales[None, :, None]).view(len(part), P, len(revisions), -1)
        jobs: dict[int, list[tuple[int, int]]] = {}  # view -> [(index in part, example)]
        for j, c in enumerate(part):
            for e_idx in by_context[c]:
                jobs.setdefault(examples[e_idx].view, []).append((j, e_idx))
        for view, items in jobs.items():
            # encode only the rows inside the windows (position ≥ first), all windows of this view at once
            spans = []
            for j, e_idx in items:
                win = out[e_idx]
                lo_pos = max(win["start"], first)
                hi_pos = win["start"] + len(win["acts"])
                spans.append((j, e_idx, lo_pos, hi_pos))
            xs = [x[j, lo_pos - first : hi_pos - first] for j, _, lo_pos, hi_pos in spans if hi_pos > lo_pos]
            if not xs:
                continue
            feats = sorted({examples[e].feature for _, e in items})
            f = view_activations(encode, torch.cat(xs), feats, True, config.batch_rows, views=[view])[0].tolist()
            at = 0
            for j, e_idx, lo_pos, hi_pos in spans:
                if hi_pos <= lo_pos:
                    continue
                col, win = feats.index(examples[e_idx].feature), out[e_idx]
                for pos in range(lo_pos, hi_pos):
                    win["acts"][pos - win["start"]] = _r(f[at + pos - lo_pos][col])
                at += hi_pos - lo_pos
    return out


def _r(v: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (keeps the embedded JSON small)."""
    if v == 0 or not math.isfinite(v):
        return 0.0 if not math.isfinite(v) else v
    return round(v, -int(math.floor(math.log10(abs(v)))) + digits - 1)


# ---------------------------------------------------------------------------------------
# logit lens
# ---------------------------------------------------------------------------------------
def logit_lens(
    norm: nn.Module,
    unembed: nn.Module,
    directions: torch.Tensor,
    mean: torch.Tensor | None = None,
    strength: torch.Tensor | None = None,
    method: Literal["mean_activation", "norm_weight"] = "mean_activation",
) -> torch.Tensor:
    """Logit effect ``[K, V]`` of decoder directions ``[K, d]`` (raw site space) of one checkpoint.

    ``mean_activation``: ``U(norm(x̄ + a_k·w_k)) − U(norm(x̄))`` with ``mean`` = x̄ ``[d]`` and
    ``strength`` = a ``[K]``. ``norm_weight``: ``W_U (γ ⊙ centre(w_k))``, the norm's linear part
    (centring only for ``nn.LayerNorm``), no bias.
    """
    weight = unembed.weight.detach().float()  # [V, d]
    directions = directions.float()
    with torch.no_grad():
        if method == "norm_weight":
            h = directions
            if isinstance(norm, nn.LayerNorm):
                h = h - h.mean(dim=-1, keepdim=True)
            gamma = getattr(norm, "weight", None)
            if gamma is not None:
                h = h * gamma.detach().float()
            return h @ weight.T
        if mean is None:
            raise ValueError("logit_lens(method='mean_activation') needs the mean site activation")
        a = torch.ones(len(directions)) if strength is None else strength.float()
        base = mean.float()[None, :]
        norm_f = norm.float()
        shifted = norm_f(base + a[:, None] * directions) @ weight.T
        return shifted - norm_f(base) @ weight.T


def top_tokens(logits: torch.Tensor, n: int) -> tuple[list[list[list]], list[list[list]]]:
    """Per row of ``logits [K, V]``: ``n`` most promoted and ``n`` most suppressed ``[id, value]``."""
    n = min(n, logits.shape[1])
    up = torch.topk(logits, n, dim=1)
    down = torch.topk(-logits, n, dim=1)
    promoted = [[[int(i), _r(float(v))] for i, v in zip(ids, vals)] for ids, vals in zip(up.indices, up.values)]
    suppressed = [[[int(i), _r(-float(v))] for i, v in zip(ids, vals)] for ids, vals in zip(down.indices, down.values)]
    return promoted, suppressed


# ---------------------------------------------------------------------------------------
# everything for a set of features
# ---------------------------------------------------------------------------------------
HeadLoader = Callable[[str], "tuple[nn.Module, nn.Module]"]


def feature_evidence(
    store,
    crosscoder,
    features: Sequence[int],
    config: EvidenceConfig | None = None,
    heads: HeadLoader | None = None,
    progress: bool = True,
) -> dict:
    """Evidence for ``features`` as JSON-ready data (see the module docstring).

    ``heads(revision) -> (final_norm, unembedding)`` provides each checkpoint's head for
    the logit lens (skipped when ``None`` or ``config.logit_lens == "none"``).

    Returns ``{"views": [...], "n_rows", "n_contexts", "contexts", "config", "token_ids": [...],
    "features": {str(i): {"density": {view: share}, "histogram": {view: {"upper", "counts"}},
    "top": {view: [window, ...]}, "quantiles": [window + "quantile", ...],
    "logit_lens": {revision: {"promoted": [[id, Δlogit], ...], "suppressed": [...]}}}}}``.
    """
    config = config or EvidenceConfig()
    if hasattr(crosscoder, "eval"):
        crosscoder.eval()  # inference behaviour: BatchTopK uses its threshold, not the batch's top-k
    if hasattr(crosscoder, "to"):
        crosscoder.to(config.device)
    features = [int(i) for i in features]
    n_features = int(crosscoder.W_dec.shape[0])
    bad = [i for i in features if not 0 <= i < n_features]
    if bad:
        raise ValueError(f"feature ids {bad[:5]} are out of range: the crosscoder has {n_features} features (0..{n_features - 1})")
    if not features:
        return {"views": [], "features": {}, "token_ids": [], "n_rows": 0, "n_contexts": 0, "config": config.model_dump()}
    result = stream(store, crosscoder, features, config, progress=progress)
    V, K = len(result.views), len(features)
    examples: list[Example] = []
    slots: list[tuple[int, str, str, float | None]] = []  # (k, kind, view, quantile)
    for v in range(V):
        for k in range(K):
            for val, (c, p) in zip(result.top_values[v, k].tolist(), result.top_where[v, k].tolist()):
                if val > 0:
                    examples.append(Example(v, features[k], c, p, val))
                    slots.append((k, "top", result.views[v], None))
    for k in range(K):
        vals = result.sample_values[0, k]
        keep = torch.nonzero(vals > 0).flatten()
        if len(keep) and config.n_quantiles:
            order = keep[torch.argsort(vals[keep], stable=True)]
            picked: list[int] = []
            for j in range(config.n_quantiles):
                q = (j + 0.5) / config.n_quantiles
                idx = int(order[min(len(order) - 1, int(q * len(order)))])
                if idx not in picked:
                    picked.append(idx)
                    c, p = result.sample_where[0, k, idx].tolist()
                    examples.append(Example(0, features[k], c, p, float(vals[idx])))
                    slots.append((k, "quantile", ALL, q))
    shown = windows(store, crosscoder, examples, config)
    per_feature: dict[str, dict] = {}
    for k, i in enumerate(features):
        entry = {"density": {}, "histogram": {}, "top": {view: [] for view in result.views}, "quantiles": [], "logit_lens": {}}
        for v, view in enumerate(result.views):
            s = v * K + k
            entry["density"][view] = _r(float(result.nonzero[v, k]) / max(result.n_rows, 1))
            counts = result.histogram.counts[s].tolist()
            last = max((b for b, c in enumerate(counts) if c), default=-1)
            entry["histogram"][view] = {"upper": float(result.histogram.upper[s]), "n_bins": result.histogram.n_bins,
                                        "counts": counts[: last + 1]}
        per_feature[str(i)] = entry
    for (k, kind, view, q), win in zip(slots, shown):
        entry = per_feature[str(features[k])]
        if kind == "top":
            entry["top"][view].append(win)
        else:
            entry["quantiles"].append({**win, "quantile": round(q, 4)})
    token_ids = {t for e in shown for t in e["tokens"]}
    if heads is not None and config.logit_lens != "none":
        revisions = list(store.revisions)
        dirs = decoder_directions(crosscoder, store, revisions, features)  # [K, M, d]
        top = result.top_values[0].clone()
        top[~torch.isfinite(top)] = float("nan")
        strength = torch.nan_to_num(torch.nanmean(top, dim=1), nan=1.0).float()  # typical joint activation [K]
        for m, rev in enumerate(revisions):
            norm, unembed = heads(rev)
            logits = logit_lens(norm, unembed, dirs[:, m], result.mean_activation[m], strength, config.logit_lens)
            promoted, suppressed = top_tokens(logits, config.n_logit_tokens)
            for k, i in enumerate(features):
                per_feature[str(i)]["logit_lens"][rev] = {"promoted": promoted[k], "suppressed": suppressed[k]}
                token_ids.update(t for t, _ in promoted[k])
                token_ids.update(t for t, _ in suppressed[k])
    return {
        "views": result.views,
        "n_rows": result.n_rows,
        "n_contexts": result.n_contexts,
        "contexts": list(result.contexts),
        "config": config.model_dump(),
        "logit_lens_method": config.logit_lens if heads is not None else "none",
        "token_ids": sorted(token_ids),
        "features": per_feature,
    }
