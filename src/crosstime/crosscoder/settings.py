"""How to train a crosscoder (:class:`TrainSettings`) and the train stage's config (:class:`TrainConfig`).

The settings every variant shares are fields of :class:`TrainSettings`; a variant's own (TopK's
``k``, JumpReLU's ``jumprelu_penalty`` …) are its registered settings class, held in
``variant_settings`` (:mod:`.registry`)::

    TrainSettings(variant="topk", variant_settings={"k": 16}, steps=500)
    TrainSettings(variant="topk", variant_settings=TopKSettings(k=16), steps=500)   # the same

A setting given for a variant it does not belong to is an error naming the variants it belongs
to. The command line offers every variant's settings as flat options (``--k 16``) and puts them
under ``variant_settings``; ``RUN/config.yaml`` and config.json's ``training`` record them there.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from crosstime.crosscoder.registry import VariantConfig, known_variants, own_part, variant
from crosstime.stage import DEVICE_HELP, Count, Device, StageConfig

# Settings that do not change the weights: they may differ when resuming.
EXECUTION_FIELDS = frozenset({"progress", "wandb_project", "tensorboard", "log_every", "save_every", "val_every",
                              "val_batches", "device"})


VARIANT_SETTINGS = "variant_settings"  # TrainSettings' field holding the variant's own settings

# TrainConfig's settings of streaming training (crosscoder/streaming.py)
STREAM_FIELDS = frozenset({"series", "layer", "corpus", "context_len", "buffer_rows", "refill_frac", "keep_store",
                           "model_device", "harvest_batch_size"})


def flat_settings(recorded: dict[str, Any]) -> dict[str, Any]:
    """Recorded settings on one level, the variant's own beside the shared ones: how a resume state
    compares them, whether it was saved before they were nested (flat, every variant's settings
    there; the caller keeps those that still apply) or after."""
    own = recorded.get(VARIANT_SETTINGS) or {}
    return {**{k: v for k, v in recorded.items() if k != VARIANT_SETTINGS}, **own}


class TrainSettings(BaseModel):
    """How to train a crosscoder (everything but where: see :class:`TrainConfig` for the stage)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting

    # architecture
    variant: str = Field("relu", description="relu | topk | batchtopk | jumprelu | matryoshka (or a registered variant)")
    variant_settings: SerializeAsAny[VariantConfig] = Field(
        default_factory=VariantConfig, description="the variant's own settings, its registered settings class "
        "(a dict of them is validated by it)")
    n_features: int | None = Field(None, description="F, dictionary size (default: expansion × d)")
    expansion: int = Field(8, ge=1, description="F = expansion × d when n_features is not given (paper: 16384 = 8 × 2048)")
    l1_norm: Literal["sum", "concat"] = Field("sum", description="relu: Σ_m ‖W_dec[i,m]‖ (sum) or concatenated norm")
    dec_init_norm: float | None = Field(None, gt=0, description="decoder row norm at init (default: the variant's: "
                                                                "0.08, or 1.0 for topk/batchtopk)")
    # optimisation
    lr: float = Field(5e-5, gt=0, description="learning rate")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's β1, β2")
    batch_size: int = Field(4096, ge=1, description="global batch (rows), split across ranks")
    steps: int | None = Field(None, ge=1, title="training steps",
                              description="training steps (default: tokens // batch_size)")
    tokens: Count = Field(400_000_000, ge=1, title="training rows",
                          description="training rows when steps is not given (e.g. 400M)")
    lr_decay_frac: float = Field(0.2, ge=0, le=1, description="linear decay to 0 over this final share of steps")
    sparsity_coeff: float = Field(2.0, ge=0, description="λ of the L1 (relu) / L0 (jumprelu) penalty")
    sparsity_warmup_frac: float = Field(0.05, ge=0, le=1, description="λ ramps from 0 over this first share")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the gradient norm to this (None: no clipping)")
    recon_reduce: Literal["sum", "mean"] = Field(
        "sum", description="reconstruction: sum over checkpoints (papers) or mean (keeps λ comparable across M)")
    seed: int = Field(0, description="seed of the initialisation and the batch order")
    dead_tokens: Count = Field(10_000_000, ge=1, description="a feature is dead after this many rows without firing")
    # data
    revisions: list[str] | None = Field(None, description="store checkpoints to train on (default: all)")
    normalise: bool = Field(True, description="scale store activations by s_m = sqrt(d)/E‖x_m‖")
    # execution
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast matmuls, fp32 master weights")
    device: Device = Field("auto", description=DEVICE_HELP)
    checkpoint_parallel: int = Field(1, ge=1, description="ranks sharing the checkpoint axis (torchrun; divides the "
                                     "processes and M; relu): each holds M/P checkpoints' weights")
    save_every: int = Field(500, ge=1, description="steps between resume states")
    log_every: int = Field(1, ge=1, description="steps between lines of metrics.jsonl")
    val_every: int = Field(100, ge=0, description="steps between held-out validations (0: never)")
    val_batches: int = Field(30, ge=1, description="held-out batches per validation")
    progress: bool = Field(True, description="show a progress bar")
    wandb_project: str | None = Field(None, description="log to Weights & Biases (optional, needs `wandb`)")
    tensorboard: bool = Field(False, description="log to TensorBoard under the crosscoder's tensorboard/ "
                                                 "(needs `tensorboard`)")

    @model_validator(mode="before")
    @classmethod
    def _variant_settings(cls, data: Any) -> Any:
        return own_part(cls, data, VARIANT_SETTINGS, "settings")

    @field_validator("variant")
    @classmethod
    def _known_variant(cls, v: str) -> str:
        if v not in known_variants():
            raise ValueError(f"unknown crosscoder variant {v!r}; known variants: {', '.join(known_variants())}")
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        if self.n_features is not None and self.n_features < 1:
            raise ValueError(f"n_features (F) = {self.n_features}: the dictionary needs at least one feature")
        problems = self.problems(self.n_features, None)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def problems(self, n_features: int | None, d_model: int | None) -> list[str]:
        """Settings that cannot train together, in words naming the fix: the general ones and the
        variant's (:meth:`~.recipe.Recipe.settings_problems`). Asked when the settings are made
        (F known only when ``n_features`` is given) and by the trainer once the data's width is known."""
        out = []
        if not all(0 <= b < 1 for b in self.adam_betas):
            out.append(f"adam_betas = {tuple(self.adam_betas)}: each of Adam's β must be in [0, 1)")
        if self.revisions is not None:
            if not self.revisions:
                out.append("revisions is an empty list; name at least one checkpoint, or leave it out to train on all")
            repeated = sorted({r for r in self.revisions if self.revisions.count(r) > 1})
            if repeated:
                out.append(f"revisions names {repeated} more than once; name each checkpoint once")
        return out + variant(self.variant).recipe.settings_problems(self, n_features, d_model)

    def total_steps(self) -> int:
        return self.steps if self.steps is not None else max(1, self.tokens // self.batch_size)

    def weight_settings(self) -> dict[str, Any]:
        """The settings the weights depend on (a resume must repeat them)."""
        dump = self.model_dump(mode="json")
        return {k: dump[k] for k in TrainSettings.model_fields if k not in EXECUTION_FIELDS}


class TrainConfig(TrainSettings, StageConfig):
    """The train stage: RUN/activations -> RUN/crosscoder (shared by ``crosstime train`` and :func:`train`)."""

    stage: ClassVar[str] = "train"
    execution: ClassVar[frozenset[str]] = EXECUTION_FIELDS | {"model_device", "harvest_batch_size"}

    # streaming (crosscoder/streaming.py): with a series, train from checkpoints kept loaded, no store
    series: str | None = Field(None, description="stream: harvest this checkpoint series while training (no "
                                                 "RUN/activations needed); --tokens is the corpus to harvest")
    layer: int | None = Field(None, ge=0, description="stream: the site, output of decoder block L")
    corpus: str | None = Field(None, description="stream: corpus as for `crosstime harvest` (default: the series "
                                                 "folder's corpus/)")
    context_len: int | None = Field(None, ge=2, description="stream: tokens per context (default as the harvest's)")
    buffer_rows: Count = Field(1 << 20, ge=1, description="stream: rows (tokens × all checkpoints) the shuffled "
                                                          "in-memory buffer holds")
    refill_frac: float = Field(0.5, gt=0, le=1, description="stream: share of the buffer consumed and refilled at "
                                                            "a time (1/refill_frac must be a whole number)")
    keep_store: bool = Field(False, description="stream: also write what is harvested as RUN/activations")
    model_device: Device | None = Field(None, description="stream: where the checkpoints run (default: the "
                                                          "training device)")
    harvest_batch_size: int = Field(16, ge=1, description="stream: contexts per forward pass")

    def output_settings(self) -> dict[str, Any]:
        out = super().output_settings()
        if self.series is None:  # a training on RUN/activations: the streaming settings change nothing
            out = {k: v for k, v in out.items() if k not in STREAM_FIELDS}
            if self.steps is not None:  # --steps decided the length: --tokens (unused) is not recorded
                out.pop("tokens")
        return out

    @model_validator(mode="after")
    def _stream_settings(self) -> TrainConfig:
        if (self.series is None) != (self.layer is None):
            raise ValueError("streaming needs both --series and --layer (or neither, to train on RUN/activations)")
        if abs(1 / self.refill_frac - round(1 / self.refill_frac)) > 1e-9:
            raise ValueError(f"refill_frac = {self.refill_frac}: 1/refill_frac must be a whole number (0.5, 0.25, 1)")
        return self
