"""The variant registry: what each crosscoder variant is and can do, declared once, in its own module.

A variant registers one :class:`Variant`::

    register(Variant(name="topk", model=TopKCrosscoder, recipe=TopKRecipe, activation=TOPK,
                     config=TopKConfig, settings=TopKSettings,
                     checkpoint_parallel=CheckpointParallel(ShardedTopKCrosscoder, ShardedTopKRecipe)))

- ``model``: its :class:`~.model.Crosscoder` subclass (σ, the inference rule);
- ``recipe``: its :class:`~.recipe.Recipe` (loss, step, after-step work);
- ``config``: its own architecture settings, a :class:`VariantConfig` held by
  ``CrosscoderConfig.variant_config`` and saved in ``config.json`` (TopK's ``k``);
- ``settings``: its own training settings, a subclass of ``config`` held by
  ``TrainSettings.variant_settings`` (TopK's ``k``, ``k_init``, ``auxk_coeff`` …); the command
  line offers them as today's flat options (``--k``) and refuses one given for another variant;
- ``activation``: its inference rule as other codebases' files must represent it
  (:class:`Activation`): a file format declares the rules it can hold and so which variants it
  supports (:mod:`crosstime.interop.formats`), without naming any variant;
- ``checkpoint_parallel``: how it trains sharded along the checkpoint axis (:mod:`.parallel`),
  or None where it cannot.

Adding a variant touches its own module only. This module imports nothing of the crosscoder,
so every other module may ask it (no import cycle); it types the classes it holds loosely
(``type``) for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from crosstime.errors import CrosstimeError


class CrosscoderError(CrosstimeError):
    """Bad crosscoder settings or input; the message names the input and the fix."""


class VariantConfig(BaseModel):
    """A variant's own settings (none here); its subclasses declare them as pydantic fields."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting


@dataclass(frozen=True)
class Activation:
    """An inference rule, in words, with what a model of that rule exposes to a file writer.

    Two variants with the same rule are the same model at inference (Matryoshka is BatchTopK
    there), so a format that can hold one can hold the other."""

    name: str
    rule: str


RELU = Activation("relu", "f = ReLU(z)")
JUMPRELU = Activation("jumprelu", "f = z·H(z − θ_i), one learned threshold per feature (model.threshold [F], "
                                  "model.bandwidth)")
TOPK = Activation("topk", "per token, the k largest ReLU(z)·w keep ReLU(z) (model.k)")
BATCHTOPK = Activation("batchtopk", "f = ReLU(z) where ReLU(z)·w > t, one learned threshold (model.threshold 0-d, "
                                    "model.has_threshold, model.k); without one, the batch's k·B largest")


@dataclass(frozen=True)
class CheckpointParallel:
    """How a variant trains sharded along the checkpoint axis: its model class with the sums over
    checkpoints reaching across the group (``ShardedCrosscoder`` first in its bases), and its
    recipe with the reconstruction summed over the group (``ShardedRecipe`` first)."""

    model: type
    recipe: type


Part = Literal["config", "settings"]  # which of a variant's own classes: architecture or training


@dataclass(frozen=True)
class Variant:
    """A registered variant (the module docstring). ``model`` is a Crosscoder subclass and ``recipe``
    a Recipe subclass; ``settings`` must extend ``config`` (the training settings include the
    architecture ones, which the trainer copies into the crosscoder's config)."""

    name: str
    model: type
    recipe: type
    activation: Activation
    config: type[VariantConfig] = VariantConfig
    settings: type[VariantConfig] = VariantConfig
    checkpoint_parallel: CheckpointParallel | None = None

    def __post_init__(self) -> None:
        if not issubclass(self.settings, self.config):
            raise TypeError(f"variant {self.name!r}: its settings {self.settings.__name__} must extend its config "
                            f"{self.config.__name__} (the architecture settings are training settings too)")

    def config_from(self, settings: VariantConfig) -> VariantConfig:
        """The architecture part of the variant's training ``settings`` (its ``config``)."""
        return self.config(**{name: getattr(settings, name) for name in self.config.model_fields})

    def part(self, which: Part) -> type[VariantConfig]:
        """Its ``config`` or its ``settings`` class."""
        return self.config if which == "config" else self.settings

    def builds(self, cls: type) -> bool:
        """Whether ``cls`` is a model class of this variant (its own, or its checkpoint-parallel one)."""
        sharded = self.checkpoint_parallel
        return cls is self.model or (sharded is not None and cls is sharded.model)


