"""Sparse products over a step's active entries, shared by the hand-derived steps.

Once a crosscoder has learnt to be sparse, a few percent of the ``[B, F]`` activations are non-zero
(trained ReLU crosscoders: L0 ≈ 45 of F = 4,096, about 1%). Four of the ReLU step's five GEMMs
then multiply mostly zeros: the decode ``f W_dec``, ``∂W_dec = fᵀ g``, ``∂f = g W_decᵀ`` (needed only
where ``f > 0``: ReLU passes no gradient elsewhere) and ``∂W_enc = Xᵀ ∂z``. Over the ``nnz`` active
entries each costs ``2·nnz·M·d`` instead of ``2·B·F·M·d``, as MKL's sparse × dense products (CSR) and
``sampled_addmm``. Those run at a fraction of the dense GEMM's rate (each entry streams a whole row
of ``M·d`` floats, a GEMM reuses its blocks from cache), so the sparse path pays only below a density:
:data:`SPARSE_BELOW`, measured in ``benchmarks/bench_crosscoder.py --density`` (RESULTS.md). Both paths
compute the same gradients (tests), so the choice changes time, not the step.

Entries are kept twice: feature-major (``ST``: CSR ``[F, B]``, for ``∂W_dec``, ``∂W_enc`` and the
sampled product) and token-major (``S``: CSR ``[B, F]``, for the decode). The CPU only: CUDA's
sparse products are not checked here, so the steps keep their dense GEMMs there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

SPARSE_BELOW = 0.08  # active share below which the sparse products are faster: at 8% they took 0.75–0.84× the dense step,
# at 12% 1.02–1.96× (relu and jumprelu, d = 128 and 768; RESULTS.md "sparse products")


def csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix from entries sorted by ``rows`` (duplicates within a row are summed by every product)."""
    counts = torch.bincount(rows, minlength=shape[0])
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rows.device)
    torch.cumsum(counts, 0, out=crow[1:])
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are tested
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, cols, values, shape)


def worth_it(nnz: torch.Tensor, shape: tuple[int, int]) -> bool:
    """Whether ``nnz`` (a count, on the activations' device) entries of a ``shape`` activation matrix are
    sparse enough for the sparse products; never off the CPU (no sync with a GPU either)."""
    return nnz.device.type == "cpu" and float(nnz) < SPARSE_BELOW * shape[0] * shape[1]


@dataclass
class Entries:
    """The entries of one step's activations: feature and token (long [n], feature-major), f's value
    there (float [n]; zero where an entry is kept for its gradient only) and the two CSR layouts."""

    feat: torch.Tensor
    tok: torch.Tensor
    value: torch.Tensor
    ST: torch.Tensor  # CSR [F, B]
    S: torch.Tensor  # CSR [B, F]

    @classmethod
    def where(cls, keep: torch.Tensor, fT: torch.Tensor) -> Entries:
        """The entries where ``keep`` [F, B] is non-zero, with f's values from ``fT`` [F, B]."""
        F, B = fT.shape
        feat, tok = keep.nonzero().unbind(1)  # row-major: sorted by feature
        value = fT[feat, tok]
        order = torch.argsort(tok, stable=True)
        return cls(feat, tok, value, csr(feat, tok, value, (F, B)),
                   csr(tok[order], feat[order], value[order], (B, F)))

    def error(self, W_dec: torch.Tensor, b_dec: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """``x̂ − x = f W_dec + b_dec − X`` [B, M·d] from W_dec [F, M·d], b_dec [M·d], X [B, M·d]."""
        return torch.sparse.mm(self.S, W_dec).add_(b_dec).sub_(X)

    def add_decoder_grad_(self, gW_dec: torch.Tensor, g: torch.Tensor, beta: float = 1.0) -> None:
        """``gW_dec = beta · gW_dec + fᵀ g`` in place: gW_dec [F, M·d], g = ∂L/∂x̂ [B, M·d]; beta 0 overwrites."""
        torch.addmm(gW_dec, self.ST, g, beta=beta, out=gW_dec)

    def grad_f(self, W_dec: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``∂f = g W_decᵀ`` at the entries only (float [n], feature-major)."""
        return torch.sparse.sampled_addmm(self.ST, W_dec, g.t(), beta=0.0).values()

    def encoder_grads(self, X: torch.Tensor, dz: torch.Tensor, gW_enc: torch.Tensor, gb_enc: torch.Tensor,
                      scratch: torch.Tensor) -> None:
        """Write ``gW_enc = Xᵀ ∂z`` [M·d, F] and ``gb_enc = Σ_b ∂z`` [F] from ``dz``, ∂z at the entries
        (float [n]); ``scratch`` [F, M·d] takes ``∂W_encᵀ`` first (MKL's fast layout, as the dense step)."""
        F, B = self.ST.shape
        torch.addmm(scratch, csr(self.feat, self.tok, dz, (F, B)), X, beta=0.0, out=scratch)
        gW_enc.copy_(scratch.t())
        gb_enc.zero_().index_add_(0, self.feat, dz)
