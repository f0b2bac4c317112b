"""Latent scaling: does a feature's decoder direction explain a checkpoint where RelDec says it is absent?

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
norms. The dispute rule (:func:`read_scaling`) uses the class threshold ``low`` of RelDec's
classes (:func:`crosstime.shares.classify_shares` counts checkpoint m in a feature's class when its
share there is at least ``low``): a feature's RelDec class is *disputed* at checkpoint m when its
RelDec share there is below ``low`` (RelDec leaves m out) while its β_error share there is at
least ``low`` and exceeds the RelDec share by at least ``margin`` (so a feature sitting at the
threshold is not disputed over a difference within noise): the error at m carries the feature's
direction, its decoder there was shrunk. Only features fitted on at least ``min_tokens`` held-out
rows are judged. The same test passed by the β share alone (``activation_disputed``) is a weaker,
separate signal of decoupling: β also counts every co-active latent whose decoder overlaps u_i
(on the demo run, d = 128, β at a checkpoint where RelDec's share is below 0.1 is typically half of
β at the peak), so it is reported but does not make the dispute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from crosstime.artifacts import LatentScaling
from crosstime.shares import relative_shares


class ScalingStats:
    """Streaming sums of latent scaling over batches (float64 on the CPU).

    Built from the normalised-space decoder ``W_dec [F, M, d]`` and bias ``b_dec [M, d]``;
    ``update(x [B, M, d], x_hat [B, M, d], f [B, F])`` adds one batch, one checkpoint at a time
    (``[F, d]`` intermediates); :meth:`result` gives β and β_error ``[F, M]``.
    """

    def __init__(self, W_dec: torch.Tensor, b_dec: torch.Tensor):
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
        self.b_dec = b_dec.detach().float()
        self.own = torch.einsum("fmd,fd->fm", W_dec.double(), self.U.double()).cpu()  # ⟨u_i, W_dec[i, m]⟩
        self.n = 0
        self.fired = torch.zeros(F, dtype=torch.int64)  # held-out rows on which each feature fired
        self.sum_f2 = torch.zeros(F, dtype=torch.float64)  # Σ f_i²
        self.activation = torch.zeros(F, M, dtype=torch.float64)  # Σ f_i ⟨u_i, x_m − b_m⟩
        self.error = torch.zeros(F, M, dtype=torch.float64)  # Σ f_i ⟨u_i, x_m − x̂_m⟩

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> None:
        if x.shape != x_hat.shape or x.dim() != 3 or x.shape[1:] != (self.M, self.d):
            raise ValueError(f"expected x, x_hat [B, {self.M}, {self.d}], got {tuple(x.shape)} and {tuple(x_hat.shape)}")
        if f.shape != (x.shape[0], self.F):
            raise ValueError(f"expected f [{x.shape[0]}, {self.F}], got {tuple(f.shape)}")
        U, b = self.U.to(x.device), self.b_dec.to(x.device)
        f = f.float()
        self.n += x.shape[0]
        self.fired += (f != 0).sum(0).cpu()
        self.sum_f2 += f.pow(2).sum(0, dtype=torch.float64).cpu()
        fT = f.T.contiguous()  # [F, B]
        centred, error = x.float() - b, (x - x_hat).float()  # [B, M, d] each
        for m in range(self.M):
            # Σ_x f_i(x) y(x) by a GEMM, [F, B] @ [B, d] -> [F, d] (one checkpoint's decoder size), then
            # ⟨u_i, ·⟩ row by row: no [B, F] product is formed
            for sums, target in ((self.activation, centred), (self.error, error)):
                weighted = fT @ target[:, m]
                sums[:, m] += torch.linalg.vecdot(weighted, U).double().cpu()

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(beta, beta_error)``, each ``[F, M]`` float64, NaN for a feature that never fired on
        the rows seen or has an all-zero decoder (no direction to fit)."""
        fit = (self.sum_f2 > 0) & self.has_direction
        denom = torch.where(fit, self.sum_f2, torch.ones_like(self.sum_f2))[:, None]
        beta = self.activation / denom
        beta_error = self.error / denom + self.own
        nan = torch.full_like(beta, float("nan"))
        return torch.where(fit[:, None], beta, nan), torch.where(fit[:, None], beta_error, nan)


