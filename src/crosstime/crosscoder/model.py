"""The crosscoder: one shared sparse dictionary over M checkpoints' activations.

Shapes (B batch, M checkpoints, d width, F features)::

    W_enc [M, d, F]   b_enc [F]   W_dec [F, M, d]   b_dec [M, d]
    encode: x [B, M, d] -> f [B, F]        f = σ(Σ_m x_m W_enc[m] + b_enc)
    decode: f [B, F]    -> x̂ [B, M, d]     x̂_m = f W_dec[:, m] + b_dec[m]

Both directions are one GEMM on the flattened ``[B, M·d]`` view (not a loop over
checkpoints). σ is the variant's activation; a variant is a model class, a training recipe and
its own settings registered together by name (:mod:`.registry`; the built-ins are in
:mod:`.relu`, :mod:`.topk`, :mod:`.jumprelu`, :mod:`.matryoshka`), recorded in ``config.json``
(``variant``, and the variant's own architecture settings under ``variant_config``) and in the
weights' header so :func:`load` rebuilds it. M = 1 is an ordinary sparse autoencoder.

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

Files. :meth:`Crosscoder.save` writes ``model.safetensors`` (whose header holds a copy of
config.json), then ``config.json`` (which records the weights' size and sha256), each
atomically. :func:`load` uses neither until both agree: the weights match the recorded
checksum (a flipped byte, a truncation, a replaced file or a kill between the two renames is
caught), and config.json equals the header's copy (an edited variant, shape, scale or
revision is caught). Every failure is one :class:`CrosscoderError` naming the file and the
fix. A pair saved before checksums were recorded loads with a warning that its weights are
unverified; re-running its training command re-saves it verified. A config.json saved before
the variant's settings were nested (``k``, ``jumprelu_threshold_init``, ``jumprelu_bandwidth``
at the top, for every variant) loads as today's: its variant's own move under
``variant_config``, the others (never used by that variant) are dropped.

Every stage opens a trained crosscoder with :func:`load_for_store`, which checks it
against the activation store it reads (one check, one tolerance: :data:`SCALE_RTOL`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as serialize
from torch import nn

from crosstime.crosscoder.registry import (
    VARIANTS,
    CrosscoderError,
    VariantConfig,
    known_variants,
    own_part,
    variant,
)
from crosstime.files import atomic_path, sha256_file, write_json

if TYPE_CHECKING:
    from crosstime.store import ActivationStore

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_RECORD = "weights"  # config.json: {"file", "bytes", "sha256"} of model.safetensors
# The weights' header (safetensors metadata) holds one entry, config.json as saved (JSON, without
# the weights record; one entry: safetensors writes several in a random order, and the file's bytes
# would differ from save to save). Crosscoders saved before checksums hold only the variant.
HEADER_CONFIG = "config"
HEADER_VARIANT = "variant"  # the header of a crosscoder saved before checksums
# A crosscoder's recorded scales and its store's may differ by float noise of a re-harvest on
# other hardware (measured ≤ 1e-5); anything larger means other activations.
SCALE_RTOL = 1e-3
VARIANT_CONFIG = "variant_config"  # CrosscoderConfig's field holding the variant's own architecture settings
# config.json before VARIANT_CONFIG: these were top-level fields of every variant's config
FLAT_VARIANT_KEYS = ("k", "jumprelu_threshold_init", "jumprelu_bandwidth")


class CrosscoderConfig(BaseModel):
    """Architecture of one crosscoder; saved as ``config.json`` beside the weights."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting

    variant: str = Field("relu", description="activation σ: a registered variant (relu, topk, batchtopk, jumprelu, matryoshka)")
    variant_config: SerializeAsAny[VariantConfig] = Field(
        default_factory=VariantConfig, description="the variant's own architecture settings (topk/batchtopk/"
        "matryoshka: k; jumprelu: θ₀ and ε), its registered config class")
    n_checkpoints: int = Field(description="M, checkpoints encoded jointly (1 = a plain SAE)")
    d_model: int = Field(description="d, width of one checkpoint's activation")
    n_features: int = Field(description="F, dictionary size")
    dec_init_norm: float = Field(0.08, gt=0, description="L2 norm of every decoder row W_dec[i, m] at init")
    seed: int = Field(0, description="seed of the initialisation")
    l1_norm: Literal["sum", "concat"] = Field(
        "sum", description="per-feature decoder weight: Σ_m ‖W_dec[i,m]‖ (sum) or ‖W_dec[i]‖ of the concatenation")
    revisions: list[str] | None = Field(None, description="the checkpoints, in order (names for W_dec[:, m])")
    scales: list[float] | None = Field(None, description="per-checkpoint factors s_m applied to raw activations")
    normalised: bool = Field(True, description="scales are the store's s_m (true) or 1 for raw activations (false)")

    @model_validator(mode="before")
    @classmethod
    def _variant_config(cls, data: Any) -> Any:
        return own_part(cls, data, VARIANT_CONFIG, "config")

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
        problems = VARIANTS[self.variant].model.config_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def initial_decoder(config: CrosscoderConfig, checkpoints: slice = slice(None)) -> torch.Tensor:
    """The decoder at initialisation of ``checkpoints`` (default all): ``[F, M', d]``, rows of norm
    ``dec_init_norm``, drawn from ``seed`` whole (the generator's stream is ``[F, M, d]``-ordered),
    so a checkpoint shard starts as the slice of the whole crosscoder."""
    g = torch.Generator().manual_seed(config.seed)
    w = torch.randn(config.n_features, config.n_checkpoints, config.d_model, generator=g)[:, checkpoints]
    w *= config.dec_init_norm / w.norm(dim=-1, keepdim=True)
    return w


