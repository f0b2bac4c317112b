"""Feature evidence: what a crosscoder feature fires on, per checkpoint, and what it writes.

For a set of reported features ``i`` of a crosscoder over ``M`` checkpoints, from the run's
activation store (exact random access, no re-harvesting):

- **views.** A crosscoder's activation ``f_i = σ(Σ_m x_m W_enc[m] + b_enc)_i`` is *one*
  number per token, read jointly from every checkpoint. To see a feature over training
  time we also encode each checkpoint *alone* (the other checkpoints' activations set to
  zero, so their terms of the sum vanish): ``f_i^(m) = σ(x_m W_enc[m] + b_enc)_i``
  (``Crosscoder.pre_acts_alone`` + ``activate``). View 0 (``"all"``) is the joint
  activation; view ``m + 1`` is checkpoint ``m`` alone. Both run on a copy of the model in
  eval mode, so a JumpReLU or BatchTopK threshold the model carries is applied (the
  reference dashboard used a bare ReLU). The copy is ``Crosscoder.folded()``: it reads the
  raw store rows and its ``W_dec`` is the raw-space decoder direction.
- **checkpoints.** Those of the crosscoder (``model.revisions``), which may be a subset of
  the store's; only their store rows are read.
- **top contexts** per view: the ``n_top`` contexts with the largest activation (one
  entry per context: its maximum position), kept as a running top-k while streaming over
  the store in row order, memory ``O(views × features × n_top)``;
- an exact **histogram** of the non-zero activations per view (bins of equal width on
  ``[0, R)``; ``R`` doubles, merging bin pairs, whenever a larger value arrives, so the
  counts are exact for the final bins), the firing density, and a uniform **sample** of
  the non-zero activations (random keys, the smallest kept) from which examples at evenly
  spaced **quantiles** are drawn (the keys are drawn in row order, so the sample does not
  depend on how the rows are batched);
- a **window** of tokens around each example's position with the feature's activation at
  every token of the window (re-read from the store by ``(context, position)``);
- the **logit lens** per checkpoint (special tokens of the tokenizer left out): the decoder direction ``W_dec[i, m]`` (raw activation
  space: the folded model's) through checkpoint ``m``'s final norm and unembedding. The
  final norm is not linear, so by default (``"mean_activation"``) the direction is added, at the feature's
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
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from crosstime.crosscoder import Crosscoder
from crosstime.errors import CrosstimeError
from crosstime.progress import Bar
from crosstime.store import ActivationStore

ALL = "all"  # name of the joint view


class EvidenceError(CrosstimeError):
    """Evidence that cannot be gathered as asked (feature ids out of range, an empty split)."""


class EvidenceConfig(BaseModel):
    """What evidence to gather per feature (every setting changes the report; how it runs —
    device, batch size — is the caller's: :class:`crosstime.report.ReportConfig`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting

    n_top: int = Field(10, ge=1, description="top activating contexts kept per feature and view")
    window_before: int = Field(12, ge=0, description="tokens shown before an example's position")
    window_after: int = Field(4, ge=0, description="tokens shown after an example's position")
    n_quantiles: int = Field(6, ge=0, description="examples drawn at evenly spaced activation quantiles (joint view)")
    sample_size: int = Field(512, ge=1, description="uniform sample of non-zero activations kept per feature and view")
    n_bins: int = Field(32, ge=2, description="histogram bins (a power of two)")
    split: Literal["train", "heldout", "all"] = Field("heldout", description="store split streamed over")
    max_contexts: int | None = Field(4000, ge=1, description="stream at most this many contexts (None: the whole split)")
    per_checkpoint: bool = Field(True, description="also gather each checkpoint-alone view (M more encodes per batch)")
    logit_lens: Literal["mean_activation", "norm_weight", "none"] = Field(
        "mean_activation", description="decoder directions through each checkpoint's final norm and unembedding: "
                                       "added to the mean activation, through the norm's weight only, or none "
                                       "(then the series' checkpoints are not loaded)")
    n_logit_tokens: int = Field(10, ge=1, description="promoted and suppressed tokens listed per checkpoint")
    seed: int = Field(0, description="seed of the uniform activation sample")


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
            factor = round(target / float(self.upper[s]))
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
@torch.no_grad()
def encode_view(model: Crosscoder, x: torch.Tensor, view: int) -> torch.Tensor:
    """Features ``[n, F]`` (float32, CPU) of raw store rows ``x [n, M, d]`` in one view.

    ``model`` reads raw rows (``Crosscoder.folded()``), in eval mode. View 0: the joint
    ``encode(x)``; view ``m + 1``: checkpoint ``m`` alone, ``activate(pre_acts_alone(x_m, m))``,
    which equals ``encode`` of ``x`` with the other checkpoints zeroed at 1/M of the GEMM cost.
    """
    x = x.to(model.W_enc.device)
    if view == 0:
        return model.encode(x).float().cpu()
    m = view - 1
    return model.activate(model.pre_acts_alone(x[:, m], m)).float().cpu()


def read_rows(store: ActivationStore, revisions: Sequence[str], start: int, n: int) -> torch.Tensor:
    """Raw store rows ``[n, M, d]`` of ``revisions`` for ``n`` consecutive global rows."""
    return torch.stack([store.read_block(r, start, n) for r in revisions], dim=1)


def view_activations(model: Crosscoder, x: torch.Tensor, features: Sequence[int], per_checkpoint: bool,
                     chunk_rows: int = 2048, views: Sequence[int] | None = None) -> torch.Tensor:
    """Activations ``[V, n, K]`` of ``features`` for raw rows ``x [n, M, d]`` (see :func:`encode_view`):
    ``views`` picks some; default all, or only view 0 without ``per_checkpoint``. Encodes
    ``chunk_rows`` rows at a time and keeps only the K columns."""
    idx = torch.as_tensor(list(features), dtype=torch.long)
    M = x.shape[1]
    views = list(views) if views is not None else ([0] + list(range(1, M + 1)) if per_checkpoint else [0])
    out = torch.empty(len(views), x.shape[0], len(idx))
    for s0 in range(0, x.shape[0], chunk_rows):
        xc = x[s0 : s0 + chunk_rows]
        for j, view in enumerate(views):
            out[j, s0 : s0 + len(xc)] = encode_view(model, xc, view)[:, idx]
    return out


def split_contexts(store: ActivationStore, split: str, max_contexts: int | None) -> tuple[int, int]:
    if split == "all":
        lo, hi = 0, len(store.tokens)
    else:
        lo, hi = store.context_range(split)
    if max_contexts is not None:
        hi = min(hi, lo + max_contexts)
    if hi <= lo:
        raise EvidenceError(f"the store's {split!r} split has no contexts; choose another --split")
    return lo, hi


class _Accumulators:
    """The running statistics of :func:`stream` over ``slots = V × K`` (view, feature) pairs."""

    def __init__(self, slots: int, config: EvidenceConfig, M: int, d: int):
        self.top = RunningTopK(slots, config.n_top, 2)  # payload: context, position
        self.sample = RunningTopK(slots, config.sample_size, 3)  # payload: context, position, activation
        self.hist = DoublingHistogram(slots, config.n_bins)
        self.nonzero = torch.zeros(slots, dtype=torch.long)
        self.mean_sum = torch.zeros(M, d, dtype=torch.float64)
        self.gen = torch.Generator().manual_seed(config.seed)

    def update(self, acts: torch.Tensor, c0: int, first: int) -> None:
        """``acts [slots, n_ctx, P]``: the batch's activations, contexts from ``c0``."""
        slots, _, P = acts.shape
        best, arg = acts.max(dim=2)  # top contexts: one entry per context, at its maximum position
        self.top.update(torch.where(best > 0, best, torch.full_like(best, -math.inf)),
                        lambda i: torch.stack([c0 + i, torch.gather(arg, 1, i) + first], dim=-1))
        flat = acts.reshape(slots, -1)  # histogram, density and uniform sample over rows
        self.hist.update(flat)
        self.nonzero += (flat > 0).sum(1)
        # keys drawn row by row ([rows, slots]), so a row's keys do not depend on the batching
        keys = torch.rand((flat.shape[1], slots), generator=self.gen, dtype=torch.float64).T
        keys = torch.where(flat > 0, -keys, torch.full_like(keys, -math.inf))  # keep the smallest keys
        self.sample.update(keys, lambda i: torch.stack(
            [(c0 + i // P).double(), (first + i % P).double(), torch.gather(flat, 1, i).double()], dim=-1))


def stream(store: ActivationStore, model: Crosscoder, features: Sequence[int], config: EvidenceConfig,
           batch_rows: int = 2048, progress: bool = True) -> StreamResult:
    """One pass over the store in row order: top contexts, histograms, samples (see module doc).

    ``model`` reads raw rows (``Crosscoder.folded()``, eval mode); only the rows of its
    revisions are read. ``batch_rows`` (whole contexts per batch, at least one) changes how
    much is encoded at once, not the result.
    """
    revisions = list(model.revisions)
    M = len(revisions)
    views = [ALL] + (revisions if config.per_checkpoint else [])
    V, K = len(views), len(features)
    lo, hi = split_contexts(store, config.split, config.max_contexts)
    P, first = store.rows_per_context, store.first_position
    acc = _Accumulators(V * K, config, M, store.d_model)
    step = max(1, batch_rows // P)  # whole contexts per batch
    for c0 in Bar(range(lo, hi, step), desc="feature evidence", unit="batch", disable=not progress):
        n_ctx = min(hi, c0 + step) - c0
        raw = read_rows(store, revisions, c0 * P, n_ctx * P)
        acc.mean_sum += raw.double().sum(0)
        acts = view_activations(model, raw, features, config.per_checkpoint, batch_rows)  # [V, n_ctx*P, K]
        acc.update(acts.view(V, n_ctx, P, K).permute(0, 3, 1, 2).reshape(V * K, n_ctx, P), c0, first)
    n_rows = (hi - lo) * P
    sample = acc.sample
    return StreamResult(
        features=list(features), views=views,
        top_values=acc.top.values.view(V, K, -1), top_where=acc.top.payload.long().view(V, K, -1, 2),
        sample_values=torch.where(sample.values > -math.inf, sample.payload[..., 2],
                                  torch.full_like(sample.values, -math.inf)).view(V, K, -1),
        sample_where=sample.payload[..., :2].long().view(V, K, -1, 2),
        histogram=acc.hist, nonzero=acc.nonzero.view(V, K), n_rows=n_rows, n_contexts=hi - lo,
        mean_activation=(acc.mean_sum / max(n_rows, 1)).float(), contexts=(lo, hi),
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


def windows(store: ActivationStore, model: Crosscoder, examples: Sequence[Example], config: EvidenceConfig,
            batch_rows: int = 2048) -> list[dict]:
    """Token window around each example with the feature's activation (in the example's view) per token.

    ``model`` reads raw rows (``Crosscoder.folded()``, eval mode). Returns one dict per
    example: ``context, position, value, start`` (first window position), ``tokens`` (ids)
    and ``acts`` (one float per token; ``None`` at positions the store excludes, e.g.
    position 0). Each needed context is read once per checkpoint as one contiguous block
    (random access by context); only the window rows are encoded, in the example's view.
    """
    T, P = store.context_len, store.rows_per_context
    out: list[dict] = []
    by_context: dict[int, list[int]] = {}
    for e_idx, ex in enumerate(examples):
        a, b = max(0, ex.position - config.window_before), min(T, ex.position + config.window_after + 1)
        out.append({"context": ex.context, "position": ex.position, "value": _r(ex.value), "start": a,
                    "tokens": store.tokens[ex.context, a:b].tolist(), "acts": [None] * (b - a)})
        by_context.setdefault(ex.context, []).append(e_idx)
    contexts = sorted(by_context)
    step = max(1, batch_rows // P)
    for s0 in range(0, len(contexts), step):
        part = contexts[s0 : s0 + step]
        raw = torch.stack([torch.cat([store.read_block(r, c * P, P) for c in part]) for r in model.revisions], dim=1)
        x = raw.view(len(part), P, len(model.revisions), -1)  # [contexts, P, M, d]
        jobs: dict[int, list[tuple[int, int]]] = {}  # view -> [(index in part, example)]
        for j, c in enumerate(part):
            for e_idx in by_context[c]:
                jobs.setdefault(examples[e_idx].view, []).append((j, e_idx))
        for view, items in jobs.items():
            _fill_windows(model, x, view, items, examples, out, store.first_position, batch_rows)
    return out


def _fill_windows(model: Crosscoder, x: torch.Tensor, view: int, items: list[tuple[int, int]],
                  examples: Sequence[Example], out: list[dict], first: int, batch_rows: int) -> None:
    """Encode the rows inside the windows of ``items`` (``(context index in x, example)``, all
    in ``view``) at once and write each window's ``acts``; ``x [contexts, P, M, d]``."""
    spans = []
    for j, e_idx in items:  # only stored positions (≥ first) are encoded
        win = out[e_idx]
        lo_pos, hi_pos = max(win["start"], first), win["start"] + len(win["acts"])
        if hi_pos > lo_pos:
            spans.append((j, e_idx, lo_pos, hi_pos))
    if not spans:
        return
    rows = torch.cat([x[j, lo_pos - first : hi_pos - first] for j, _, lo_pos, hi_pos in spans])
    feats = sorted({examples[e].feature for _, e in items})
    column = {feat: c for c, feat in enumerate(feats)}
    f = view_activations(model, rows, feats, True, batch_rows, views=[view])[0]  # [rows, len(feats)]
    # each window reads one column: pick those entries before leaving torch (a whole .tolist() cost 22 s in the demo)
    cols = torch.cat([torch.full((hi - lo,), column[examples[e].feature]) for _, e, lo, hi in spans])
    picked = f[torch.arange(len(cols)), cols].tolist()
    at = 0
    for _, e_idx, lo_pos, hi_pos in spans:
        win = out[e_idx]
        for pos in range(lo_pos, hi_pos):
            win["acts"][pos - win["start"]] = _r(picked[at + pos - lo_pos])
        at += hi_pos - lo_pos


def _r(v: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (keeps the embedded JSON small)."""
    if v == 0 or not math.isfinite(v):
        return 0.0 if not math.isfinite(v) else v
    return round(v, -math.floor(math.log10(abs(v))) + digits - 1)


def token_strings(tokenizer, ids: list[int]) -> dict[str, str]:
    """Display text of each token id. Word-level tokenizers (no decoder) get a leading space
    so that a window of tokens reads as words."""
    backend = getattr(tokenizer, "backend_tokenizer", None)  # a transformers fast tokenizer's
    word_level = backend is not None and backend.decoder is None
    out = {}
    for i in ids:
        text = tokenizer.decode([int(i)], clean_up_tokenization_spaces=False)
        if word_level and text and not text[0].isspace():
            text = " " + text
        out[str(int(i))] = text
    return out


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


def top_tokens(logits: torch.Tensor, n: int, excluded: Sequence[int] = ()) -> tuple[list[list[list]], list[list[list]]]:
    """Per row of ``logits [K, V]``: ``n`` most promoted and ``n`` most suppressed ``[id, value]``,
    leaving out the token ids ``excluded`` (the tokenizer's special tokens: they name no word, and in a
    model that rarely predicts them their logits move with almost any direction, filling the lists)."""
    keep = torch.ones(logits.shape[1], dtype=torch.bool)
    keep[[i for i in excluded if 0 <= i < logits.shape[1]]] = False
    vocab_ids = torch.nonzero(keep).flatten()  # [V'] the listed ids
    logits = logits[:, vocab_ids]
    n = min(n, logits.shape[1])
    up_values, up_at = torch.topk(logits, n, dim=1)
    down_values, down_at = torch.topk(-logits, n, dim=1)
    promoted = [[[int(i), _r(float(v))] for i, v in zip(vocab_ids[at], vals)] for at, vals in zip(up_at, up_values)]
    suppressed = [[[int(i), _r(-float(v))] for i, v in zip(vocab_ids[at], vals)] for at, vals in zip(down_at, down_values)]
    return promoted, suppressed


# ---------------------------------------------------------------------------------------
# everything for a set of features
# ---------------------------------------------------------------------------------------
HeadLoader = Callable[[str], "tuple[nn.Module, nn.Module]"]


def _examples(result: StreamResult, config: EvidenceConfig) -> tuple[list[Example], list[tuple[int, str, str, float | None]]]:
    """The examples to show: every top context per view, and quantile picks of the joint view's
    sample; with each its slot ``(feature index k, "top" | "quantile", view, quantile)``."""
    features = result.features
    examples: list[Example] = []
    slots: list[tuple[int, str, str, float | None]] = []
    for v, view in enumerate(result.views):
        for k, i in enumerate(features):
            for val, (c, p) in zip(result.top_values[v, k].tolist(), result.top_where[v, k].tolist()):
                if val > 0:
                    examples.append(Example(v, i, c, p, val))
                    slots.append((k, "top", view, None))
    for k, i in enumerate(features):
        for idx, q in quantile_picks(result, 0, k, config.n_quantiles):
            c, p = result.sample_where[0, k, idx].tolist()
            examples.append(Example(0, i, c, p, float(result.sample_values[0, k, idx])))
            slots.append((k, "quantile", ALL, q))
    return examples, slots


def quantile_picks(result: StreamResult, view: int, k: int, n_quantiles: int) -> list[tuple[int, float]]:
    """Examples at ``n_quantiles`` evenly spaced activation quantiles ``(j + 0.5) / n`` of the uniform
    sample of feature index ``k`` in ``view``: ``(index into the sample, quantile)``, each sample entry
    once (a quantile landing on an entry already picked is skipped)."""
    vals = result.sample_values[view, k]
    keep = torch.nonzero(vals > 0).flatten()
    if not len(keep) or not n_quantiles:
        return []
    order = keep[torch.argsort(vals[keep], stable=True)]
    picked: list[tuple[int, float]] = []
    for j in range(n_quantiles):
        q = (j + 0.5) / n_quantiles
        idx = int(order[min(len(order) - 1, int(q * len(order)))])
        if idx not in [i for i, _ in picked]:
            picked.append((idx, q))
    return picked


def _per_feature(result: StreamResult, slots: list, shown: list[dict]) -> dict[str, dict]:
    """``{str(i): {"density", "histogram", "top", "quantiles", "logit_lens": {}}}`` from the stream and the windows."""
    K = len(result.features)
    per_feature: dict[str, dict] = {}
    for k, i in enumerate(result.features):
        entry = {"density": {}, "histogram": {}, "top": {view: [] for view in result.views}, "quantiles": [],
                 "logit_lens": {}}
        for v, view in enumerate(result.views):
            s = v * K + k
            entry["density"][view] = _r(float(result.nonzero[v, k]) / max(result.n_rows, 1))
            counts = result.histogram.counts[s].tolist()
            last = max((b for b, c in enumerate(counts) if c), default=-1)
            entry["histogram"][view] = {"upper": float(result.histogram.upper[s]), "n_bins": result.histogram.n_bins,
                                        "counts": counts[: last + 1]}
        per_feature[str(i)] = entry
    for (k, kind, view, q), win in zip(slots, shown):
        entry = per_feature[str(result.features[k])]
        if kind == "top":
            entry["top"][view].append(win)
        else:
            entry["quantiles"].append({**win, "quantile": round(q, 4)})
    return per_feature


def _add_logit_lens(per_feature: dict[str, dict], model: Crosscoder, result: StreamResult, config: EvidenceConfig,
                    heads: HeadLoader, excluded: Sequence[int] = ()) -> set[int]:
    """Promoted/suppressed tokens per feature and checkpoint into ``per_feature``; returns their ids.

    ``model`` is raw-space (folded): ``W_dec[i, m]`` is the direction in checkpoint m's site."""
    features = result.features
    dirs = model.W_dec.detach()[features].float().cpu()  # [K, M, d]
    top = result.top_values[0].clone()
    top[~torch.isfinite(top)] = float("nan")
    strength = torch.nan_to_num(torch.nanmean(top, dim=1), nan=1.0).float()  # typical joint activation [K]
    token_ids: set[int] = set()
    for m, rev in enumerate(model.revisions):
        norm, unembed = heads(rev)
        logits = logit_lens(norm, unembed, dirs[:, m], result.mean_activation[m], strength, config.logit_lens)
        promoted, suppressed = top_tokens(logits, config.n_logit_tokens, excluded)
        for k, i in enumerate(features):
            per_feature[str(i)]["logit_lens"][rev] = {"promoted": promoted[k], "suppressed": suppressed[k]}
            token_ids.update(t for t, _ in promoted[k] + suppressed[k])
    return token_ids


def feature_evidence(
    store: ActivationStore,
    model: Crosscoder,
    features: Sequence[int],
    config: EvidenceConfig | None = None,
    device: str | torch.device = "cpu",
    batch_rows: int = 2048,
    heads: HeadLoader | None = None,
    progress: bool = True,
    excluded_tokens: Sequence[int] = (),
) -> dict:
    """Evidence for ``features`` as JSON-ready data (see the module docstring).

    ``model``: the crosscoder as :func:`crosstime.crosscoder.load_for_store` opens it
    (normalised space); its raw-space copy (``model.folded()``, eval mode, on ``device``)
    does the work, so the caller's model is not changed. ``batch_rows``: rows encoded at once
    (memory: batch_rows × F floats per encode; the result does not depend on it unless the
    model's features depend on the batch, ``model.inference_depends_on_batch``).
    ``heads(revision) -> (final_norm, unembedding)`` provides each checkpoint's head for the
    logit lens (skipped when ``None`` or ``config.logit_lens == "none"``); ``excluded_tokens``: ids the
    logit lens does not list (the tokenizer's special tokens).

    Returns ``{"views": [...], "n_rows", "n_contexts", "contexts", "config", "logit_lens_method",
    "token_ids": [...], "features": {str(i): {"density": {view: share}, "histogram": {view: {"upper",
    "n_bins", "counts"}}, "top": {view: [window, ...]}, "quantiles": [window + "quantile", ...],
    "logit_lens": {revision: {"promoted": [[id, Δlogit], ...], "suppressed": [...]}}}}}``.
    """
    config = config or EvidenceConfig()
    features = [int(i) for i in features]
    bad = [i for i in features if not 0 <= i < model.n_features]
    if bad:
        raise EvidenceError(f"feature ids {bad[:5]} are out of range: the crosscoder has {model.n_features} features "
                            f"(0..{model.n_features - 1})")
    lens = config.logit_lens if heads is not None else "none"
    meta = {"config": config.model_dump(mode="json"), "logit_lens_method": lens}
    if not features:
        return {"views": [], "features": {}, "token_ids": [], "n_rows": 0, "n_contexts": 0, "contexts": [0, 0], **meta}
    raw = model.folded().to(device).eval()  # inference behaviour: BatchTopK uses its threshold
    result = stream(store, raw, features, config, batch_rows, progress=progress)
    examples, slots = _examples(result, config)
    shown = windows(store, raw, examples, config, batch_rows)
    per_feature = _per_feature(result, slots, shown)
    token_ids = {t for e in shown for t in e["tokens"]}
    if lens != "none":
        token_ids |= _add_logit_lens(per_feature, raw, result, config, heads, excluded_tokens)
    return {"views": result.views, "n_rows": result.n_rows, "n_contexts": result.n_contexts,
            "contexts": list(result.contexts), "token_ids": sorted(token_ids), "features": per_feature, **meta}