@dataclass
class ScalingReading:
    """Latent scaling of every feature, beside its RelDec shares (``F`` features, ``M`` checkpoints).

    ``beta, beta_error [F, M]`` and their shares (NaN where unfitted); ``tokens [F]`` held-out rows
    each fit used; ``judged [F]`` whether the dispute rule was applied (fitted on at least
    ``min_tokens`` rows); ``disputed [F, M]`` where β_error disputes RelDec (shrinkage),
    ``activation_disputed [F, M]`` where only β does (candidate decoupling).
    """

    revisions: list[str]
    beta: torch.Tensor
    beta_error: torch.Tensor
    beta_share: torch.Tensor
    beta_error_share: torch.Tensor
    tokens: torch.Tensor
    judged: torch.Tensor
    disputed: torch.Tensor
    activation_disputed: torch.Tensor
    low: float
    margin: float
    min_tokens: int

    @property
    def disputed_features(self) -> torch.Tensor:
        """``[F]`` bool: RelDec's class disputed (by β_error) at some checkpoint."""
        return self.disputed.any(dim=1)

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
            "reldec_disputed": bool(self.disputed_features[i]) if bool(self.judged[i]) else None,
            "disputed_at": where(self.disputed),
            "activation_disputed_at": where(self.activation_disputed),
        }

    def summary(self) -> LatentScaling:
        """The ``latent_scaling`` section of evaluation.json's ``decoder``: counts and the rule."""
        by_activation = self.activation_disputed.any(dim=1) & ~self.disputed_features
        return LatentScaling(
            disputed=int(self.disputed_features.sum()),
            judged=int(self.judged.sum()),
            disputed_at=dict(zip(self.revisions, self.disputed.sum(0).tolist())),
            activation_disputed_only=int(by_activation.sum()),
            activation_disputed_at=dict(zip(self.revisions, self.activation_disputed.sum(0).tolist())),
            low=self.low,
            margin=self.margin,
            min_tokens=self.min_tokens,
            rule=DISPUTE_RULE,
        )


DISPUTE_RULE = ("RelDec disputed at checkpoint m: RelDec share < low there while the beta_error share is >= low and "
                "exceeds the RelDec share by >= margin (shares = beta+_m / sum_k beta+_k); judged for features fitted "
                "on >= min_tokens held-out rows. activation_disputed: the same test passed by the beta share only")


def positive_shares(beta: torch.Tensor) -> torch.Tensor:
    """``β⁺_m / Σ_k β⁺_k`` per row of ``beta [F, M]``; NaN rows stay NaN, and a row with no positive β
    gets 0 everywhere (its direction is present nowhere; unlike RelDec's 1/M for an all-zero row)."""
    pos = beta.clamp(min=0)
    total = pos.sum(dim=1, keepdim=True)
    return torch.where(total > 0, relative_shares(pos), torch.where(torch.isnan(total), total, torch.zeros_like(pos)))


def read_scaling(stats: ScalingStats, reldec_shares: torch.Tensor, revisions: list[str], *, low: float, margin: float,
                 min_tokens: int) -> ScalingReading:
    """β, β_error, their shares and the disputes of RelDec (module docstring) from the streamed ``stats``
    and the RelDec shares ``[F, M]`` of the same decoder."""
    beta, beta_error = stats.result()
    beta_share, beta_error_share = positive_shares(beta), positive_shares(beta_error)
    reldec = reldec_shares.double()
    judged = ~torch.isnan(beta).any(dim=1) & (stats.fired >= min_tokens)
    absent = (reldec < low) & judged[:, None]  # RelDec's class leaves checkpoint m out

    def present(share: torch.Tensor) -> torch.Tensor:  # NaN compares False: an unfitted feature is never present
        return (share >= low) & (share - reldec >= margin)

    disputed = absent & present(beta_error_share)
    activation_disputed = absent & present(beta_share) & ~disputed
    return ScalingReading(revisions=list(revisions), beta=beta, beta_error=beta_error, beta_share=beta_share,
                          beta_error_share=beta_error_share, tokens=stats.fired.clone(), judged=judged,
                          disputed=disputed, activation_disputed=activation_disputed, low=low, margin=margin,
                          min_tokens=min_tokens)
