"""Latent scaling: does a feature's decoder direction explain a checkpoint where its decoder says it is absent?

Minder et al. 2025 ("Overcoming sparsity artifacts in crosscoders", arXiv 2504.02922) show that
the L1 decoder-norm penalty can give a feature a near-zero decoder at a checkpoint whose
activations do carry it (*complete shrinkage*), or split one concept into a shared and an
exclusive latent that fire together (*latent decoupling*); either way RelDec calls the feature
exclusive to (or absent from) a checkpoint where it is present. Latent scaling measures, per
feature i and checkpoint m, how much of the feature's direction the activations carry when it
fires, independently of the decoder norm there.

Everything is in normalised space (``x = s_m · x_raw``, as trained), over the held-out rows of
the reconstruction metrics. ``u_i`` is the unit direction of ``W_dec[i, m*]`` at the feature's
peak checkpoint ``m*`` (largest decoder norm). The least-squares scales (the closed form of
``argmin_β Σ_x ‖β f_i(x) u_i − y_m(x)‖²``) are

    β[i, m]       = Σ_x f_i(x) ⟨u_i, x_m(x) − b_dec[m]⟩ / Σ_x f_i(x)²        (target: the activation)
    β_error[i, m] = Σ_x f_i(x) ⟨u_i, e_m(x) + f_i(x) W_dec[i, m]⟩ / Σ_x f_i(x)²
                  = Σ_x f_i(x) ⟨u_i, e_m(x)⟩ / Σ_x f_i(x)² + ⟨u_i, W_dec[i, m]⟩   (target: the error)

with ``e_m = x_m − x̂_m`` the reconstruction error: the feature's own contribution is added back,
so a decoder shrunk to zero at m still gets credit when the error carries the direction. The
activation target is centred on the crosscoder's decoder bias ``b_dec[m]`` (its estimate of the
constant part of x_m), so the mean activation's projection on ``u_i`` does not count as presence.
Where the decoder is right, β_error[i, m] is ⟨u_i, W_dec[i, m]⟩ ≤ ‖W_dec[i, m]‖ plus what the
L1-shrunk activation f_i leaves of the feature in the error, so its shares track RelDec; they rise
above RelDec's where the error carries u_i but the decoder does not (shrinkage). β rises also
where another latent reconstructs u_i at m while i fires (decoupling).

Shares: ``β⁺_m / Σ_k β⁺_k`` (negative β counts as absent), comparable with RelDec's shares of
norms; written as numbers, no rule reads them.

**The shrinkage flag** (:func:`read_scaling`) tests what it claims, on the scale of the feature's
own peak decoder norm ``P_i = max_k ‖W_dec[i, k]‖``: cell (i, m) is flagged where

- the decoder says *weak or absent* at m: ``‖W_dec[i, m]‖ < presence × P_i`` (presence as in
  :func:`crosstime.evaluate.decoder.presence_levels`; so never at the feature's own peak), and
- β_error says *present*: ``β_error[i, m] >= presence × P_i``, and
- by a margin: ``β_error[i, m] − ‖W_dec[i, m]‖ >= margin × P_i`` (a feature just under the
  presence line whose error adds nothing is not flagged),

for features fitted on at least ``min_tokens`` held-out rows. The error at m then carries the
feature's direction as strongly as a present decoder would: the decoder there was shrunk.
*Decoupling* is the same test passed by β alone (β also counts every co-active latent whose
decoder overlaps u_i; a weaker, separate signal).

**The null**: the same flag with a random unit direction ``r`` in place of u_i for every feature
(``draws`` seeded draws) and a decoder of the same norm along it, so ``β_error_null[i, m] =
Σ_x f_i ⟨r, e_m⟩ / Σ_x f_i² + ‖W_dec[i, m]‖`` (an upper bound of the real own term): what the flag
gives when the tested direction has nothing to do with the feature. The effect size is the mean
error-carried scale ``(β_error − own term) / P_i`` over the candidate cells (judged, weak or absent)
minus its null mean, in null standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from crosstime.artifacts import LatentScaling, ShrinkageNull
from crosstime.shares import relative_shares


NULL_DRAWS = 4  # random directions per feature for the shrinkage flag's null
NULL_SEED = 0


class ScalingStats:
    """Streaming sums of latent scaling over batches (float64 on the CPU).

    Built from the normalised-space decoder ``W_dec [F, M, d]`` and bias ``b_dec [M, d]``;
    ``update(x [B, M, d], x_hat [B, M, d], f [B, F])`` adds one batch, one checkpoint at a time
    (``[F, d]`` intermediates); :meth:`result` gives β and β_error ``[F, M]``, :meth:`null_carried`
    the error-carried scale along ``draws`` random unit directions per feature ``[draws, F, M]``.
    """

    def __init__(self, W_dec: torch.Tensor, b_dec: torch.Tensor, draws: int = NULL_DRAWS, seed: int = NULL_SEED):
        W_dec = W_dec.detach().float()
        F, M, d = W_dec.shape
        if b_dec.shape != (M, d):
            raise ValueError(f"expected b_dec [{M}, {d}] for W_dec [{F}, {M}, {d}], got {tuple(b_dec.shape)}")
        self.F, self.M, self.d = F, M, d
        norms = W_dec.norm(dim=-1)  # [F, M]
        peak = norms.argmax(dim=1)
        top = W_dec[torch.arange(F, device=W_dec.device), peak]  # [F, d]
        top_norm = top.norm(dim=-1, keepdim=True)
        self.has_direction = (top_norm.squeeze(1) > 0).cpu()  # an all-zero decoder has no direction
        self.U = top / torch.where(top_norm > 0, top_norm, torch.ones_like(top_norm))  # [F, d] unit rows
        random = torch.randn(draws, F, d, generator=torch.Generator().manual_seed(seed))  # on the CPU: seeded alike
        self.R = (random / random.norm(dim=-1, keepdim=True)).to(W_dec.device)  # [draws, F, d] unit rows
        self.b_dec = b_dec.detach().float()
        self.own = torch.einsum("fmd,fd->fm", W_dec.double(), self.U.double()).cpu()  # ⟨u_i, W_dec[i, m]⟩
        self.n = 0
        self.fired = torch.zeros(F, dtype=torch.int64)  # held-out rows on which each feature fired
        self.sum_f2 = torch.zeros(F, dtype=torch.float64)  # Σ f_i²
        self.activation = torch.zeros(F, M, dtype=torch.float64)  # Σ f_i ⟨u_i, x_m − b_m⟩
        self.error = torch.zeros(F, M, dtype=torch.float64)  # Σ f_i ⟨u_i, x_m − x̂_m⟩
        self.error_null = torch.zeros(draws, F, M, dtype=torch.float64)  # Σ f_i ⟨r, x_m − x̂_m⟩

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> None:
        if x.shape != x_hat.shape or x.dim() != 3 or x.shape[1:] != (self.M, self.d):
            raise ValueError(f"expected x, x_hat [B, {self.M}, {self.d}], got {tuple(x.shape)} and {tuple(x_hat.shape)}")
        if f.shape != (x.shape[0], self.F):
            raise ValueError(f"expected f [{x.shape[0]}, {self.F}], got {tuple(f.shape)}")
        U, R, b = self.U.to(x.device), self.R.to(x.device), self.b_dec.to(x.device)
        f = f.float()
        self.n += x.shape[0]
        self.fired += (f != 0).sum(0).cpu()
        self.sum_f2 += f.pow(2).sum(0, dtype=torch.float64).cpu()
        fT = f.T.contiguous()  # [F, B]
        centred, error = x.float() - b, (x - x_hat).float()  # [B, M, d] each
        for m in range(self.M):
            # Σ_x f_i(x) y(x) by a GEMM, [F, B] @ [B, d] -> [F, d] (one checkpoint's decoder size), then
            # ⟨u_i, ·⟩ row by row: no [B, F] product is formed
            self.activation[:, m] += torch.linalg.vecdot(fT @ centred[:, m], U).double().cpu()
            weighted = fT @ error[:, m]
            self.error[:, m] += torch.linalg.vecdot(weighted, U).double().cpu()
            self.error_null[:, :, m] += torch.linalg.vecdot(weighted[None], R).double().cpu()

    def _denominator(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fit [F] bool, Σ f² [F, 1] with 1 where not fitted)``."""
        fit = (self.sum_f2 > 0) & self.has_direction
        return fit, torch.where(fit, self.sum_f2, torch.ones_like(self.sum_f2))[:, None]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(beta, beta_error)``, each ``[F, M]`` float64, NaN for a feature that never fired on
        the rows seen or has an all-zero decoder (no direction to fit)."""
        fit, denom = self._denominator()
        beta = self.activation / denom
        beta_error = self.error / denom + self.own
        nan = torch.full_like(beta, float("nan"))
        return torch.where(fit[:, None], beta, nan), torch.where(fit[:, None], beta_error, nan)

    def null_carried(self) -> torch.Tensor:
        """``[draws, F, M]``: ``Σ f ⟨r, e_m⟩ / Σ f²`` along the random directions (NaN where not fitted)."""
        fit, denom = self._denominator()
        return torch.where(fit[None, :, None], self.error_null / denom, torch.tensor(float("nan"), dtype=torch.float64))


@dataclass
class ScalingReading:
    """Latent scaling of every feature, beside its decoder (``F`` features, ``M`` checkpoints).

    ``beta, beta_error [F, M]`` and their shares (NaN where unfitted); ``tokens [F]`` held-out rows
    each fit used; ``judged [F]`` whether the flag was applied (fitted on at least ``min_tokens``
    rows); ``candidate [F, M]`` judged cells where the decoder is weak or absent; ``shrinkage [F, M]``
    the flag (module docstring), ``decoupling [F, M]`` where only β passes it; ``null`` its null.
    """

    revisions: list[str]
    beta: torch.Tensor
    beta_error: torch.Tensor
    beta_share: torch.Tensor
    beta_error_share: torch.Tensor
    tokens: torch.Tensor
    judged: torch.Tensor
    candidate: torch.Tensor
    shrinkage: torch.Tensor
    decoupling: torch.Tensor
    null: ShrinkageNull
    presence: float
    margin: float
    min_tokens: int

    @property
    def shrinkage_features(self) -> torch.Tensor:
        """``[F]`` bool: flagged for shrinkage at some checkpoint."""
        return self.shrinkage.any(dim=1)

    def flag(self, i: int) -> str | None:
        """Feature i's flag: shrinkage, decoupling (only β passes), none; None where not judged."""
        if not bool(self.judged[i]):
            return None
        if bool(self.shrinkage[i].any()):
            return "shrinkage"
        return "decoupling" if bool(self.decoupling[i].any()) else "none"

    def feature_cells(self, i: int) -> dict[str, Any]:
        """Feature i's latent-scaling cells of features.csv (None = empty cell: never fired or no verdict)."""
        fitted = not bool(torch.isnan(self.beta[i]).any())

        def cells(values: torch.Tensor) -> list[float] | None:
            return values[i].tolist() if fitted else None

        def where(flags: torch.Tensor) -> str | None:
            return ";".join(r for r, on in zip(self.revisions, flags[i].tolist()) if on) or None

        return {
            "beta": cells(self.beta), "beta_error": cells(self.beta_error),
            "beta_share": cells(self.beta_share), "beta_error_share": cells(self.beta_error_share),
            "beta_tokens": int(self.tokens[i]),
            "scaling_flag": self.flag(i),
            "shrinkage_at": where(self.shrinkage),
            "decoupling_at": where(self.decoupling),
        }

    def summary(self) -> LatentScaling:
        """The ``latent_scaling`` section of evaluation.json's ``decoder``: counts, the null and the rule."""
        decoupling_only = self.decoupling.any(dim=1) & ~self.shrinkage_features
        return LatentScaling(
            shrinkage=int(self.shrinkage_features.sum()),
            shrinkage_cells=int(self.shrinkage.sum()),
            judged=int(self.judged.sum()),
            candidate_cells=int(self.candidate.sum()),
            shrinkage_at=dict(zip(self.revisions, self.shrinkage.sum(0).tolist())),
            decoupling=int(decoupling_only.sum()),
            decoupling_at=dict(zip(self.revisions, self.decoupling.sum(0).tolist())),
            presence_fraction=self.presence,
            margin=self.margin,
            min_tokens=self.min_tokens,
            null=self.null,
            rule=SHRINKAGE_RULE,
        )