class Crosscoder(nn.Module, ABC):
    """Base crosscoder (see the module docstring); a registered variant defines :meth:`activate`.

    Parameters: ``W_enc [M, d, F]``, ``W_dec [F, M, d]``, ``b_enc [F]``, ``b_dec [M, d]``.
    Buffer ``fold [M]``: the scales folded into the weights (ones when unfolded).
    """

    def __init__(self, config: CrosscoderConfig):
        super().__init__()
        if not variant(config.variant).builds(type(self)):
            raise CrosscoderError(f"{type(self).__name__} is not the model of the {config.variant} variant its config "
                                  "names; build models with crosscoder.build(config)")
        self.config = config
        M, d, F = config.n_checkpoints, config.d_model, config.n_features
        self.W_enc = nn.Parameter(torch.empty(M, d, F))
        self.W_dec = nn.Parameter(torch.empty(F, M, d))
        self.b_enc = nn.Parameter(torch.zeros(F))
        self.b_dec = nn.Parameter(torch.zeros(M, d))
        self.register_buffer("fold", torch.ones(M))
        self.reset_parameters()

    # -- construction --------------------------------------------------------------------
    @classmethod
    def config_problems(cls, config: CrosscoderConfig) -> list[str]:
        """What in ``config`` this variant cannot be built with, in words naming the fix (none by default)."""
        return []

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Decoder rows random with norm ``dec_init_norm`` (:func:`initial_decoder`), encoder = decoder
        transpose, zero biases."""
        self.init_decoder(initial_decoder(self.config))
        self.b_enc.zero_()
        self.b_dec.zero_()
        self.fold.fill_(1.0)

    @torch.no_grad()
    def init_decoder(self, w: torch.Tensor) -> None:
        """``W_dec = w [F, M, d]`` and ``W_enc`` its transpose (the initialisation's tied weights)."""
        self.W_dec.copy_(w)
        self.W_enc.copy_(w.permute(1, 2, 0))

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
    @abstractmethod
    def inference_rule(self) -> str:
        """In words: which features fire in eval mode (recorded by every stage that encodes)."""

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

    @abstractmethod
    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activations z [B, F] -> features f [B, F] (the variant's σ)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, M, d] -> f [B, F]."""
        return self.activate(self.pre_acts(x))

    def checkpoint_sum(self, t: torch.Tensor) -> torch.Tensor:
        """A sum over this model's checkpoints, completed over every checkpoint: itself here (a
        checkpoint shard adds the other shards', :class:`~.parallel.ShardedCrosscoder`)."""
        return t

    def checkpoint_copy(self, t: torch.Tensor) -> torch.Tensor:
        """A value every checkpoint reads (the features): itself here (a shard's backward sums
        every shard's gradient of it)."""
        return t

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """f [B, F] -> x̂ [B, M, d] (one GEMM)."""
        f = self.checkpoint_copy(f)
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
        """Per-feature decoder weight ``[F]``: ``Σ_m ‖W_dec[i,m]‖`` (l1_norm "sum") or ‖W_dec[i]‖ ("concat"),
        over every checkpoint (``norms``: this model's ``[F, M]``)."""
        n = self.decoder_norms() if norms is None else norms
        if self.config.l1_norm == "concat":
            return self.checkpoint_sum(n.pow(2).sum(-1)).sqrt()
        return self.checkpoint_sum(n.sum(-1))

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
    def upgrade_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Saved tensors of an earlier parameterisation of this variant, in today's names, converted
        exactly (or refused with a :class:`CrosscoderError`); :func:`load` calls it before its checks."""
        return tensors

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``path/model.safetensors``, then ``path/config.json`` (each atomically).

        config.json holds the architecture (:class:`CrosscoderConfig`), ``extra`` and the
        weights' size and sha256 (``"weights"``); the weights' header repeats everything else
        config.json holds, so :func:`load` can check each file against the other. Other
        codebases' files: :func:`crosstime.interop.formats.write`.
        """

        path = Path(path)
        clash = ({WEIGHTS_RECORD} | set(CrosscoderConfig.model_fields)) & set(extra or {})
        if clash:
            raise CrosscoderError(f"extra entries {sorted(clash)} would replace the crosscoder's own entries in "
                                  f"{CONFIG_FILE}; name them otherwise")
        text = json.dumps({**self.config.model_dump(mode="json"), **(extra or {})}, default=str)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        # serialised in memory and written through a Python file: the checksum costs no second read,
        # and a full disk is an OSError naming the file (safetensors' own writer reports a SafetensorError)
        data = serialize(tensors, metadata={HEADER_CONFIG: text})
        with atomic_path(path / WEIGHTS_FILE) as tmp, open(tmp, "wb") as handle:
            handle.write(data)
        record = {"file": WEIGHTS_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        write_json(path / CONFIG_FILE, {**json.loads(text), WEIGHTS_RECORD: record})
        return path


def build(config: CrosscoderConfig | dict[str, Any]) -> Crosscoder:
    """A freshly initialised crosscoder of the variant the config names."""
    if isinstance(config, dict):
        config = CrosscoderConfig(**config)
    return variant(config.variant).model(config)


def _fix(path: Path) -> str:
    return (f"re-train it (`crosstime train RUN`; with the same settings it resumes from {path / 'state'} and "
            f"writes the pair again), or restore {CONFIG_FILE} and {WEIGHTS_FILE} together from a copy")


def _read_config(path: Path) -> dict[str, Any]:
    """config.json as a dict (both files must exist)."""
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    missing = [f.name for f in (cfg_file, w_file) if not f.is_file()]
    if missing:
        pair = f" (it needs {CONFIG_FILE} and {WEIGHTS_FILE} together)" if len(missing) == 1 else ""  # both: said
        raise CrosscoderError(f"{path} is not a saved crosscoder: {' and '.join(missing)} missing{pair}; train one "
                              "with `crosstime train RUN`, or restore the pair from a copy")
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CrosscoderError(f"{cfg_file} is not readable JSON ({err}); {_fix(path)}") from err
    if not isinstance(raw, dict):
        raise CrosscoderError(f"{cfg_file} holds a {type(raw).__name__}, not a crosscoder config; {_fix(path)}")
    return raw


def _verify_weights(path: Path, record: Any) -> None:
    """model.safetensors against the size and sha256 config.json recorded when both were saved."""
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not (isinstance(record, dict) and isinstance(record.get("sha256"), str) and isinstance(record.get("bytes"), int)):
        raise CrosscoderError(f"{cfg_file}: its {WEIGHTS_RECORD!r} entry {record!r} is not the size and sha256 of "
                              f"{WEIGHTS_FILE}; {_fix(path)}")
    size = w_file.stat().st_size
    if size != record["bytes"]:
        raise CrosscoderError(f"{w_file} has {size} bytes but {cfg_file} records {record['bytes']}: the weights were "
                              f"truncated, replaced or edited since they were saved; {_fix(path)}")
    if sha256_file(w_file) != record["sha256"]:
        raise CrosscoderError(f"{w_file} does not match the sha256 recorded in {cfg_file}: the weights were damaged, "
                              f"replaced or edited since they were saved; {_fix(path)}")


def read_safetensors(file: Path, fix: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A safetensors file's header metadata and tensors; a file safetensors cannot read is a
    :class:`CrosscoderError` naming it, then ``fix``."""

    try:
        with safe_open(str(file), framework="pt") as handle:
            header = handle.metadata() or {}
        return header, load_file(str(file))
    except SafetensorError as err:
        raise CrosscoderError(f"{file} is not a readable safetensors file ({err}); {fix}") from err


def _read_weights(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The weights' header metadata and tensors of the crosscoder saved in ``path``."""
    return read_safetensors(path / WEIGHTS_FILE, _fix(path))


def _canonical(value: Any) -> str:
    """JSON text that compares equal for equal values (NaN included, which != itself)."""
    return json.dumps(value, sort_keys=True, default=str)


def _header_config(path: Path, header: dict[str, str]) -> dict[str, Any] | None:
    """The copy of config.json in the weights' header (None in a crosscoder saved before checksums)."""
    if HEADER_CONFIG not in header:
        return None
    try:
        saved = json.loads(header[HEADER_CONFIG])
    except json.JSONDecodeError as err:
        raise CrosscoderError(f"the header of {path / WEIGHTS_FILE} holds no readable config ({err}); "
                              f"{_fix(path)}") from err
    if not isinstance(saved, dict):
        raise CrosscoderError(f"the header of {path / WEIGHTS_FILE} holds no config; {_fix(path)}")
    return saved


def _config_from(path: Path, raw: dict[str, Any], header: dict[str, str]) -> CrosscoderConfig:
    """The architecture from config.json, checked against the copy in the weights' header."""
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    saved = _header_config(path, header)
    recorded = saved.get("variant") if saved is not None else header.get(HEADER_VARIANT)
    if recorded != raw.get("variant"):
        raise CrosscoderError(f"{cfg_file} says variant {raw.get('variant')!r} but the weights in {w_file} were saved "
                              f"as {recorded!r}; one of the two was edited or replaced: {_fix(path)}")
    try:
        config = CrosscoderConfig(**{k: v for k, v in _nested(raw).items() if k in CrosscoderConfig.model_fields})
    except ValidationError as err:
        why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in err.errors())
        raise CrosscoderError(f"{cfg_file} is not a crosscoder config ({why}); {_fix(path)}") from err
    if saved is None:  # saved before config.json was repeated in the header
        warnings.warn(f"{cfg_file} was saved by an earlier crosstime, with no checksum of {w_file}: its weights are "
                      "used unverified (only the variant is checked). Re-running its `crosstime train RUN` command "
                      "resumes from state/ and saves the pair again, verified", stacklevel=3)
        return config
    if WEIGHTS_RECORD not in raw:
        raise CrosscoderError(f"{cfg_file} lacks the {WEIGHTS_RECORD!r} checksum it was saved with; {_fix(path)}")
    content = {k: v for k, v in raw.items() if k != WEIGHTS_RECORD}
    keys = sorted(k for k in set(saved) | set(content) if _canonical(saved.get(k)) != _canonical(content.get(k)))
    if keys:
        raise CrosscoderError(f"{cfg_file} differs from the copy saved in the header of {w_file} (at {keys}): "
                              f"config.json was edited or belongs to other weights; {_fix(path)}")
    return config


def _nested(raw: dict[str, Any]) -> dict[str, Any]:
    """config.json in today's shape: one saved before the variant's settings were nested (no
    ``variant_config``; :data:`FLAT_VARIANT_KEYS` at the top for every variant) has its variant's
    own moved under ``variant_config`` and the others, which that variant never read, dropped."""
    name = raw.get("variant")
    if VARIANT_CONFIG in raw or not (isinstance(name, str) and name in VARIANTS):
        return raw  # today's shape, or a variant CrosscoderConfig refuses with its own message
    own = variant(name).config.model_fields
    return {**{k: v for k, v in raw.items() if k not in FLAT_VARIANT_KEYS},
            VARIANT_CONFIG: {k: raw[k] for k in FLAT_VARIANT_KEYS if k in raw and k in own}}


def _check_tensors(model: Crosscoder, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """The saved tensors have the names and shapes of ``model`` and are finite."""
    w_file = path / WEIGHTS_FILE
    want = {k: list(v.shape) for k, v in model.state_dict().items()}
    got = {k: list(v.shape) for k, v in tensors.items()}
    if got != want:
        diff = [f"{k} {got.get(k)} vs {want.get(k)}" for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
        raise CrosscoderError(f"the tensors in {w_file} do not have the shapes {path / CONFIG_FILE} describes "
                              f"({'; '.join(diff)}, saved vs described); {_fix(path)}")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CrosscoderError(f"{w_file} holds NaN/inf in {bad}; {_fix(path)}")


def load(path: str | Path, device: str | torch.device = "cpu") -> Crosscoder:
    """Load a crosscoder saved by :meth:`Crosscoder.save`, checked before anything is used (other
    codebases' files: :func:`crosstime.interop.formats.read`).

    Checks: both files exist and parse; model.safetensors has the size and sha256 config.json
    recorded; its header's variant and copy of config.json equal config.json; the tensors have
    the config's shapes and are finite. Any failure is a :class:`CrosscoderError` naming the
    file and the fix. A pair saved before checksums were recorded loads with a warning that its
    weights are unverified (only the variant is checked).
    """
    path = Path(path)
    raw = _read_config(path)
    if WEIGHTS_RECORD in raw:
        _verify_weights(path, raw[WEIGHTS_RECORD])
    header, tensors = _read_weights(path)
    model = build(_config_from(path, raw, header))
    tensors = model.upgrade_tensors(tensors)
    _check_tensors(model, tensors, path)
    model.load_state_dict(tensors, strict=True)
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

    Checks: the pair is what was saved (:func:`load`: checksum, header against config.json,
    shapes); the width equals the store's; the crosscoder's revisions are a subset of the
    store's, in the store's order; its recorded scales equal the store's within :data:`SCALE_RTOL`.
    """
    model = load(path, device=device).unfold_scales()
    check_against_store(model, store, where=f"the crosscoder at {path}")
    return model.eval()
