"""The crosscoder: one shared sparse dictionary over M checkpoints' activations.

Shapes (B batch, M checkpoints, d width, F features)::

    W_enc [M, d, F]   b_enc [F]   W_dec [F, M, d]   b_dec [M, d]
    encode: x [B, M, d] -> f [B, F]        f = σ(Σ_m x_m W_enc[m] + b_enc)
    decode: f [B, F]    -> x̂ [B, M, d]     x̂_m = f W_dec[:, m] + b_dec[m]

Both directions are one GEMM on the flattened ``[B, M·d]`` view (not a loop over
checkpoints). σ is the variant's activation; a variant is a model class and a training
recipe registered together by name (:func:`register`; the built-ins are in :mod:`.relu`,
:mod:`.topk`, :mod:`.jumprelu`), recorded in ``config.json`` and in the weights' header so
:func:`load` rebuilds it. M = 1 is an ordinary sparse autoencoder.

Normalisation. Crosscoders are trained on activations scaled per checkpoint,
``x_norm[m] = s_m · x_raw[m]`` (the store's ``scales``). A saved crosscoder keeps its weights
in that normalised space (where RelDec is defined) and records ``scales`` and ``revisions``
in ``config.json`` (a crosscoder trained on raw activations records ``normalised: false``
and scales of 1). :meth:`Crosscoder.folded` returns a copy with the scales folded into the
weights, which maps raw activations to raw reconstructions::

    W_enc[m] *= s_m      W_dec[:, m] /= s_m      b_dec[m] /= s_m

Folding changes nothing the model computes: features are equal, reconstructions are
``x̂_raw = x̂_norm / s``, and the decoder norms every variant ranks or penalises by are
always measured in normalised space (``decoder_norms`` multiplies the fold back in), so a
folded BatchTopK keeps the same features at the same threshold. Folding twice is refused.

Every stage opens a trained crosscoder with :func:`load_for_store`, which checks it
against the activation store it reads (one check, one tolerance: :data:`SCALE_RTOL`).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from torch import nn

from crosstime.errors import CrosstimeError
from crosstime.files import atomic_path, write_json

if TYPE_CHECKING:
    from crosstime.crosscoder.recipe import Recipe
    from crosstime.store import ActivationStore

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# A crosscoder's recorded scales and its store's may differ by float noise of a re-harvest on
# other hardware (measured ≤ 1e-5); anything larger means other activations.
SCALE_RTOL = 1e-3


class CrosscoderError(CrosstimeError):
    """Bad crosscoder settings or input; the message names the input and the fix."""


@dataclass(frozen=True)
class Variant:
    """A registered variant: its model class (σ) and its training recipe (loss, step, after-step work)."""

    name: str
    model: type[Crosscoder]
    recipe: type[Recipe]


VARIANTS: dict[str, Variant] = {}


def register(name: str, recipe: type[Recipe]):
    """Class decorator on a :class:`Crosscoder` subclass: variant ``name`` trains with ``recipe``."""

    def deco(cls: type[Crosscoder]) -> type[Crosscoder]:
        cls.variant = name
        VARIANTS[name] = Variant(name, cls, recipe)
        return cls

    return deco


def known_variants() -> list[str]:
    return sorted(VARIANTS)


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise CrosscoderError(f"unknown crosscoder variant {name!r}; known variants: {', '.join(known_variants())}")
    return VARIANTS[name]


class CrosscoderConfig(BaseModel):
    """Architecture of one crosscoder; saved as ``config.json`` beside the weights."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting

    variant: str = Field("relu", description="activation σ: a registered variant (relu, topk, batchtopk, jumprelu)")
    n_checkpoints: int = Field(description="M, checkpoints encoded jointly (1 = a plain SAE)")
    d_model: int = Field(description="d, width of one checkpoint's activation")
    n_features: int = Field(description="F, dictionary size")
    dec_init_norm: float = Field(0.08, gt=0, description="L2 norm of every decoder row W_dec[i, m] at init")
    seed: int = Field(0, description="seed of the initialisation")
    l1_norm: Literal["sum", "concat"] = Field(
        "sum", description="per-feature decoder weight: Σ_m ‖W_dec[i,m]‖ (sum) or ‖W_dec[i]‖ of the concatenation")
    k: int = Field(32, ge=1, description="topk/batchtopk: active features per token (batch average for batchtopk)")
    jumprelu_threshold_init: float = Field(0.001, gt=0, description="jumprelu: initial threshold θ")
    jumprelu_bandwidth: float = Field(0.001, gt=0, description="jumprelu: STE kernel width ε")
    revisions: list[str] | None = Field(None, description="the checkpoints, in order (names for W_dec[:, m])")
    scales: list[float] | None = Field(None, description="per-checkpoint factors s_m applied to raw activations")
    normalised: bool = Field(True, description="scales are the store's s_m (true) or 1 for raw activations (false)")

    @field_validator("variant")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in VARIANTS:
            raise ValueError(f"unknown crosscoder variant {v!r}; known variants: {', '.join(known_variants())}")
        return v

    @model_validator(mode="after")
    def _sizes(self) -> CrosscoderConfig:
        if self.n_checkpoints < 1:
            raise ValueError(f"n_checkpoints (M) = {self.n_checkpoints}: a crosscoder needs at least one checkpoint")
        if self.d_model < 1:
            raise ValueError(f"d_model = {self.d_model}: activations need a positive width")
        if self.n_features < 1:
            raise ValueError(f"n_features (F) = {self.n_features}: the dictionary needs at least one feature")
        if self.revisions is not None and len(self.revisions) != self.n_checkpoints:
            raise ValueError(f"{len(self.revisions)} revisions for n_checkpoints = {self.n_checkpoints}")
        if self.scales is not None:
            if len(self.scales) != self.n_checkpoints:
                raise ValueError(f"{len(self.scales)} scales for n_checkpoints = {self.n_checkpoints}")
            if not all(math.isfinite(s) and s > 0 for s in self.scales):
                raise ValueError(f"scales must be finite and positive, got {self.scales}")
            if not self.normalised and any(s != 1.0 for s in self.scales):
                raise ValueError(f"a crosscoder of raw activations (normalised = false) has scales 1, got {self.scales}")
        return self


