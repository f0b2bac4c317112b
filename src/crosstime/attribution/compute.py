"""IE of every crosscoder feature in every checkpoint, per pair of a task (no run directory here).

    att = compute_attribution(load_model, crosscoder, batches, layer, method="ig")   # att.ie [M, F]

``crosscoder`` is the :class:`~crosstime.crosscoder.Crosscoder` itself, over checkpoints
``crosscoder.revisions`` (M of them, possibly a subset of a store's); ``load_model(m)``
returns the causal LM of ``crosscoder.revisions[m]``. The effects are taken in raw
activation space, where the models run: ``crosscoder.folded()`` gives the raw-space
``encode``, ``W_dec`` and ``b_dec`` (a folded crosscoder is used as it is).

Shapes: M checkpoints, N pairs, F features, B pairs of a batch, T its padded length, d the
site's width.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from crosstime.attribution.effects import METHODS, PairBatch, SiteForward, batch_effects
from crosstime.crosscoder import Crosscoder
from crosstime.errors import CrosstimeError
from crosstime.progress import Bar

ModelLoader = Callable[[int], torch.nn.Module]
"""``load_model(m)``: the causal LM of the crosscoder's checkpoint ``m`` (eval mode, on its device)."""


class AttributionError(CrosstimeError):
    """Bad input to the attribution stage (named, with the fix)."""


@dataclass
class Attribution:
    """Everything computed for one task (M checkpoints, N pairs, F features)."""

    revisions: list[str]
    method: str
    steps: int
    ie_per_pair: torch.Tensor  # [M, N, F]
    error: torch.Tensor  # [M, N] effect of removing ε
    joint: torch.Tensor  # [M, N] effect of all features to baseline at once
    clean: torch.Tensor  # [M, N] clean metric
    task_frequency: torch.Tensor  # [F] share of attributed task tokens where the feature is active
    baseline: torch.Tensor  # [F]
    # estimator -> [M, N, F]: ig / atp computed alongside the method (for faithfulness against exact ablation)
    alongside: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ie(self) -> torch.Tensor:
        """``[M, F]`` signed IE, mean over pairs."""
        return self.ie_per_pair.mean(1)


def crosscoder_revisions(crosscoder: Crosscoder) -> list[str]:
    """The crosscoder's checkpoints, in order (one per row of every ``[M, ...]`` result)."""
    if crosscoder.revisions is None:
        raise AttributionError("the crosscoder records no revisions, so its checkpoints cannot be named; build it "
                               "with CrosscoderConfig(revisions=[...]) (a trained crosscoder always records them)")
    return list(crosscoder.revisions)


def encode_sites(raw: Crosscoder, xs: list[torch.Tensor]) -> torch.Tensor:
    """The shared features of every token: M raw sites ``[B, T, d]`` -> f ``[B, T, F]``.

    ``raw``: the crosscoder in raw space (``crosscoder.folded()``).
    """
    B, T, d = xs[0].shape
    x = torch.stack(xs, dim=2).reshape(B * T, len(xs), d)
    with torch.no_grad():
        return raw.encode(x).reshape(B, T, -1).float()


def pair_rows(batches: list[PairBatch]) -> tuple[int, list[torch.Tensor]]:
    """Number of pairs and, per batch, the rows of its pairs in the per-pair arrays (pairs sorted by index)."""
    index = torch.cat([b.index for b in batches])
    order = torch.sort(index).values
    if len(torch.unique(order)) != len(order):
        raise AttributionError("a pair appears in two batches")
    return len(order), [torch.searchsorted(order, b.index) for b in batches]


def read_sites(load_model: ModelLoader, M: int, batches: list[PairBatch], layer: int,
               progress: bool = True) -> tuple[list[list[torch.Tensor]], list[PairBatch]]:
    """Clean site activations ``xs[m][j]`` ``[B, T, d]`` (float32) of every checkpoint and batch,
    and the batches moved to the models' device. All M are needed to encode the shared features."""
    xs: list[list[torch.Tensor]] = []
    device = None
    for m in Bar(range(M), desc="reading sites", disable=not progress, leave=False):
        model = load_model(m)
        device = next(model.parameters()).device
        runner = SiteForward(model, layer)
        xs.append([runner.read(b.to(device)).float() for b in batches])
    return xs, [b.to(device) for b in batches]


