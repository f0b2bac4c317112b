"""Reconstruction and downstream metrics of a crosscoder, on plain tensors.

Reconstruction (activations ``x, x̂ [B, M, d]``, latents ``f [B, F]``), accumulated over
batches in float64 by :class:`ReconstructionStats`:

- MSE per checkpoint: mean over tokens and dimensions of ``(x - x̂)²``;
- explained variance *about the mean* per checkpoint,
  ``EV_m = 1 - Σ_t ‖x_tm - x̂_tm‖² / Σ_t ‖x_tm - μ_m‖²`` (μ_m the mean activation of
  checkpoint m over the evaluated tokens), and overall (sums over all checkpoints);
  FVU = 1 - EV;
- L0: mean number of active latents per token; per-latent firing counts (dead = never
  active over the counted tokens, which `update_firing` can extend beyond the evaluated
  ones) and a histogram of log10 firing frequency.

Downstream (one checkpoint's forward pass, its site replaced): next-token cross-entropy
and KL(clean ‖ spliced) over the predictions made at the replaced positions only, as sums
and counts (:class:`DownstreamStats`), so that batches combine exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F_

from crosstime.artifacts import FrequencyHistogram, Reconstruction
from crosstime.sites import patch_site


class ReconstructionStats:
    """Streaming sums over batches for MSE, explained variance, L0 and firing counts.

    ``update(x [B, M, d], x_hat [B, M, d], f [B, F])``; ``result()`` returns the ``reconstruction``
    of evaluation.json (:class:`~crosstime.artifacts.Reconstruction`; lists per checkpoint in the order
    of the M axis).
    """

    def __init__(self, n_checkpoints: int, d_model: int, n_features: int):
        self.M, self.d, self.F = n_checkpoints, d_model, n_features
        self.n = 0
        self.err = torch.zeros(n_checkpoints, dtype=torch.float64)  # Σ ‖x - x̂‖²
        self.sum_x = torch.zeros(n_checkpoints, d_model, dtype=torch.float64)  # Σ x
        self.sum_x2 = torch.zeros(n_checkpoints, dtype=torch.float64)  # Σ ‖x‖²
        self.active = 0  # Σ_t #active latents
        self.fired = torch.zeros(n_features, dtype=torch.int64)  # tokens on which each latent fired
        self.n_firing = 0  # tokens counted in `fired` (≥ n)

    def update(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> None:
        if x.shape != x_hat.shape or x.dim() != 3 or x.shape[1:] != (self.M, self.d):
            raise ValueError(f"expected x, x_hat [B, {self.M}, {self.d}], got {tuple(x.shape)} and {tuple(x_hat.shape)}")
        if f.shape != (x.shape[0], self.F):
            raise ValueError(f"expected f [{x.shape[0]}, {self.F}], got {tuple(f.shape)}")
        x64 = x.double()
        self.n += x.shape[0]
        # reduced where x lives (a GPU), accumulated on the CPU, where the sums are kept
        self.err += (x64 - x_hat.double()).pow(2).sum(dim=(0, 2)).cpu()
        self.sum_x += x64.sum(0).cpu()
        self.sum_x2 += x64.pow(2).sum(dim=(0, 2)).cpu()
        on = f != 0
        self.active += int(on.sum())
        self.fired += on.sum(0).cpu()
        self.n_firing += x.shape[0]

    def update_firing(self, f: torch.Tensor) -> None:
        """Count firing only (latents ``f [B, F]`` of extra tokens, for a longer dead-latent window)."""
        if f.dim() != 2 or f.shape[1] != self.F:
            raise ValueError(f"expected f [B, {self.F}], got {tuple(f.shape)}")
        self.fired += (f != 0).sum(0).cpu()
        self.n_firing += f.shape[0]

    def result(self, dead_min_tokens: int = 100_000, bins: int = 30) -> Reconstruction:
        if self.n == 0:
            raise ValueError("no activations were evaluated")
        n = self.n
        # Σ_t ‖x_t - μ‖² = Σ ‖x‖² - n ‖μ‖²  (float64 sums keep this exact enough)
        total_var = self.sum_x2 - self.sum_x.pow(2).sum(-1) / n
        ev = 1 - self.err / total_var
        ev_all = 1 - self.err.sum() / total_var.sum()
        dead = int((self.fired == 0).sum())
        return Reconstruction(
            tokens=n,
            mse=(self.err / (n * self.d)).tolist(),
            mse_overall=float(self.err.sum() / (n * self.d * self.M)),
            explained_variance=ev.tolist(),
            explained_variance_overall=float(ev_all),
            fvu=(1 - ev).tolist(),
            fvu_overall=float(1 - ev_all),
            l0=self.active / n,
            dead=dead,
            dead_fraction=dead / self.F,
            dead_window_tokens=self.n_firing,
            dead_window_reliable=self.n_firing >= dead_min_tokens,
            frequency_histogram=frequency_histogram(self.fired, self.n_firing, bins=bins),
        )

    @property
    def frequency(self) -> torch.Tensor:
        """Firing frequency of each latent over the tokens counted so far: ``[F]``."""
        return self.fired.double() / max(self.n_firing, 1)


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Explained variance about the mean: ``([M], overall)`` for ``x, x̂ [N, M, d]`` (one shot)."""
    err = (x - x_hat).double().pow(2).sum(dim=(0, 2))
    var = (x.double() - x.double().mean(0, keepdim=True)).pow(2).sum(dim=(0, 2))
    return 1 - err / var, float(1 - err.sum() / var.sum())