VARIANTS: dict[str, Variant] = {}


def register(spec: Variant) -> Variant:
    """Add ``spec`` to the registry (a name registered twice is an error, not a silent replacement)."""
    if spec.name in VARIANTS:
        raise ValueError(f"a crosscoder variant {spec.name!r} is registered already")
    VARIANTS[spec.name] = spec
    return spec


def known_variants() -> list[str]:
    return sorted(VARIANTS)


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise CrosscoderError(f"unknown crosscoder variant {name!r}; known variants: {', '.join(known_variants())}")
    return VARIANTS[name]


def owners(setting: str, part: Part) -> list[str]:
    """The variants whose ``part`` declares ``setting``, in name order."""
    return [name for name, spec in sorted(VARIANTS.items()) if setting in spec.part(part).model_fields]


def _foreign(setting: str, spec: Variant, part: Part, shared: dict[str, Any]) -> str:
    """Why ``setting`` cannot be given for ``spec``: the variants it belongs to, every one (``shared``), or none."""
    mine = sorted(spec.part(part).model_fields)
    others = owners(setting, part)
    if setting in shared:
        return f"{setting} is a setting every variant shares: give it beside variant, not among {spec.name}'s own"
    if not others:
        return (f"{setting} is a setting of no crosscoder variant (those of {spec.name}: "
                f"{', '.join(mine) or 'none'})")
    return (f"{setting} (--{setting.replace('_', '-')}) is a setting of the {', '.join(others)} "
            f"variant{'s' if len(others) > 1 else ''}, not of {spec.name}: choose one of them as the variant, or "
            "leave it out")


def own_part(cls: type[BaseModel], data: Any, field: str, part: Part) -> Any:
    """Before-validation of ``cls``, a config holding ``variant`` and the variant's own settings in
    ``field``: a dict (or nothing) there becomes the variant's ``part`` class ("config" or
    "settings"); an instance must be of that class. A setting given for a variant it does not
    belong to is an error naming the variants it belongs to, at the top level as well (the one
    rule). An unknown variant is left to the ``variant`` field's own check."""
    if not isinstance(data, dict):
        return data
    name = data.get("variant", cls.model_fields["variant"].default)
    if not (isinstance(name, str) and name in VARIANTS):
        return {**data, field: VariantConfig()}  # the variant field's check names the known ones
    spec = VARIANTS[name]
    want = spec.part(part)
    shared = cls.model_fields
    stray = [k for k in data if k not in shared and owners(k, part)]
    if stray:
        wrong = "".join(f"; {_foreign(k, spec, part, shared)}" for k in stray if k not in want.model_fields)
        raise ValueError(f"{', '.join(stray)}: a variant's own settings go in {field} (e.g. "
                         f"{field}={{{stray[0]!r}: ...}}){wrong}")
    value = data.get(field)
    if isinstance(value, VariantConfig):
        if type(value) is not want:
            raise ValueError(f"{field} is a {type(value).__name__}, but variant {name} takes {want.__name__}")
        return data
    if not isinstance(value, dict | None):
        raise ValueError(f"{field} holds {type(value).__name__}: give the {name} variant's own settings by name")
    given = value or {}
    foreign = [k for k in given if k not in want.model_fields]
    if foreign:
        raise ValueError("; ".join(_foreign(k, spec, part, shared) for k in foreign))
    return {**data, field: want.model_validate(given)}