SHRINKAGE_RULE = ("shrinkage at checkpoint m: the decoder norm there is < presence_fraction × the feature's largest "
                  "norm P (weak or absent; never the feature's peak) while beta_error >= presence_fraction × P and "
                  "beta_error − norm >= margin × P; judged for features fitted on >= min_tokens held-out rows. "
                  "decoupling: the same test passed by beta only. null: a random unit direction in place of the "
                  "decoder direction, with a decoder of the same norm along it")


def positive_shares(beta: torch.Tensor) -> torch.Tensor:
    """``β⁺_m / Σ_k β⁺_k`` per row of ``beta [F, M]``; NaN rows stay NaN, and a row with no positive β
    gets 0 everywhere (its direction is present nowhere; unlike RelDec's 1/M for an all-zero row)."""
    pos = beta.clamp(min=0)
    total = pos.sum(dim=1, keepdim=True)
    return torch.where(total > 0, relative_shares(pos), torch.where(torch.isnan(total), total, torch.zeros_like(pos)))


def passes(scale: torch.Tensor, norms: torch.Tensor, peak: torch.Tensor, presence: float,
           margin: float) -> torch.Tensor:
    """The flag's test of a fitted scale ``[..., F, M]`` against the decoder ``norms [F, M]`` and ``peak [F, 1]``
    (NaN compares False: an unfitted feature never passes)."""
    return (scale >= presence * peak) & (scale - norms >= margin * peak)