def frequency_histogram(fired: torch.Tensor, n_tokens: int, bins: int = 30) -> FrequencyHistogram:
    """Histogram of log10 firing frequency of the latents that fired at least once.

    ``fired [F]`` counts over ``n_tokens`` tokens. Bins span [log10(1/n_tokens), 0]:
    ``edges_log10 [bins + 1]``, ``counts [bins]``, and ``dead`` (latents that never fired).
    """
    fired = torch.as_tensor(fired)
    alive = fired[fired > 0].double() / n_tokens
    lo = -math.log10(max(n_tokens, 1))
    edges = torch.linspace(lo, 0.0, bins + 1, dtype=torch.float64) if lo < 0 else torch.linspace(-1, 0, bins + 1)
    counts = torch.histogram(alive.log10(), bins=edges).hist if alive.numel() else torch.zeros(bins)
    return FrequencyHistogram(edges_log10=edges.tolist(), counts=[int(c) for c in counts.tolist()],
                              dead=int((fired == 0).sum()))


def prediction_mask(shape: tuple[int, int], first_position: int) -> torch.Tensor:
    """Which next-token predictions count: ``[B, T]`` bool, True at positions ``t`` with
    ``first_position ≤ t ≤ T-2`` (the logits at t predict token t+1; the last has no target).

    These are exactly the positions whose site activation is replaced, so excluded
    positions (the attention sink at 0 by default) neither count nor get replaced.
    """
    B, T = shape
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, first_position : T - 1] = True
    return mask


def ce_sum(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """Summed next-token cross-entropy over masked predictions: ``(Σ CE, count)``.

    ``logits [B, T, V]`` at position t predict ``input_ids[:, t+1]``; ``mask [B, T]``.
    """
    logp = F_.log_softmax(logits[:, :-1].detach().double(), dim=-1)
    nll = -logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    m = mask[:, :-1]
    return float(nll[m].sum()), int(m.sum())


def kl_sum(clean_logits: torch.Tensor, other_logits: torch.Tensor, mask: torch.Tensor) -> float:
    """``Σ KL(p_clean ‖ p_other)`` of next-token distributions over masked positions."""
    lp = F_.log_softmax(clean_logits.detach().double(), dim=-1)
    lq = F_.log_softmax(other_logits.detach().double(), dim=-1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    return float(kl[mask].sum())


class DownstreamStats:
    """Sums over batches of one checkpoint's clean / spliced / zero-ablated CE and KL."""

    def __init__(self) -> None:
        self.ce_clean = self.ce_spliced = self.ce_zero = self.kl = 0.0
        self.kl_zero = 0.0
        self.n = 0

    def update(self, model, layer: int, input_ids: torch.Tensor, replacement: torch.Tensor | None,
               first_position: int) -> None:
        """Run the three forward passes on ``input_ids [B, T]``.

        ``replacement [B, T - first_position, d]`` is spliced at the kept positions
        (positions ``< first_position`` keep their clean value); ``None`` splices the clean
        activation back (a self-check). The zero-ablation replaces the same positions by 0.
        """
        mask = prediction_mask(tuple(input_ids.shape), first_position)
        with torch.no_grad():
            clean = model(input_ids=input_ids, use_cache=False).logits
            with patch_site(model, layer, _splice(replacement, first_position)):
                spliced = model(input_ids=input_ids, use_cache=False).logits
            with patch_site(model, layer, _splice(0.0, first_position)):
                zero = model(input_ids=input_ids, use_cache=False).logits
        c, n = ce_sum(clean, input_ids, mask)
        self.ce_clean += c
        self.ce_spliced += ce_sum(spliced, input_ids, mask)[0]
        self.ce_zero += ce_sum(zero, input_ids, mask)[0]
        self.kl += kl_sum(clean, spliced, mask)
        self.kl_zero += kl_sum(clean, zero, mask)
        self.n += n

    def result(self) -> dict:
        if self.n == 0:
            raise ValueError("no next-token predictions were evaluated")
        return ce_summary(self.ce_clean / self.n, self.ce_spliced / self.n, self.ce_zero / self.n,
                          kl=self.kl / self.n, kl_zero=self.kl_zero / self.n, predictions=self.n)


def ce_summary(clean: float, spliced: float, zero: float, **extra) -> dict:
    """ΔCE = spliced − clean and CE recovered = 1 − ΔCE / (zero − clean) (None if zero = clean)."""
    delta = spliced - clean
    gap = zero - clean
    return {
        "ce_clean": clean,
        "ce_spliced": spliced,
        "ce_zero": zero,
        "delta_ce": delta,
        "zero_gap": gap,  # CE recovered is ill-conditioned where this is near 0 (e.g. untrained checkpoints)
        "ce_recovered": (1 - delta / gap) if gap != 0 else None,
        **extra,
    }


def _splice(replacement: torch.Tensor | float | None, first_position: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A `patch_site` function that writes ``replacement`` at positions ≥ first_position."""

    def fn(h: torch.Tensor) -> torch.Tensor:
        if replacement is None:
            return h
        out = h.clone()
        if isinstance(replacement, float):
            out[:, first_position:] = replacement
        else:
            if replacement.shape != out[:, first_position:].shape:
                raise ValueError(f"replacement has shape {tuple(replacement.shape)}, "
                                 f"expected {tuple(out[:, first_position:].shape)}")
            out[:, first_position:] = replacement.to(out.dtype)
        return out

    return fn
