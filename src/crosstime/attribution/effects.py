"""Indirect effects of crosscoder features on a minimal-pair metric, one checkpoint at a time.

In checkpoint ``m`` the site activation (block ``L``'s output) is written as

    x_m = x̂_m(f) + ε_m,      x̂_m(f) = f W_dec[:, m] + b_dec[m],   ε_m = x_m − x̂_m(f)

with ``f`` the crosscoder features encoded from *all* checkpoints' activations of the same
token, and the reconstruction error ``ε_m`` held fixed, so the clean forward is exact.
Moving features ``f → g`` therefore moves the site to ``x_m + (g − f) W_dec[:, m]``: we
build every patched site that way, so the unpatched positions (padding, the excluded
position 0) stay bit-identical to the clean activation.

The metric is ``m = log p(wrong) − log p(correct)`` at the last prefix token. The effect
of a feature is ``m(patched) − m(clean)`` (positive: the feature supports the correct
answer). Per-token effects ``e[b, t, i]`` are summed over the attributed positions of a
pair; the stage averages the per-pair sums over pairs.

Methods (all per batch of pairs, all features at once):

- ``ig``: integrated gradients along the straight path from the clean features to the
  baseline, all features of all attributed positions moving together (the paper's path),
  error fixed. Midpoint quadrature: ``α_s = (s + ½)/S``, ``s = 0..S−1`` (exact for a
  metric linear in the features, error O(1/S²) otherwise; the reference's left sum
  ``α = s/S`` never evaluates the path's end). Because ``x̂`` is linear in ``f``, the path
  is the straight line ``x + α Δx`` in site space (``Δx = δ W_dec[:, m]``,
  ``δ = baseline − f``), so the S gradients are taken w.r.t. the ``[B, T, d]`` site and
  projected on the decoder once: ``e = δ ⊙ (ḡ W_decᵀ)`` with ``ḡ`` the mean site gradient.
  No ``[S, B, T, F]`` tensor is ever built.
- ``atp``: attribution patching, the same with the gradient at the clean point only.
- ``exact``: one forward per feature: feature ``i`` alone set to its baseline at every
  attributed position of the pair, everything else (other features, error) clean.

What IE is. IG's per-feature numbers are each feature's share of the *joint* effect ``J``
of moving every feature to its baseline together (completeness: they sum to ``J``); they
equal the exact single-feature effects only when the metric is additive over features (in
particular when it is linear). AtP is the first-order (α = 0) estimate of the single-feature
effect: exact for a metric linear in the site. ``exact`` is the single-feature effect itself. With redundant features (any one of
several suffices) a feature's share can be large while ablating it alone changes nothing,
or even helps; ``faithfulness`` in the stage measures, per checkpoint, how well they rank
and sign like the exact effects, and :mod:`crosstime.attribution.joint` ablates features
together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from crosstime import sites

MetricFn = Callable[..., torch.Tensor]
"""``metric_fn(site [R, T, d], rows=None) -> metric [R]``: the rest of checkpoint m's forward.

