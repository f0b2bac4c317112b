"""What every file format shares: the registry, the reader's result, and the checks every reader runs.

A format is a subclass of :class:`Format` decorated with :func:`register_format` in its own
module of this package (the package imports every module in it, so adding a format touches
one file; a format registered elsewhere, e.g. by a plug-in, works the same). ``read`` turns the
format's files into a crosstime :class:`Crosscoder` (normalised space, scales and revisions
recorded) or refuses with one :class:`CrosscoderError` naming the file and the fix; ``write``
writes the format's files for a crosscoder and returns their paths.

Which variants a format supports follows from what it declares, never from variant names: its
``activations``, the inference rules its files can hold (:class:`~crosstime.crosscoder.Activation`;
None: any, as crosstime's own files), against the rule each variant registers. A writer starts
with :meth:`Format.check_supports`, so a variant it cannot hold is one error naming the formats
that can. What a writer then refuses is a property of the one model (an l1_norm, M > 1, a
threshold not yet estimated), said in its own words.
"""

from __future__ import annotations

import json
import math
import pickle
import zipfile
from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from crosstime.crosscoder import Activation, Crosscoder, CrosscoderConfig, CrosscoderError, build, variant
from crosstime.crosscoder.model import read_safetensors as model_read_safetensors  # the crosscoder's own reader
from crosstime.crosscoder.settings import VARIANT_SETTINGS

FORMATS: dict[str, Format] = {}


@dataclass
class Imported:
    """A crosscoder read from another format, with what the reader decided in words (``notes``)
    and where it came from (``source``: format, path, recorded settings), kept in config.json."""

    model: Crosscoder
    notes: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportInfo:
    """What a writer may state beside the weights (all optional; the Python API knows none of it).

    ``site``: the activation site in words; ``hook_name``: the same as a hook point name;
    ``model_name``: the checkpoint series; ``layer``, ``context_len``: the store's; ``training``:
    the train stage's settings (config.json's ``training``), for formats that record them (read
    them with :func:`training_setting`); ``evaluation``: one row per checkpoint
    (``evaluation.json``'s), for a model card; ``run``: the run folder, for formats made from the
    run's other outputs (neuronpedia: the report)."""

    site: str | None = None
    hook_name: str | None = None
    model_name: str | None = None
    layer: int | None = None
    context_len: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: list[dict[str, Any]] | None = None
    run: Path | None = None


def training_setting(training: dict[str, Any], name: str) -> Any:
    """Setting ``name`` of a recorded training (config.json's ``training``): the shared ones at the top,
    the variant's own under ``variant_settings`` (at the top too in crosscoders trained before they
    were nested); None when not recorded."""
    own = training.get(VARIANT_SETTINGS) or {}
    return own[name] if name in own else training.get(name)


class Format(ABC):
    """One file format; a subclass overrides :meth:`read`, :meth:`write` or both, and declares the
    inference rules its files hold (``activations``; None: every variant's)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line: whose format, which files
    activations: ClassVar[frozenset[Activation] | None] = None

    def supports(self, variant_name: str) -> bool:
        """Whether this format can hold a crosscoder of the registered variant ``variant_name``."""
        return self.activations is None or variant(variant_name).activation in self.activations

    def check_supports(self, model: Crosscoder) -> Activation:
        """``model``'s inference rule when this format holds its variant; else one error naming the
        formats that do (every writer starts with this)."""
        name = model.config.variant
        if not self.supports(name):
            raise CrosscoderError(f"the {self.name} format cannot hold a {name} crosscoder ({variant(name).activation.rule}); "
                                  f"formats that can: {', '.join(formats_supporting(name))}")
        return variant(name).activation

    @property
    def readable(self) -> bool:
        return type(self).read is not Format.read

    @property
    def writable(self) -> bool:
        return type(self).write is not Format.write

    def read(self, path: Path, revisions: list[str] | None = None, scales: list[float] | None = None) -> Imported:
        """The crosscoder in ``path`` (a file or folder of this format)."""
        raise NotImplementedError  # get_format refuses a format without a reader, naming those with one

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
        """Write ``model`` (normalised space) as this format's files under the folder ``out``."""
        raise NotImplementedError  # get_format refuses a format without a writer, naming those with one


def register_format(cls: type[Format]) -> type[Format]:
    """Class decorator: add the format ``cls`` (a name registered twice is an error, not a replacement)."""
    if cls.name in FORMATS:
        raise ValueError(f"a crosscoder format {cls.name!r} is registered already")
    FORMATS[cls.name] = cls()
    return cls