def null_reading(stats: ScalingStats, real_carried: torch.Tensor, norms: torch.Tensor, peak: torch.Tensor,
                 candidate: torch.Tensor, presence: float, margin: float) -> ShrinkageNull:
    """The flag along random directions, and the effect size of the real error-carried scale over it
    (``real_carried [F, M]``: ``β_error − ⟨u, W_dec⟩``; ``candidate [F, M]`` the cells judged)."""
    carried = stats.null_carried()  # [draws, F, M]
    flagged = candidate & passes(carried + norms, norms, peak, presence, margin)
    scale = torch.where(peak > 0, peak, torch.ones_like(peak))
    null = (carried / scale)[:, candidate]  # [draws, cells]
    real = (real_carried / scale)[candidate]
    n = int(candidate.sum())
    sd = float(null.std()) if null.numel() > 1 else 0.0
    null_mean, real_mean = (float(null.mean()), float(real.mean())) if n else (0.0, 0.0)
    return ShrinkageNull(draws=int(carried.shape[0]), flagged_cells_mean=float(flagged.sum((1, 2)).double().mean()),
                         carried_mean=null_mean, carried_sd=sd, carried_mean_real=real_mean,
                         effect_size=(real_mean - null_mean) / sd if n and sd > 0 else None)


def read_scaling(stats: ScalingStats, norms: torch.Tensor, revisions: list[str], *, presence: float, margin: float,
                 min_tokens: int) -> ScalingReading:
    """β, β_error, their shares, the shrinkage flag and its null (module docstring) from the streamed ``stats``
    and the decoder norms ``[F, M]`` of the same decoder."""
    beta, beta_error = stats.result()
    norms = norms.double()
    peak = norms.max(dim=1, keepdim=True).values
    judged = ~torch.isnan(beta).any(dim=1) & (stats.fired >= min_tokens) & (peak.squeeze(1) > 0)
    candidate = (norms < presence * peak) & judged[:, None]  # weak or absent: never the peak
    shrinkage = candidate & passes(beta_error, norms, peak, presence, margin)
    decoupling = candidate & passes(beta, norms, peak, presence, margin) & ~shrinkage
    null = null_reading(stats, beta_error - stats.own, norms, peak, candidate, presence, margin)
    return ScalingReading(revisions=list(revisions), beta=beta, beta_error=beta_error, beta_share=positive_shares(beta),
                          beta_error_share=positive_shares(beta_error), tokens=stats.fired.clone(), judged=judged,
                          candidate=candidate, shrinkage=shrinkage, decoupling=decoupling, null=null,
                          presence=presence, margin=margin, min_tokens=min_tokens)