``rows [R]`` says which pair of the batch each site row belongs to; ``None`` means K whole
copies of the batch (``R = K·B``, copy-major)."""

METHODS = ("ig", "atp", "exact")

# What a method's IE_m(i) is, in words (table titles, CLI output, plots)
IE_MEANING = {
    "ig": "share of the joint effect (all features moved together), not a single-feature effect",
    "atp": "first-order estimate of ablating the feature alone",
    "exact": "effect of ablating the feature alone",
}


# -- batches of minimal pairs ------------------------------------------------------------

@dataclass
class PairBatch:
    """A batch of minimal pairs, right-padded.

    Right padding keeps every real token's position id and attention pattern unchanged
    (a causal model never looks right), so padding cannot change any number; the metric
    is read at ``last`` (each row's last real token).
    """

    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long, 1 on real tokens
    last: torch.Tensor  # [B] long, index of the last real token
    correct: torch.Tensor  # [B] long
    wrong: torch.Tensor  # [B] long
    attr_mask: torch.Tensor  # [B, T] bool: positions whose features are attributed
    index: torch.Tensor  # [B] long: the pairs' indices in the task

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> PairBatch:
        """The model-facing tensors on ``device`` (``index`` stays on the CPU)."""
        return PairBatch(self.input_ids.to(device), self.attention_mask.to(device), self.last.to(device),
                         self.correct.to(device), self.wrong.to(device), self.attr_mask.to(device), self.index)


def make_batches(
    prefixes: Sequence[Sequence[int]],
    correct: torch.Tensor,
    wrong: torch.Tensor,
    batch_size: int,
    pad_id: int = 0,
    exclude_first: bool = True,
    sort_by_length: bool = True,
) -> list[PairBatch]:
    """Right-padded batches of pairs (sorted by prefix length to waste little padding).

    ``exclude_first``: position 0 of each prefix (the attention sink, ``<bos>`` in the toy
    world) is not attributed, matching an activation store that excludes position 0 from
    training (its activations are far outside the crosscoder's training distribution).
    """
    n = len(prefixes)
    order = sorted(range(n), key=lambda i: len(prefixes[i])) if sort_by_length else list(range(n))
    batches = []
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        T = max(len(prefixes[i]) for i in idx)
        ids = torch.full((len(idx), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for row, i in enumerate(idx):
            p = list(prefixes[i])
            ids[row, : len(p)] = torch.tensor(p, dtype=torch.long)
            mask[row, : len(p)] = 1
        attr = mask.bool().clone()
        if exclude_first:
            attr[:, 0] = False
        index = torch.tensor(idx, dtype=torch.long)
        batches.append(PairBatch(ids, mask, mask.sum(1) - 1, correct[index], wrong[index], attr, index))
    return batches


# -- running a causal LM from its site ----------------------------------------------------

class _Stop(Exception):
    def __init__(self, value: torch.Tensor):
        self.value = value


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


class SiteForward:
    """Checkpoint m's forward from block ``layer``'s output to the pair metric.

    ``metric(site, batch)`` splices ``site [K·B, T, d]`` in as block ``layer``'s output for
    K copies of ``batch`` and returns ``log p(wrong) − log p(correct)`` at each row's last
    token, ``[K·B]``, differentiable w.r.t. ``site``.

    Two shortcuts, both exact:
    - ``skip_early_blocks``: blocks ``0..layer`` are not computed (their forward is
      swapped for a pass-through returning the spliced site; embeddings, masks and rotary
      tables are still built by the model as usual). Only blocks ``layer+1..`` run.
    - the forward stops at the final norm and only the two answer rows of the unembedding
      are applied: ``m = h_last · (W_U[wrong] − W_U[correct]) (+ bias difference)``; the
      log-softmax normaliser cancels. :meth:`metric_reference` computes the same from the
      full logits (used to check the shortcut once per model).
    """

    def __init__(self, model: nn.Module, layer: int, skip_early_blocks: bool = True):
        sites.check_layer(model, layer)
        self.model = model
        self.layer = layer
        self.blocks = sites.blocks(model)
        self.skip_early_blocks = skip_early_blocks
        unembed = sites.unembedding(model)
        if not isinstance(unembed, nn.Linear):  # pragma: no cover - all adapter families use Linear
            raise TypeError(f"unembedding of {type(model).__name__} is not nn.Linear")
        self.W_U = unembed.weight  # [V, d]
        self.b_U = unembed.bias
        self._template: tuple | None = None  # tuple structure of block outputs, if tuples
        self._probed = False  # read() has seen the blocks' output structure
        self._checked = False

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Parameters do not require grad inside (no weight gradients are computed)."""
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    def read(self, batch: PairBatch) -> torch.Tensor:
        """Block ``layer``'s clean output ``[B, T, d]`` (forward stopped after it)."""
        with torch.no_grad():
            # record the blocks' output structure (tensor or tuple) for the pass-through
            seen = {}
            handle = self.blocks[self.layer].register_forward_hook(
                lambda _m, _a, out: seen.setdefault("out", out)
            )
            try:
                x = sites.read_site(self.model, batch.input_ids, self.layer, attention_mask=batch.attention_mask)
            finally:
                handle.remove()
        out = seen.get("out")
        self._probed = True
        if isinstance(out, tuple):
            # pass-through is only safe when the extra items are unused placeholders
            self._template = out if all(o is None for o in out[1:]) else None
            if self._template is None:
                self.skip_early_blocks = False
        return x

    def _answer_direction(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        direction = self.W_U[batch.wrong] - self.W_U[batch.correct]  # [B, d]
        bias = (self.b_U[batch.wrong] - self.b_U[batch.correct]) if self.b_U is not None else \
            torch.zeros(len(batch), device=direction.device)
        return direction, bias

    @contextlib.contextmanager
    def _spliced(self, site: torch.Tensor) -> Iterator[None]:
        if not self.skip_early_blocks:
            with sites.patch_site(self.model, self.layer, lambda h: site):
                yield
            return

        def wrap(h):
            return (h, *[None] * (len(self._template) - 1)) if self._template is not None else h

        def passthrough(hidden_states, *args, **kwargs):
            return wrap(hidden_states)

        def splice(*args, **kwargs):
            return wrap(site)

        swapped = list(self.blocks[: self.layer + 1])
        for block in swapped[:-1]:
            block.forward = passthrough
        swapped[-1].forward = splice
        try:
            yield
        finally:
            for block in swapped:
                del block.forward

    def metric(self, site: torch.Tensor, batch: PairBatch, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``m [R]`` for ``site [R, T, d]`` spliced in for the pairs ``batch[rows]``.

        ``rows=None``: ``R = K·B`` rows for K copies of the batch.
        """
        if rows is None:
            K = site.shape[0] // len(batch)
            if K * len(batch) != site.shape[0]:
                raise ValueError(f"site batch {site.shape[0]} is not a multiple of the pair batch {len(batch)}")
            rows = torch.arange(len(batch), device=site.device).repeat(K)
        rows = rows.to(batch.input_ids.device)
        if self.skip_early_blocks and not self._probed:
            self.read(batch)  # the pass-through must return what the blocks return (tensor or tuple)

        def stop(_m, _a, out):
            raise _Stop(out)

        handle = sites.final_norm(self.model).register_forward_hook(stop)
        try:
            with self._spliced(site):
                self.model(input_ids=batch.input_ids[rows], attention_mask=batch.attention_mask[rows], use_cache=False)
        except _Stop as stopped:
            h = _hidden(stopped.value)  # [K·B, T, d]
        else:  # pragma: no cover
            raise RuntimeError("the final norm was never called")
        finally:
            handle.remove()
        h_last = h[torch.arange(h.shape[0], device=h.device), batch.last[rows]]  # [R, d]
        direction, bias = self._answer_direction(batch)
        m = (h_last * direction[rows].to(h_last.dtype)).sum(-1) + bias[rows].to(h_last.dtype)
        if not self._checked:
            self._check(site, batch, rows, m)
        return m

    def metric_reference(self, site: torch.Tensor, batch: PairBatch, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The same metric from the full model output (all blocks, full log-softmax)."""
        if rows is None:
            rows = torch.arange(len(batch), device=site.device).repeat(site.shape[0] // len(batch))
        rows = rows.to(batch.input_ids.device)
        with sites.patch_site(self.model, self.layer, lambda h: site):
            logits = self.model(input_ids=batch.input_ids[rows], attention_mask=batch.attention_mask[rows],
                                use_cache=False).logits
        r = torch.arange(logits.shape[0], device=logits.device)
        logp = torch.log_softmax(logits[r, batch.last[rows]].float(), dim=-1)
        return logp[r, batch.wrong[rows]] - logp[r, batch.correct[rows]]

    def _check(self, site: torch.Tensor, batch: PairBatch, rows: torch.Tensor, m: torch.Tensor) -> None:
        """Once per model: the shortcut forward must agree with the full model."""
        self._checked = True
        with torch.no_grad():
            ref = self.metric_reference(site.detach(), batch, rows)
        tol = 1e-3 * (1 + ref.abs().max().item())
        if not torch.allclose(m.detach().float(), ref, atol=tol):
            err = (m.detach().float() - ref).abs().max().item()
            raise RuntimeError(
                f"attribution's site-to-metric shortcut disagrees with the full {type(self.model).__name__} "
                f"forward (max |Δm| = {err:.3g}); this architecture needs its own row in crosstime.sites.ADAPTERS "
                "or skip_early_blocks=False."
            )


# -- effects on one batch -----------------------------------------------------------------

@dataclass
class BatchEffects:
    """Per-pair results of one batch in one checkpoint (B pairs, F features)."""

    features: torch.Tensor  # [B, F] summed per-token effects (thresholded if asked)
    error: torch.Tensor  # [B] exact effect of removing ε at the attributed positions
    joint: torch.Tensor  # [B] exact effect of setting all features to their baseline at once
    clean: torch.Tensor  # [B] clean metric
    alongside: dict[str, torch.Tensor] = field(default_factory=dict)  # estimator -> [B, F] (ig / atp besides the method)


def mean_site_gradient(metric_fn: MetricFn, x: torch.Tensor, dx: torch.Tensor, alphas: torch.Tensor,
                       chunk: int | None = None) -> torch.Tensor:
    """``ḡ = (1/S) Σ_s ∂m/∂site`` at ``site = x + α_s dx``, ``[B, T, d]``.

    The S points are run as one batch of ``S·B`` rows (or in chunks of ``chunk`` points).
    """
    S = len(alphas)
    alphas = alphas.to(x.device)
    chunk = chunk or S
    total = torch.zeros_like(x)
    for start in range(0, S, chunk):
        a = alphas[start:start + chunk].to(x.dtype)
        K = len(a)
        site = (x.unsqueeze(0) + a.view(K, 1, 1, 1) * dx.unsqueeze(0)).reshape(K * x.shape[0], *x.shape[1:])
        site.requires_grad_(True)
        with torch.enable_grad():
            m = metric_fn(site)
            (grad,) = torch.autograd.grad(m.sum(), site)
        total += grad.reshape(K, *x.shape).sum(0)
    return total / S


def midpoint_alphas(steps: int) -> torch.Tensor:
    """``α_s = (s + ½)/S``: the midpoint rule on [0, 1]."""
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    return (torch.arange(steps, dtype=torch.float64) + 0.5) / steps


def _reference_effects(metric_fn: MetricFn, x: torch.Tensor, f: torch.Tensor, W: torch.Tensor,
                       b_dec_m: torch.Tensor | None, dx: torch.Tensor, maskf: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One forward of three copies: ``(clean [B], joint [B], error [B])``, the clean metric and the
    exact effects of all features to their baseline at once and of removing the error ε."""
    B = x.shape[0]
    with torch.no_grad():
        x_hat = f @ W + (b_dec_m.to(x.dtype) if b_dec_m is not None else 0)
        eps = x - x_hat
        three = torch.cat([x, x + dx, x - eps * maskf])  # clean, all features ablated, error removed
        m3 = metric_fn(three).reshape(3, B)
    return m3[0], m3[1] - m3[0], m3[2] - m3[0]


def _exact_all(metric_fn: MetricFn, x: torch.Tensor, delta: torch.Tensor, W: torch.Tensor,
               features: torch.Tensor | None, clean: torch.Tensor, max_rows: int) -> torch.Tensor:
    """Exact single-feature effects ``[B, F]`` of ``features`` (default: every feature that differs
    from its baseline somewhere in the batch; the others have effect exactly 0)."""
    B, _, F = delta.shape
    feats = torch.zeros(B, F, dtype=x.dtype, device=x.device)
    if features is None:
        features = torch.nonzero(delta.abs().amax(dim=(0, 1)) > 0).flatten()
    features = torch.as_tensor(features, dtype=torch.long, device=x.device)
    feats[:, features] = exact_effects(metric_fn, x, delta, W, features, clean, max_rows=max_rows)
    return feats


def batch_effects(
    metric_fn: MetricFn,
    x: torch.Tensor,
    f: torch.Tensor,
    W_dec_m: torch.Tensor,
    attr_mask: torch.Tensor,
    b_dec_m: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
    method: str = "ig",
    steps: int = 10,
    threshold: float | None = None,
    features: torch.Tensor | None = None,
    alongside: Sequence[str] = (),
    step_chunk: int | None = None,
    max_rows: int = 512,
) -> BatchEffects:
    """Effects of every feature on the metric of one batch, in one checkpoint.

    x: [B, T, d] clean site activation of this checkpoint; f: [B, T, F] crosscoder features
    (from all checkpoints); W_dec_m: [F, d] this checkpoint's decoder slice (raw space);
    b_dec_m: [d] (only used to form ε); attr_mask: [B, T] bool; baseline: [F] (None → zero).
    ``features``: for ``exact``, the feature ids to ablate (default: every feature that
    differs from its baseline somewhere in the batch; the others have effect exactly 0).
    ``threshold``: per-token effects with ``|e| ≤ threshold`` are zeroed (ig/atp only; the
    exact method has no per-token effects). ``alongside``: other estimators (of ``ig``,
    ``atp``) computed on the same batch, for comparing them with the exact effects.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    if set(alongside) - {"ig", "atp"}:
        raise ValueError(f"estimators alongside the method are ig and atp, got {list(alongside)}")
    F = f.shape[2]
    x = x.detach()
    f = f.detach().to(x.dtype)
    W = W_dec_m.detach().to(x.dtype)
    maskf = attr_mask.to(x.dtype).unsqueeze(-1)  # [B, T, 1]
    base = torch.zeros(F, dtype=x.dtype, device=x.device) if baseline is None else baseline.to(x)
    delta = (base - f) * maskf  # [B, T, F]; zero where not attributed
    dx = delta @ W  # [B, T, d]
    clean, joint, error = _reference_effects(metric_fn, x, f, W, b_dec_m, dx, maskf)

    def estimate(name: str) -> torch.Tensor:
        # ig: mean gradient on the path; atp: the gradient at the clean point (α = 0) only
        alphas = midpoint_alphas(steps) if name == "ig" else torch.zeros(1, dtype=torch.float64)
        gbar = mean_site_gradient(metric_fn, x, dx, alphas.to(x.device), chunk=step_chunk)
        e = delta * (gbar @ W.T)  # [B, T, F]
        if threshold is not None:
            e = e * (e.abs() > threshold)
        return e.sum(1)

    others = {name: estimate(name) for name in alongside if name != method}
    feats = _exact_all(metric_fn, x, delta, W, features, clean, max_rows) if method == "exact" else estimate(method)
    return BatchEffects(features=feats, error=error, joint=joint, clean=clean, alongside=others)


def exact_effects(metric_fn: MetricFn, x: torch.Tensor, delta: torch.Tensor, W: torch.Tensor,
                  features: torch.Tensor, clean: torch.Tensor, max_rows: int = 512) -> torch.Tensor:
    """``[B, len(features)]``: ``m`` with feature i alone moved by ``delta[..., i]``, minus clean.

    Only (pair, feature) combinations where the feature moves somewhere in the pair are run
    (elsewhere the site is unchanged and the effect is exactly 0: with the zero baseline,
    pairs where the feature never fires), packed ``max_rows`` site rows per forward.
    """
    B = x.shape[0]
    features = torch.as_tensor(features, dtype=torch.long, device=x.device)
    out = torch.zeros(B, len(features), dtype=x.dtype, device=x.device)
    moved = delta[..., features].abs().amax(dim=1) > 0  # [B, K]
    pair, col = torch.nonzero(moved, as_tuple=True)
    with torch.no_grad():
        for start in range(0, len(pair), max_rows):
            p, c = pair[start:start + max_rows], col[start:start + max_rows]
            feat = features[c]
            # row r: x[p_r] + delta[p_r, :, feat_r] ⊗ W[feat_r]
            site = x[p] + delta[p, :, feat].unsqueeze(-1) * W[feat].unsqueeze(1)
            out[p, c] = metric_fn(site, rows=p) - clean[p]
    return out