def known_formats(purpose: str | None = None) -> list[str]:
    """Format names; ``purpose`` "read" or "write" keeps those that can."""
    out = []
    for name, fmt in sorted(FORMATS.items()):
        if purpose is None or (fmt.readable if purpose == "read" else fmt.writable):
            out.append(name)
    return out


def formats_supporting(variant_name: str, purpose: str = "write") -> list[str]:
    """The formats that can ``purpose`` a crosscoder of variant ``variant_name``."""
    return [name for name in known_formats(purpose) if FORMATS[name].supports(variant_name)]


def get_format(name: str, purpose: str) -> Format:
    """The format called ``name`` that can ``purpose`` ("read" or "write"); an error lists the known ones."""
    fmt = FORMATS.get(name)
    if fmt is None:
        raise CrosscoderError(f"unknown crosscoder format {name!r}; known formats: {', '.join(known_formats(purpose))}")
    if purpose == "read" and not fmt.readable:
        raise CrosscoderError(f"crosstime cannot import the {name} format (it is export only); importable formats: "
                              f"{', '.join(known_formats('read'))}")
    if purpose == "write" and not fmt.writable:
        raise CrosscoderError(f"crosstime cannot export to the {name} format (it is import only); exportable formats: "
                              f"{', '.join(known_formats('write'))}")
    return fmt


# -- reading files -------------------------------------------------------------------------------

def require_files(folder: Path, names: list[str], what: str) -> None:
    """Every one of ``names`` exists in ``folder``; else one error naming the missing ones."""
    if not folder.is_dir():
        raise CrosscoderError(f"{folder} is not a folder; {what} is a folder holding {' and '.join(names)}")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise CrosscoderError(f"{folder} lacks {' and '.join(missing)}: {what} is a folder holding "
                              f"{' and '.join(names)}; point at the folder the files were saved in")


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that holds an object."""
    if not path.is_file():
        raise CrosscoderError(f"{path} does not exist; it is the config saved beside the weights")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CrosscoderError(f"{path} is not readable JSON ({err}); restore it from the copy it was saved as") from err
    if not isinstance(data, dict):
        raise CrosscoderError(f"{path} holds a {type(data).__name__}, not a config object")
    return data


def read_pt(path: Path) -> dict[str, Any]:
    """A torch ``.pt`` file, read with ``weights_only=True`` (no code from the file runs), as a dict."""
    if not path.is_file():
        raise CrosscoderError(f"{path} does not exist; it is the saved weights")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CrosscoderError(f"{path} is not a plain state dict that torch.load(weights_only=True) can read ({first}); "
                              "re-save it as `torch.save(model.state_dict(), path)`") from err
    if not isinstance(data, dict):
        raise CrosscoderError(f"{path} holds a {type(data).__name__}, not a state dict (name -> tensor); re-save it as "
                              "`torch.save(model.state_dict(), path)`")
    return data


def tensors_only(data: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """``data`` when every value is a tensor (a plain state dict)."""
    other = sorted(k for k, v in data.items() if not isinstance(v, torch.Tensor))
    if other:
        raise CrosscoderError(f"{path} is not a plain state dict: {other} are not tensors; re-save it as "
                              "`torch.save(model.state_dict(), path)`")
    return data


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A safetensors file's metadata and tensors (the crosscoder's own reader, with an import's fix)."""
    if not path.is_file():
        raise CrosscoderError(f"{path} does not exist; it is the saved weights")
    return model_read_safetensors(path, "restore it from a copy")


def check_shapes(tensors: dict[str, torch.Tensor], want: dict[str, tuple[int, ...]], path: Path, config: Path,
                 optional: frozenset[str] = frozenset()) -> None:
    """The tensors ``want`` names exist with those shapes (which ``config`` or the other tensors imply)."""
    missing = [k for k in want if k not in tensors and k not in optional]
    if missing:
        raise CrosscoderError(f"{path} lacks the tensors {missing} (it holds {sorted(tensors)}); it is not a complete "
                              "save of this format")
    wrong = [f"{k} {list(tensors[k].shape)} (expected {list(s)})" for k, s in want.items()
             if k in tensors and tuple(tensors[k].shape) != s]
    if wrong:
        raise CrosscoderError(f"the tensors in {path} do not have the shapes {config.name} and the other tensors imply: "
                              f"{'; '.join(wrong)}; the config belongs to other weights, or the file is damaged")


def config_int(config: dict[str, Any], key: str, path: Path) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CrosscoderError(f"{path}: {key!r} is {value!r}, not an integer; it is not a config of this format")
    return value


