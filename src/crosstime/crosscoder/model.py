"""The crosscoder: one shared sparse dictionary over M checkpoints' activations.

Shapes (B batch, M checkpoints, d width, F features)::

    W_enc [M, d, F]   b_enc [F]   W_dec [F, M, d]   b_dec [M, d]
    encode: x [B, M, d] -> f [B, F]        f = σ(Σ_m x_m W_enc[m] + b_enc)
    decode: f [B, F]    -> x̂ [B, M, d]     x̂_m = f W_dec[:, m] + b_dec[m]

Both directions are one GEMM on the flattened ``[B, M·d]`` view (not a loop over
checkpoints). σ is the variant's activation (``relu``, ``topk``, ``batchtopk``,
``jumprelu``; see :mod:`crosstime.crosscoder.variants`), registered by name in
:data:`VARIANTS` and recorded in the saved ``config.json`` so :func:`load` can rebuild it.
M = 1 is an ordinary sparse autoencoder.

Normalisation. Crosscoders are trained on activations scaled per checkpoint,
``x_norm[m] = s_m · x_raw[m]`` (the store's ``scales``). A saved crosscoder keeps its weights
in that normalised space (where RelDec is defined) and records ``scales`` and ``revisions``
in ``config.json``; :meth:`Crosscoder.folded` returns a copy with the scales folded into the
weights, which maps raw activations to raw reconstructions::

    W_enc[m] *= s_m      W_dec[:, m] /= s_m      b_dec[m] /= s_m

Folding changes nothing the model computes: features are equal, reconstructions are
``x̂_raw = x̂_norm / s``, and the decoder norms every variant ranks or penalises by are
always measured in normalised space (``decoder_norms`` multiplies the fold back in), so a
folded BatchTopK keeps the same features at the same threshold. Folding twice is refused.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

VARIANTS: dict[str, type[Crosscoder]] = {}


class CrosscoderError(ValueError):
    """Bad crosscoder settings or input; the message names the input and the fix."""


def register(name: str):
    """Class decorator: make a variant loadable by ``name`` (recorded in ``config.json``)."""

    def deco(cls):
        cls.variant = name
        VARIANTS[name] = cls
        return cls

    return deco


def known_variants() -> list[str]:
    _ensure_variants()
    return sorted(VARIANTS)


def _ensure_variants() -> None:
    import crosstime.crosscoder.variants  # noqa: F401  (registers the built-in variants)


class CrosscoderConfig(BaseModel):
    """Architecture of one crosscoder; saved as ``config.json`` beside the weights."""

    model_config = ConfigDict(extra="forbid")

    variant: str = Field("relu", description="activation: relu | topk | batchtopk | jumprelu")
    n_checkpoints: int = Field(description="M, checkpoints encoded jointly (1 = a plain SAE)")
    d_model: int = Field(description="d, width of one checkpoint's activation")
    n_features: int = Field(description="F, dictionary size")
    dec_init_norm: float = Field(0.08, gt=0, description="L2 norm of every decoder row W_dec[i, m] at init")
    seed: int = Field(0, description="seed of the initialisation")
    l1_norm: Literal["sum", "concat"] = Field(
        "sum", description="relu: sparsity weight per feature: Σ_m ‖W_dec[i,m]‖ (sum) or ‖W_dec[i]‖ of the concatenation")
    k: int = Field(32, ge=1, description="topk/batchtopk: active features per token (batch average for batchtopk)")
    jumprelu_threshold_init: float = Field(0.001, gt=0, description="jumprelu: initial threshold θ")
    jumprelu_bandwidth: float = Field(0.001, gt=0, description="jumprelu: STE kernel width ε")
    revisions: list[str] | None = Field(None, description="the checkpoints, in order (names for W_dec[:, m])")
    scales: list[float] | None = Field(None, description="per-checkpoint normalisation s_m of the training data")

    @field_validator("variant")
    @classmethod
    def _known(cls, v: str) -> str:
        known = known_variants()
        if v not in known:
            raise ValueError(f"unknown crosscoder variant {v!r}; known variants: {', '.join(known)}")
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
        return self


class Crosscoder(nn.Module):
    """Base crosscoder (see the module docstring); variants override :meth:`activate`.

    Parameters: ``W_enc [M, d, F]``, ``W_dec [F, M, d]``, ``b_enc [F]``, ``b_dec [M, d]``.
    Buffer ``fold [M]``: the scales folded into the weights (ones when unfolded).
    """

    variant: ClassVar[str] = ""

    def __new__(cls, config: CrosscoderConfig | None = None, *args, **kwargs):
        # Crosscoder(config) builds the variant the config names.
        if cls is Crosscoder and config is not None:
            _ensure_variants()
            cls = VARIANTS[config.variant]
        return super().__new__(cls)

    def __init__(self, config: CrosscoderConfig):
        super().__init__()
        if type(self).variant and config.variant != type(self).variant:
            config = config.model_copy(update={"variant": type(self).variant})
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
        F = self.n_features
        w = self.W_enc.reshape(-1, F)
        return torch.addmm(self.b_enc.to(x.dtype), x.reshape(B, -1), w.to(x.dtype))

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activations z [B, F] -> features f [B, F] (the variant's σ).

        Abstract: ``Crosscoder(config)`` always builds a registered variant, and each defines it."""
        raise TypeError(f"{type(self).__name__} is not a registered variant: a variant class must define activate()")

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
    def _scale_vector(self, scales) -> torch.Tensor:
        M = self.n_checkpoints
        if scales is None:
            scales = self.config.scales
            if scales is None:
                raise CrosscoderError("no scales given and none recorded in the crosscoder's config")
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
    def fold_scales(self, scales=None) -> Crosscoder:
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

    def folded(self, scales=None) -> Crosscoder:
        """A copy with the scales folded in (raw activations -> raw reconstructions).

        ``scales``: list ``[M]``, or dict ``revision -> s`` (e.g. ``ActivationStore.scales``);
        default: the scales recorded at training. Returns an unchanged copy when no scales apply.
        """
        out = copy.deepcopy(self)
        if out.is_folded:
            return out
        if scales is None and self.config.scales is None:
            return out
        return out.fold_scales(scales)

    def unfolded(self) -> Crosscoder:
        """A copy in normalised space (where RelDec is defined)."""
        return copy.deepcopy(self).unfold_scales()

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``path/config.json`` and ``path/model.safetensors`` (each atomically)."""
        from safetensors.torch import save_file

        from crosstime.files import atomic_path, write_json

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(path / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"variant": self.config.variant})
        cfg = self.config.model_dump(mode="json")
        if extra:
            cfg.update(extra)
        write_json(path / CONFIG_FILE, cfg)
        return path


def load(path: str | Path, device: str | torch.device = "cpu") -> Crosscoder:
    """Load a crosscoder saved by :meth:`Crosscoder.save`; dispatches on the saved variant name."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not cfg_file.exists() or not w_file.exists():
        raise CrosscoderError(f"{path} is not a saved crosscoder (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                              "train one with `crosstime train`")
    raw = json.loads(cfg_file.read_text())
    fields = set(CrosscoderConfig.model_fields)
    config = CrosscoderConfig(**{k: v for k, v in raw.items() if k in fields})
    _ensure_variants()
    model = VARIANTS[config.variant](config)
    state = load_file(str(w_file))
    model.load_state_dict(state, strict=True)
    return model.to(device)


def build(config: CrosscoderConfig | dict) -> Crosscoder:
    """A freshly initialised crosscoder of the variant the config names."""
    if isinstance(config, dict):
        config = CrosscoderConfig(**config)
    _ensure_variants()
    return VARIANTS[config.variant](config)
