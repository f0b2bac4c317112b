"""How a variant trains: one :class:`Recipe` per variant, registered with its model class.

The trainer (:mod:`.training`) knows no variant by name. Each step it asks the variant's
recipe to

- ``before_step``: set per-step state (TopK's annealed ``k``);
- ``step``: forward and backward of the variant's loss, gradients into ``p.grad``
  (default: autograd of :meth:`Recipe.forward` + :meth:`Recipe.loss`; ReLU overrides it with
  the hand-derived fused step); returns a :class:`StepOutput` of this rank's numbers;
- ``after_step``: work that reads the step's outcome (BatchTopK's threshold estimate), after
  the outputs were reduced across ranks;
- ``metrics``: extra values for ``metrics.jsonl`` (``k``, ``threshold``);
- ``finish``: leave the model in its inference state.

Before any of that, ``settings_problems`` names the settings the variant cannot train with
(TopK's k larger than the dictionary, …): :class:`~.settings.TrainSettings` asks it when the
settings are made, the trainer again once the data's width (and so F) is known.

A new variant is one module: a :class:`~crosstime.crosscoder.model.Crosscoder` subclass with
its ``activate``, a recipe and its own settings, joined by ``register(Variant(...))``
(:mod:`.registry`). A recipe reads the variant's own settings as ``settings.variant_settings``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from crosstime.crosscoder import losses

if TYPE_CHECKING:
    from crosstime.crosscoder.model import Crosscoder
    from crosstime.crosscoder.settings import TrainSettings


@dataclass
class StepContext:
    """What one step may use: the settings, where it is in training, the sparsity coefficient
    of this step (warm-up schedule) and the dead features ``dead: bool [F]`` (on the device)."""

    settings: TrainSettings
    step: int
    total: int
    coeff: float
    dead: torch.Tensor


@dataclass
class Forward:
    """One forward pass: pre-activations ``z [B, F]``, reconstruction ``x_hat [B, M, d]``, and the
    features, dense (``f [B, F]``) or sparse (``sparse``: a ``SparseFeatures``)."""

    z: torch.Tensor
    x_hat: torch.Tensor
    f: torch.Tensor | None = None
    sparse: Any = None


@dataclass
class Loss:
    """The loss terms (differentiable ``total``; the rest for the metrics) and the step's activity."""

    total: torch.Tensor
    recon: torch.Tensor
    sparsity: torch.Tensor
    aux: torch.Tensor
    l0: torch.Tensor  # mean active features per token
    fired: torch.Tensor  # bool [F]
    reduce_min: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class StepOutput:
    """This rank's numbers of one step (0-d tensors unless noted), detached.

    ``e2 [M]``: Σ (x̂ − x)² per checkpoint; ``fired bool [F]``; ``reduce_min``: values the
    trainer reduces across ranks by minimum before ``after_step`` (e.g. the smallest score kept).
    """

    recon: torch.Tensor
    sparsity: torch.Tensor
    aux: torch.Tensor
    loss: torch.Tensor
    l0: torch.Tensor
    fired: torch.Tensor
    e2: torch.Tensor
    reduce_min: dict[str, torch.Tensor] = field(default_factory=dict)


def dense_activity(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(l0, fired)`` of non-negative features ``f [B, F]``."""
    active = f.detach().float().sign()  # f >= 0 here; sign() is far cheaper than bool reductions on CPU
    return active.sum() / f.shape[0], active.sum(0) > 0


class Recipe(ABC):
    """The base recipe: autograd of the variant's loss (subclasses define :meth:`loss`)."""

    dec_init_norm: ClassVar[float] = 0.08  # decoder row norm at initialisation unless the settings give one

    def __init__(self, settings: TrainSettings):
        self.settings = settings

    @classmethod
    def settings_problems(cls, settings: TrainSettings, n_features: int | None, d_model: int | None) -> list[str]:
        """What in ``settings`` this variant cannot train with, in words naming the fix (none by default).

        ``n_features`` (F) and ``d_model`` are None while unknown (F comes from the data's width
        when the settings give no ``n_features``)."""
        return []

    def before_step(self, model: Crosscoder, ctx: StepContext) -> None:
        """Per-step state before the forward pass (nothing by default)."""

    def forward(self, model: Crosscoder, x: torch.Tensor) -> Forward:
        """x [B, M, d] -> the pass the loss is computed from (dense by default)."""
        z = model.pre_acts(x)
        f = model.activate(z)
        return Forward(z=z, x_hat=model.decode(f), f=f)

    @abstractmethod
    def loss(self, model: Crosscoder, x: torch.Tensor, fwd: Forward, ctx: StepContext) -> Loss:
        """The variant's loss terms from one forward pass."""

    def step(self, model: Crosscoder, x: torch.Tensor, ctx: StepContext) -> StepOutput:
        """Zero the gradients, forward (bf16 autocast when asked), loss, backward."""
        model.zero_grad(set_to_none=False)
        bf16 = self.settings.precision == "bf16"
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            fwd = self.forward(model, x)
        fwd.z, fwd.x_hat = fwd.z.float(), fwd.x_hat.float()
        if fwd.f is not None:
            fwd.f = fwd.f.float()
        terms = self.loss(model, x, fwd, ctx)
        terms.total.backward()
        with torch.no_grad():
            e2 = (fwd.x_hat - x).pow(2).sum(dim=(0, 2))
        return StepOutput(recon=terms.recon.detach(), sparsity=terms.sparsity.detach(), aux=terms.aux.detach(),
                          loss=terms.total.detach(), l0=terms.l0, fired=terms.fired, e2=e2,
                          reduce_min=terms.reduce_min)

    def after_step(self, model: Crosscoder, out: StepOutput, ctx: StepContext) -> None:
        """Work that reads the step's (rank-reduced) outcome (nothing by default)."""

    def metrics(self, model: Crosscoder) -> dict[str, float]:
        """Extra values for this step's line of ``metrics.jsonl``."""
        return {}

    def finish(self, model: Crosscoder) -> None:
        """Leave the model as inference expects it (nothing by default)."""

    def reconstruction(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return losses.reconstruction_loss(x, x_hat, self.settings.recon_reduce)