class Crosscoder(nn.Module):
    """Base crosscoder (see the module docstring); a registered variant defines :meth:`activate`.

    Parameters: ``W_enc [M, d, F]``, ``W_dec [F, M, d]``, ``b_enc [F]``, ``b_dec [M, d]``.
    Buffer ``fold [M]``: the scales folded into the weights (ones when unfolded).
    """

    variant: ClassVar[str] = ""

    def __init__(self, config: CrosscoderConfig):
        super().__init__()
        if config.variant != type(self).variant:
            raise CrosscoderError(f"{type(self).__name__} is the {type(self).variant or 'unregistered'} variant, but "
                                  f"its config says {config.variant!r}; build models with crosscoder.build(config)")
        self.config = config
        M, d, F = config.n_checkpoints, config.d_model, config.n_features
        self.W_enc = nn.Parameter(torch.empty(M, d, F))
        self.W_dec = nn.Parameter(torch.empty(F, M, d))
        self.b_enc = nn.Parameter(torch.zeros(F))
        self.b_dec = nn.Parameter(torch.zeros(M, d))
        self.register_buffer("fold", torch.ones(M))
        self.reset_parameters()

    # -- construction --------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Decoder rows random with norm ``dec_init_norm``, encoder = decoder transpose, zero biases."""
        g = torch.Generator().manual_seed(self.config.seed)
        F, M, d = self.W_dec.shape
        w = torch.randn(F, M, d, generator=g)
        w *= self.config.dec_init_norm / w.norm(dim=-1, keepdim=True)
        self.W_dec.copy_(w)
        self.W_enc.copy_(w.permute(1, 2, 0))
        self.b_enc.zero_()
        self.b_dec.zero_()
        self.fold.fill_(1.0)

    @property
    def n_checkpoints(self) -> int:
        return self.W_dec.shape[1]

    @property
    def d_model(self) -> int:
        return self.W_dec.shape[2]

    @property
    def n_features(self) -> int:
        return self.W_dec.shape[0]

    @property
    def revisions(self) -> list[str] | None:
        return self.config.revisions

    @property
    def scales(self) -> list[float] | None:
        return self.config.scales

    @property
    def is_folded(self) -> bool:
        return bool((self.fold != 1).any())

    @property
    def inference_rule(self) -> str:
        """In words: which features fire in eval mode (recorded by every stage that encodes)."""
        raise NotImplementedError(f"{type(self).__name__} must describe its inference rule")

    @property
    def inference_depends_on_batch(self) -> bool:
        """Whether a token's features depend on the other tokens of its batch in eval mode."""
        return False

    def extra_repr(self) -> str:
        c = self.config
        return f"variant={c.variant}, M={c.n_checkpoints}, d={c.d_model}, F={c.n_features}, folded={self.is_folded}"

    # -- the computation -----------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        M, d = self.n_checkpoints, self.d_model
        if x.dim() != 3 or x.shape[1] != M or x.shape[2] != d:
            raise CrosscoderError(f"expected activations [B, M={M}, d={d}], got {list(x.shape)}")

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, M, d] -> z [B, F] = x·W_enc + b_enc (one GEMM over the flattened M·d)."""
        self.check_input(x)
        B = x.shape[0]
        w = self.W_enc.reshape(-1, self.n_features)
        return torch.addmm(self.b_enc.to(x.dtype), x.reshape(B, -1), w.to(x.dtype))

    def pre_acts_alone(self, x_m: torch.Tensor, m: int) -> torch.Tensor:
        """Checkpoint ``m`` alone: x_m [B, d] -> z [B, F] = x_m W_enc[m] + b_enc, i.e. :meth:`pre_acts`
        with the other checkpoints' activations zero (their terms vanish), at 1/M of the cost."""
        return torch.addmm(self.b_enc.to(x_m.dtype), x_m, self.W_enc[m].to(x_m.dtype))

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activations z [B, F] -> features f [B, F] (the variant's σ)."""
        raise NotImplementedError(f"{type(self).__name__} is not a registered variant: it must define activate()")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, M, d] -> f [B, F]."""
        return self.activate(self.pre_acts(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """f [B, F] -> x̂ [B, M, d] (one GEMM)."""
        B = f.shape[0]
        F, M, d = self.W_dec.shape
        out = torch.addmm(self.b_dec.reshape(1, -1).to(f.dtype), f, self.W_dec.reshape(F, -1).to(f.dtype))
        return out.view(B, M, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, M, d] -> x̂ [B, M, d]."""
        return self.decode(self.encode(x))

    def decoder_norms(self) -> torch.Tensor:
        """``‖W_dec[i, m]‖`` as ``[F, M]``, measured in normalised space (folding undone)."""
        return self.W_dec.norm(dim=-1) * self.fold

    def feature_weights(self, norms: torch.Tensor | None = None) -> torch.Tensor:
        """Per-feature decoder weight ``[F]``: ``Σ_m ‖W_dec[i,m]‖`` (l1_norm "sum") or ‖W_dec[i]‖ ("concat")."""
        n = self.decoder_norms() if norms is None else norms
        if self.config.l1_norm == "concat":
            return n.pow(2).sum(-1).sqrt()
        return n.sum(-1)

    # -- normalisation -------------------------------------------------------------------
    def _scale_vector(self, scales: list[float] | dict[str, float] | None) -> torch.Tensor:
        M = self.n_checkpoints
        if scales is None:
            scales = self.config.scales
            if scales is None:
                raise CrosscoderError("no scales given and none recorded in the crosscoder's config; pass the "
                                      "scales its training activations were multiplied by")
        if isinstance(scales, dict):
            revs = self.config.revisions
            if revs is None:
                raise CrosscoderError("scales given by revision but the crosscoder records no revisions; pass a list")
            missing = [r for r in revs if r not in scales]
            if missing:
                raise CrosscoderError(f"scales lack the crosscoder's checkpoints {missing}")
            scales = [scales[r] for r in revs]
        s = torch.as_tensor(scales, dtype=torch.float64).flatten()
        if s.numel() != M:
            raise CrosscoderError(f"{s.numel()} scales for a crosscoder over M = {M} checkpoints")
        if not bool(torch.isfinite(s).all() and (s > 0).all()):
            raise CrosscoderError(f"scales must be finite and positive, got {s.tolist()}")
        return s

    @torch.no_grad()
    def fold_scales(self, scales: list[float] | dict[str, float] | None = None) -> Crosscoder:
        """Fold ``x_norm = s·x_raw`` into the weights, in place (default: the recorded scales).

        Afterwards the model maps raw activations to raw reconstructions. Refused when the
        model is already folded (folding twice silently mis-scales everything downstream).
        """
        if self.is_folded:
            raise CrosscoderError("this crosscoder already has its scales folded in; folding twice would "
                                  "mis-scale it (call unfold_scales() first)")
        s = self._scale_vector(scales)
        sw = s.to(self.W_enc.dtype)
        self.W_enc.mul_(sw.view(-1, 1, 1))
        self.W_dec.div_(sw.view(1, -1, 1))
        self.b_dec.div_(sw.view(-1, 1))
        self.fold.copy_(s.to(self.fold.dtype))
        return self

    @torch.no_grad()
    def unfold_scales(self) -> Crosscoder:
        """Undo :meth:`fold_scales` in place: back to normalised space (a no-op when not folded)."""
        if not self.is_folded:
            return self
        s = self.fold.to(self.W_enc.dtype)
        self.W_enc.div_(s.view(-1, 1, 1))
        self.W_dec.mul_(s.view(1, -1, 1))
        self.b_dec.mul_(s.view(-1, 1))
        self.fold.fill_(1.0)
        return self

    def folded(self, scales: list[float] | dict[str, float] | None = None) -> Crosscoder:
        """A copy with the scales folded in (raw activations -> raw reconstructions).

        ``scales``: list ``[M]``, or dict ``revision -> s`` (e.g. ``ActivationStore.scales``);
        default: the scales recorded at training (an error when none are recorded). A model
        that is already folded is copied as it is.
        """
        out = copy.deepcopy(self)
        return out if out.is_folded else out.fold_scales(scales)

    def unfolded(self) -> Crosscoder:
        """A copy in normalised space (where RelDec is defined)."""
        return copy.deepcopy(self).unfold_scales()

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``path/config.json`` and ``path/model.safetensors`` (each atomically); the
        variant goes into both (the weights' header is checked against config.json on load)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(path / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"variant": self.config.variant})
        write_json(path / CONFIG_FILE, {**self.config.model_dump(mode="json"), **(extra or {})})
        return path


def build(config: CrosscoderConfig | dict) -> Crosscoder:
    """A freshly initialised crosscoder of the variant the config names."""
    if isinstance(config, dict):
        config = CrosscoderConfig(**config)
    return variant(config.variant).model(config)


def load(path: str | Path, device: str | torch.device = "cpu") -> Crosscoder:
    """Load a crosscoder saved by :meth:`Crosscoder.save`; dispatches on the saved variant name,
    which the weights' header must repeat."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not cfg_file.exists() or not w_file.exists():
        raise CrosscoderError(f"{path} is not a saved crosscoder (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                              "train one with `crosstime train`")
    try:
        raw = json.loads(cfg_file.read_text())
        config = CrosscoderConfig(**{k: v for k, v in raw.items() if k in CrosscoderConfig.model_fields})
    except (json.JSONDecodeError, ValidationError) as err:
        raise CrosscoderError(f"{cfg_file} is not a crosscoder config ({str(err).splitlines()[0]}); re-train "
                              "the crosscoder") from err
    with safe_open(str(w_file), framework="pt") as handle:
        header = (handle.metadata() or {}).get("variant")
    if header != config.variant:
        raise CrosscoderError(f"{cfg_file} says variant {config.variant!r} but the weights in {w_file} were saved "
                              f"as {header!r}; one of the two was edited or replaced: re-train, or restore the pair")
    model = build(config)
    model.load_state_dict(load_file(str(w_file)), strict=True)
    return model.to(device)


def check_against_store(model: Crosscoder, store: ActivationStore, where: str = "the crosscoder") -> None:
    """The one compatibility check of a crosscoder and the store it reads (see :func:`load_for_store`)."""
    fix = "use the store it was trained on, or train one on this store (`crosstime train`)"
    if model.d_model != store.d_model:
        raise CrosscoderError(f"{where} has width d = {model.d_model} but the activation store at {store.root} has "
                              f"d = {store.d_model}: they come from different sites or models; {fix}")
    revisions = model.revisions
    if revisions is None:
        raise CrosscoderError(f"{where} records no revisions, so it cannot be matched to the store's checkpoints; "
                              "save it with CrosscoderConfig(revisions=[...])")
    missing = [r for r in revisions if r not in store.revisions]
    if missing:
        raise CrosscoderError(f"{where} was trained on checkpoints {revisions} but the store at {store.root} "
                              f"holds {store.revisions} (no {missing}); {fix}")
    order = sorted(revisions, key=store.revisions.index)
    if order != list(revisions):
        raise CrosscoderError(f"{where}'s checkpoints {revisions} are not in the store's order {store.revisions}; "
                              f"{fix}")
    scales = model.scales
    if scales is None:
        raise CrosscoderError(f"{where} records no normalisation scales; save it with CrosscoderConfig(scales=[...])")
    if model.config.normalised:
        want = [float(store.scales[r]) for r in revisions]
        off = [r for r, a, b in zip(revisions, scales, want) if abs(a - b) > SCALE_RTOL * b]
        if off:
            raise CrosscoderError(f"{where} was trained with normalisation scales {scales} but the store at "
                                  f"{store.root} has {want} (differ beyond {SCALE_RTOL:g} relative at {off}): it was "
                                  f"trained on other activations; {fix}")


def load_for_store(path: str | Path, store: ActivationStore, device: str | torch.device = "cpu") -> Crosscoder:
    """A trained crosscoder, in normalised space and eval mode, checked against ``store``.

    Checks: the width equals the store's; the crosscoder's revisions are a subset of the
    store's, in the store's order; its recorded scales equal the store's within
    :data:`SCALE_RTOL`; the variant in the weights' header equals config.json (:func:`load`).
    """
    model = load(path, device=device).unfold_scales()
    check_against_store(model, store, where=f"the crosscoder at {path}")
    return model.eval()