def feature_stats(raw: Crosscoder, xs: list[list[torch.Tensor]], batches: list[PairBatch],
                  baseline: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Over the attributed task tokens: each feature's activation frequency ``[F]`` and its
    baseline ``[F]`` (zero, or its mean with ``baseline="mean"``)."""
    F = raw.n_features
    active = torch.zeros(F, dtype=torch.float64)
    total = torch.zeros(F, dtype=torch.float64)
    n_tok = 0
    for j, b in enumerate(batches):
        f = encode_sites(raw, [x[j] for x in xs])[b.attr_mask]  # [n, F]
        active += (f > 0).sum(0).double().cpu()
        total += f.sum(0).double().cpu()
        n_tok += f.shape[0]
    frequency = (active / max(n_tok, 1)).float()
    base = (total / max(n_tok, 1)).float() if baseline == "mean" else torch.zeros(F)
    return frequency, base


def compute_attribution(
    load_model: ModelLoader,
    crosscoder: Crosscoder,
    batches: list[PairBatch],
    layer: int,
    method: str = "ig",
    steps: int = 10,
    baseline: str = "zero",
    threshold: float | None = None,
    compare: bool = True,
    step_chunk: int | None = None,
    skip_early_blocks: bool = True,
    progress: bool = True,
) -> Attribution:
    """IE of every feature in every checkpoint of ``crosscoder``, per pair.

    Each model is run once over the prefixes to read its site activations, then once more
    for the effects (``load_model`` may cache them). ``compare``: also compute the estimators
    among ig / atp that are not ``method`` (:func:`alongside`), on the same pairs.
    """
    if method not in METHODS:
        raise AttributionError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    revisions = crosscoder_revisions(crosscoder)
    placement = pair_rows(batches)  # checked before any model runs
    raw = crosscoder.folded()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    xs, batches = read_sites(load_model, len(revisions), batches, layer, progress)
    seconds["read_sites"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frequency, base = feature_stats(raw, xs, batches, baseline)
    seconds["encode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ie, others, error, joint, clean = _effects(
        load_model, raw, xs, batches, placement, layer, base, method=method, steps=steps, threshold=threshold,
        others=alongside(method) if compare else (), step_chunk=step_chunk, skip_early_blocks=skip_early_blocks,
        progress=progress)
    seconds["effects"] = time.perf_counter() - t0
    return Attribution(revisions, method, steps, ie, error, joint, clean, frequency, base, others, seconds)


def alongside(method: str) -> tuple[str, ...]:
    """The estimators compared with exact ablation besides ``method``: ig and atp, less the method itself."""
    return tuple(name for name in ("ig", "atp") if name != method)


def _effects(load_model: ModelLoader, raw: Crosscoder, xs: list[list[torch.Tensor]], batches: list[PairBatch],
             placement: tuple[int, list[torch.Tensor]], layer: int, base: torch.Tensor, method: str, steps: int,
             threshold: float | None, others: tuple[str, ...], step_chunk: int | None, skip_early_blocks: bool,
             progress: bool) -> tuple[torch.Tensor, ...]:
    """The effects pass, checkpoint by checkpoint: ``ie [M, N, F]``, ``{estimator: [M, N, F]}`` of the
    ``others``, ``error, joint, clean [M, N]``; ``placement``: :func:`pair_rows` of the batches."""
    M, F = len(xs), raw.n_features
    N, index = placement
    device = batches[0].input_ids.device
    W_dec, b_dec, base = raw.W_dec.detach().float().to(device), raw.b_dec.detach().float().to(device), base.to(device)
    ie = torch.zeros(M, N, F)
    estimates = {name: torch.zeros(M, N, F) for name in others}
    error, joint, clean = torch.zeros(M, N), torch.zeros(M, N), torch.zeros(M, N)
    bar = Bar(total=M * len(batches), desc=f"IE ({method})", disable=not progress, leave=False)
    for m in range(M):
        runner = SiteForward(load_model(m), layer, skip_early_blocks=skip_early_blocks)
        with runner.frozen():
            for j, b in enumerate(batches):
                f = encode_sites(raw, [x[j] for x in xs])
                def metric(site, rows=None, b=b, run=runner):
                    return run.metric(site, b, rows)

                res = batch_effects(
                    metric, xs[m][j], f, W_dec[:, m], b.attr_mask,
                    b_dec_m=b_dec[m], baseline=base, method=method, steps=steps, threshold=threshold,
                    alongside=others, step_chunk=step_chunk,
                )
                r = index[j]
                ie[m, r] = res.features.float().cpu()
                error[m, r], joint[m, r], clean[m, r] = res.error.cpu(), res.joint.cpu(), res.clean.cpu()
                for name, values in res.alongside.items():
                    estimates[name][m, r] = values.float().cpu()
                bar.update(1)
    bar.close()
    return ie, estimates, error, joint, clean