def disagree(path: Path, key: str, said: Any, found: Any, weights: Path) -> CrosscoderError:
    return CrosscoderError(f"{path} says {key} = {said} but the tensors in {weights} have {found}: the config belongs to "
                           "other weights; restore the pair that was saved together")


# -- revisions and scales ----------------------------------------------------------------------

def pick_revisions(recorded: list[str] | None, given: list[str] | None, M: int, where: str) -> list[str]:
    """The checkpoints' names: ``given`` (``--revisions``) or else what the format recorded."""
    if given is not None:
        if len(given) != M:
            raise CrosscoderError(f"{len(given)} revisions given ({', '.join(given)}) for a crosscoder over M = {M} "
                                  f"checkpoints ({where}); give one name per checkpoint, in order")
        return list(given)
    if recorded is None or len(recorded) != M:
        raise CrosscoderError(f"{where} does not record the names of its {M} checkpoints; pass them in order with "
                              "--revisions A,B,... (the store's revision names)")
    return list(recorded)


def pick_scales(recorded: list[float] | None, given: list[float] | None, M: int, where: str) -> list[float]:
    """The per-checkpoint input scales s_m: the format's record, or ``given`` when it records none.

    Both given and recorded must agree (within float noise): the record is what the weights were
    trained with, so a different ``--scales`` would silently change the model."""
    if recorded is not None:
        if len(recorded) != M or not all(math.isfinite(s) and s > 0 for s in recorded):
            raise CrosscoderError(f"{where} records input scales {recorded} for M = {M} checkpoints; they must be "
                                  "one finite positive number per checkpoint")
        if given is not None and any(abs(a - b) > 1e-6 * abs(b) for a, b in zip(given, recorded)):
            raise CrosscoderError(f"--scales {given} differ from the scales {where} records ({recorded}); leave "
                                  "--scales out: the record is what the weights were trained with")
        return [float(s) for s in recorded]
    if given is None:
        raise CrosscoderError(f"{where} does not record the input scales s_m its activations were multiplied by; "
                              "pass them with --scales S1,S2,... (one per checkpoint: the store's scales when it "
                              "was trained on crosstime-normalised activations)")
    if len(given) != M or not all(math.isfinite(s) and s > 0 for s in given):
        raise CrosscoderError(f"--scales {given}: give {M} finite positive numbers, one per checkpoint")
    return [float(s) for s in given]


def assemble(variant_name: str, tensors: dict[str, torch.Tensor], revisions: list[str], scales: list[float],
             where: str, **settings: Any) -> Crosscoder:
    """A crosstime crosscoder holding ``tensors`` (crosstime names: W_enc, W_dec, b_enc, b_dec and the
    variant's own), checked finite. ``settings``: further CrosscoderConfig fields (l1_norm,
    variant_config)."""
    F, M, d = tensors["W_dec"].shape
    config = CrosscoderConfig(variant=variant_name, n_checkpoints=M, d_model=d, n_features=F, revisions=revisions,
                              scales=scales, **settings)
    model = build(config)
    other = [f"{k} ({str(v.dtype).removeprefix('torch.')})" for k, v in tensors.items() if not v.is_floating_point()]
    if other:  # a cast would quietly change them (a complex tensor would lose its imaginary part)
        raise CrosscoderError(f"{where} holds non-float tensors: {', '.join(other)}; a crosscoder's weights are "
                              "floating point: re-save them as float32")
    bad = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise CrosscoderError(f"{where} holds NaN/inf in {bad}; it cannot be used")
    state = model.state_dict()  # the fold buffer stays ones: the weights are in normalised space
    state.update({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()})
    model.load_state_dict(state, strict=True)
    return model.eval()


def scale_from_norm(d: int, norm: Any, where: str) -> float:
    """s_m = sqrt(d) / norm_m, for a format that records the average activation norm (Llamascopium's
    ``dataset_average_activation_norm``; not the first paper's, whose ``estimated_act_norm_list`` is s_m
    itself); a recorded norm that is not a finite positive number (0, "abc") is one error naming ``where``."""
    try:
        value = float(norm)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(norm, bool) or not (math.isfinite(value) and value > 0):
        raise CrosscoderError(f"{where} records the activation norm {norm!r}, not a finite positive number; the file "
                              "is damaged: restore it from a copy, or re-save it with the norms it was trained with")
    return math.sqrt(d) / value


def norm_from_scale(d: int, scale: float) -> float:
    return math.sqrt(d) / scale
