"""Checkpoint series: one model's pretraining snapshots, ordered by tokens seen.

A series is a model source (a Hugging Face repo id, or a local folder) plus an ordered
list of :class:`Checkpoint` (revision name, training step, tokens seen). Built-in
families know their revision grid and step→tokens rule:

- Pythia (``EleutherAI/pythia-*``, also ``-deduped``): step0, 1, 2, 4, …, 512, then
  step1000 … step143000 by 1000, and ``main`` (= step143000); 2,097,152 tokens per step
  (1024 sequences × 2048 tokens).
- OLMo (``allenai/OLMo-*-hf``): revisions ``stepN-tokensXB``; tokens parsed from the name.
- BLOOM intermediate (``bigscience/bloom-*-intermediate``): ``global_stepN``.
- A local series: a folder with ``series.json`` and one ``save_pretrained`` sub-folder
  (model + tokenizer) per revision. Loading it makes no network call.

Nothing here contacts a hub unless the series source is a hub id and a model or
tokenizer is actually loaded. Local means local: a source that looks like a path
(:func:`source_rule`: it starts with ``.``, ``/`` or ``~``; it exists; it is not of the form
``org/name``; its parent folder exists — ``toy-typo`` in the current folder, or ``runs/x`` when
``runs/`` exists; or a folder here starts its first part — ``toyy/series`` when ``toy/`` exists, a
typo) is opened as a local series or is an error naming the rule; it is never sent to the Hub.
A local checkpoint saved as a pickle (``pytorch_model.bin``, no ``model.safetensors``) is refused
when the series is opened: loading a pickle runs code from the file. A Hub id that cannot be loaded (offline
with ``HF_HUB_OFFLINE=1`` and not cached, an unknown repo or revision) is a :class:`SeriesError`
naming the repo, the revision and the fix. Revision names become folder names
(``RUN/activations/<revision>/``): they are checked with :func:`crosstime.names.check_name`.

The bare name ``"toy"`` is the built-in toy world (:func:`crosstime.toy.toy_world`: built once
into ``$CROSSTIME_CACHE``, default ``~/.cache/crosstime``, then reused), from any folder — unless
a path ``toy`` exists in the current folder: an existing local path always wins.

A family may label its own tokens (:class:`TokenLabeller`): :meth:`CheckpointSeries.labeller`
builds it from :data:`LABELLERS`, keyed by family. The toy family's is the grammar's labels
(:class:`crosstime.toy.labels.GrammarLabeller`); no other family has one.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from pydantic import BaseModel, ConfigDict, Field

from crosstime.checkpoints import SERIES_FILE, Checkpoint
from crosstime.errors import CrosstimeError
from crosstime.hub import hub_offline, hub_unreachable
from crosstime.names import UnsafeName, check_name
from crosstime.toy import toy_world
from crosstime.toy.labels import GrammarLabeller

PYTHIA_TOKENS_PER_STEP = 2_097_152  # 1024 sequences × 2048 tokens (Pythia paper, Table 7)
PYTHIA_FINAL_STEP = 143_000
# BLOOM small models (bloom-560m … bloom-7b1): 341B tokens ("Training Data" in the
# bigscience/bloom-1b1 model card) over their run; the intermediate repos publish
# global_step1000 … global_step600000 (bloom-1b1-intermediate). 341e9 / 600k ≈ 568K, and
# the first paper's tables count 550K tokens per step; we use 550K and let users override.
BLOOM_TOKENS_PER_STEP = 550_000
BLOOM_1B1_STEPS = (1000, 10000, 100000, 200000, 300000, 400000, 500000, 600000)


class SeriesError(CrosstimeError):
    """A checkpoint series or revision request that cannot be satisfied."""


def token_floor(tokens: Sequence[int | None]) -> float:
    """Where 0 tokens is drawn on a log axis of tokens seen: half the smallest positive count (1 if none)."""
    positive = [t for t in tokens if t]
    return min(positive) / 2 if positive else 1.0


def log_x(tokens: Sequence[int | None]) -> np.ndarray:
    """Positions of checkpoints on a log axis of tokens seen: the counts, 0 (or unknown) at :func:`token_floor`."""
    floor = token_floor(tokens)
    return np.array([t if t else floor for t in tokens], dtype=float)


def pythia_checkpoints() -> list[Checkpoint]:
    steps = [0] + [2**i for i in range(10)] + list(range(1000, PYTHIA_FINAL_STEP + 1, 1000))
    ckpts = [Checkpoint(f"step{s}", s, s * PYTHIA_TOKENS_PER_STEP) for s in steps]
    ckpts.append(Checkpoint("main", PYTHIA_FINAL_STEP, PYTHIA_FINAL_STEP * PYTHIA_TOKENS_PER_STEP))
    return ckpts


_OLMO_REVISION = re.compile(r"^step(\d+)-tokens(\d+(?:\.\d+)?)([MBT])$")
_SCALE = {"M": 10**6, "B": 10**9, "T": 10**12}


def parse_olmo_revision(revision: str) -> Checkpoint:
    """``step2000-tokens4B`` → Checkpoint(step=2000, tokens=4e9)."""
    match = _OLMO_REVISION.match(revision)
    if not match:
        raise SeriesError(
            f"{revision!r} is not an OLMo revision name; expected 'stepN-tokensXB' (e.g. step2000-tokens4B)"
        )
    step, amount, unit = match.groups()
    return Checkpoint(revision, int(step), int(round(float(amount) * _SCALE[unit])))


def parse_bloom_revision(revision: str, tokens_per_step: int = BLOOM_TOKENS_PER_STEP) -> Checkpoint:
    match = re.fullmatch(r"global_step(\d+)", revision)
    if not match:
        raise SeriesError(f"{revision!r} is not a BLOOM revision name; expected 'global_stepN'")
    step = int(match.group(1))
    return Checkpoint(revision, step, step * tokens_per_step)


def family_of(source: str) -> str:
    """Which built-in family a hub id belongs to: pythia, olmo, bloom or hub (unknown)."""
    name = source.lower()
    if name.startswith("eleutherai/pythia-"):
        return "pythia"
    if name.startswith("allenai/olmo"):
        return "olmo"
    if name.startswith("bigscience/bloom") and name.endswith("-intermediate"):
        return "bloom"
    return "hub"


class TokenLabeller(Protocol):
    """A series' own labels of its tokens (the toy world's grammar labels, say), each a flag-like
    property: per token a group id, 0 meaning "not this" (other groups: kinds of "this"), -1 unlabelled."""

    @property
    def properties(self) -> tuple[str, ...]:
        """The label names, in the order they are reported."""

    def label(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """One context of token ids ``[T]`` -> {property: int array ``[T]``} for every property."""


class CheckpointSeries:
    """An ordered list of checkpoints of one model, and how to load each of them.

    Build one with :func:`open_series` (a hub id or a local folder); checkpoints are
    kept sorted by tokens seen (ties by step).
    """

    def __init__(self, source: str, family: str, checkpoints: list[Checkpoint], local_root: Path | None = None):
        if not checkpoints:
            raise SeriesError(f"series {source!r} has no checkpoints")
        self.source = source
        self.family = family
        self.local_root = local_root
        order = sorted(checkpoints, key=lambda c: (c.tokens if c.tokens is not None else -1, c.step or 0))
        names = [c.revision for c in order]
        if len(set(names)) != len(names):
            raise SeriesError(f"series {source!r} lists a revision twice")
        self.checkpoints = order
        self._by_name = {c.revision: c for c in order}

    # -- listing and selecting -------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.local_root is not None

    @property
    def revisions(self) -> list[str]:
        return [c.revision for c in self.checkpoints]

    def __len__(self) -> int:
        return len(self.checkpoints)

    def __iter__(self):
        return iter(self.checkpoints)

    def __repr__(self) -> str:
        return f"CheckpointSeries({self.source!r}, family={self.family!r}, {len(self)} checkpoints)"

    def get(self, revision: str) -> Checkpoint:
        """The checkpoint named ``revision``; an unknown name lists the nearest valid ones."""
        if revision in self._by_name:
            return self._by_name[revision]
        number = re.search(r"(\d+)", revision)
        with_steps = [c for c in self.checkpoints if c.step is not None and c.revision != "main"]
        if number and with_steps:  # nearest by step number: what someone typing step1500 wants
            target = int(number.group(1))
            near = [c.revision for c in sorted(with_steps, key=lambda c: abs(c.step - target))[:3]]
        else:
            near = difflib.get_close_matches(revision, self.revisions, n=5, cutoff=0.3)
        raise SeriesError(
            f"unknown revision {revision!r} for series {self.source!r}; nearest valid: "
            f"{', '.join(near) if near else '(none)'} ({len(self)} revisions, "
            f"{self.revisions[0]} … {self.revisions[-1]})"
        )

    def nearest_step(self, step: int) -> Checkpoint:
        with_steps = [c for c in self.checkpoints if c.step is not None]
        if not with_steps:
            raise SeriesError(f"series {self.source!r} records no steps")
        return min(with_steps, key=lambda c: (abs(c.step - step), c.revision == "main"))

    def nearest_tokens(self, tokens: float) -> Checkpoint:
        with_tokens = [c for c in self.checkpoints if c.tokens is not None]
        if not with_tokens:
            raise SeriesError(f"series {self.source!r} records no token counts")
        return min(with_tokens, key=lambda c: (abs(c.tokens - tokens), c.revision == "main"))

    def by_step(self, step: int) -> Checkpoint:
        for c in self.checkpoints:
            if c.step == step and c.revision != "main":
                return c
        raise SeriesError(
            f"no checkpoint at step {step} in {self.source!r}; nearest: {self.nearest_step(step).revision}"
        )

    def select(
        self,
        revisions: list[str] | None = None,
        steps: list[int] | None = None,
        tokens: list[float] | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints by name, by exact step, or by nearest tokens seen; ordered by tokens."""
        chosen: list[Checkpoint] = []
        chosen += [self.get(r) for r in revisions or []]
        chosen += [self.by_step(s) for s in steps or []]
        chosen += [self.nearest_tokens(t) for t in tokens or []]
        if revisions is None and steps is None and tokens is None:
            chosen = list(self.checkpoints)
        unique = {c.revision: c for c in chosen}
        return [c for c in self.checkpoints if c.revision in unique]

    def subset(self, revisions: list[str]) -> CheckpointSeries:
        """A series over some of this series' revisions (same source and loading)."""
        return CheckpointSeries(self.source, self.family, [self.get(r) for r in revisions], self.local_root)

    def labeller(self) -> TokenLabeller | None:
        """This series' own token labeller (:data:`LABELLERS`, by family), or None when its family has
        none. Building one may load the tokenizer."""
        build = LABELLERS.get(self.family)
        return None if build is None else build(self)

    # -- loading ----------------------------------------------------------------
    def _where(self, revision: str) -> tuple[str, dict]:
        self.get(revision)
        if self.local_root is not None:
            return str(self.local_root / revision), {"local_files_only": True}
        if not hub_offline() and self.hub_unreachable is not None:  # the cache only: no retries
            return self.source, {"revision": revision, "local_files_only": True}
        return self.source, {"revision": revision}

    @functools.cached_property
    def hub_unreachable(self) -> str | None:
        """Why the Hugging Face Hub cannot be reached (asked once per series, at its first load), or None."""
        return hub_unreachable()

    @contextlib.contextmanager
    def _loading(self, what: str, revision: str) -> Iterator[None]:
        """Turn the failure of a transformers/huggingface_hub load into a :class:`SeriesError`
        naming the repo, the revision and the fix (disk full or permission errors pass on)."""
        try:
            yield
        except (OSError, EntryNotFoundError) as err:
            if isinstance(err, OSError) and err.errno in _SYSTEM_ERRNOS:
                raise  # the disk or the permissions, not the series: the command line says so
            raise SeriesError(self._load_failure(what, revision, err)) from err

    def _load_failure(self, what: str, revision: str, err: BaseException) -> str:
        """Why ``what`` of ``revision`` could not be loaded, in one line with the fix."""
        detail = _first_line(err)
        if self.local_root is not None:
            return (f"cannot load the {what} of revision {revision!r} from {self.local_root / revision} ({detail}); "
                    f"re-save it with save_pretrained, or remove {revision!r} from {self.local_root / SERIES_FILE}")
        chain = _causes(err)
        at = f"{self.source!r} at revision {revision!r}"
        if any(isinstance(e, RevisionNotFoundError) for e in chain):
            return f"the Hugging Face repo {self.source!r} has no revision {revision!r} ({detail}); check the name"
        if any(isinstance(e, RepositoryNotFoundError) for e in chain):
            return (f"no Hugging Face repo {self.source!r} (or it is private or gated: log in with `hf auth login`); "
                    "check the id (org/name), or pass a local series folder")
        download = f"download it where the Hub can be reached (`hf download {self.source} --revision {revision}`)"
        if hub_offline():
            return (f"the {what} of {at} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set (no "
                    f"downloads); {download}, or pass a local series folder")
        if self.hub_unreachable is not None:
            return (f"no network: cannot reach the Hugging Face Hub ({self.hub_unreachable}) and the {what} of {at} "
                    f"is not in the local cache; {download}, or pass a local series folder (HF_HUB_OFFLINE=1 reads "
                    "the cache without trying the network)")
        if any(isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled)) for e in chain):
            return f"the {what} of {at} is not in the local Hugging Face cache ({detail}); {download}, or pass a local series folder"
        return (f"cannot load the {what} of {at} ({detail}); check the repo id and revision and the network, "
                "or pass a local series folder")

    def load_model(self, revision: str, dtype: torch.dtype | str = torch.float32, device: str | torch.device = "cpu"):
        """The causal LM at ``revision``, in eval mode, on ``device``."""
        from transformers import AutoModelForCausalLM  # lazy: start-up time (transformers: ~2 s)

        where, kwargs = self._where(revision)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        with self._loading("model", revision), self._no_loading_bars():
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
        return model.to(device).eval()

    @contextlib.contextmanager
    def _no_loading_bars(self) -> Iterator[None]:
        """No "Loading weights" bar from transformers for a local checkpoint (a stage loads tens of
        them; its own bar says what it does). A Hub checkpoint keeps transformers' bars: they
        include the download's, which is worth seeing."""
        from transformers.utils import logging as hf_logging  # lazy: start-up time (transformers: ~2 s)

        if self.local_root is None or not hf_logging.is_progress_bar_enabled():
            yield
            return
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hf_logging.enable_progress_bar()

    def load_tokenizer(self, revision: str | None = None):
        """The tokenizer of ``revision`` (default: the last checkpoint)."""
        from transformers import AutoTokenizer  # lazy: start-up time (transformers: ~2 s)

        revision = revision or self.revisions[-1]
        where, kwargs = self._where(revision)
        with self._loading("tokenizer", revision):
            return AutoTokenizer.from_pretrained(where, **kwargs)

    def load_config(self, revision: str):
        from transformers import AutoConfig  # lazy: start-up time (transformers: ~2 s)

        where, kwargs = self._where(revision)
        with self._loading("config", revision):
            return AutoConfig.from_pretrained(where, **kwargs)

    def check_compatible(self, revisions: list[str] | None = None) -> int:
        """Check that the chosen checkpoints share width, depth and tokenizer; return the width d.

        Reads only configs and tokenizer files, never weights.
        """
        revisions = revisions or self.revisions
        shapes = {}
        for rev in revisions:
            cfg = self.load_config(rev)
            shapes[rev] = (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size)
        if len(set(shapes.values())) > 1:
            detail = "; ".join(f"{r}: d={s[0]}, layers={s[1]}, vocab={s[2]}" for r, s in shapes.items())
            raise SeriesError(
                f"checkpoints of {self.source!r} differ in width, depth or vocabulary ({detail}); "
                "a crosscoder needs checkpoints of one model. Choose revisions of one architecture."
            )
        if self.local_root is not None:
            vocabs = {}
            for rev in revisions:
                tok_file = self.local_root / rev / "tokenizer.json"
                vocabs[rev] = tok_file.read_bytes() if tok_file.exists() else None
            if len({v for v in vocabs.values()}) > 1:
                differ = [r for r in revisions if vocabs[r] != vocabs[revisions[0]]]
                raise SeriesError(
                    f"checkpoints of {self.source!r} do not share one tokenizer: {', '.join(differ)} "
                    f"differ from {revisions[0]}. All checkpoints must use the same tokenizer."
                )
        return next(iter(shapes.values()))[0]


def _toy_labeller(series: CheckpointSeries) -> TokenLabeller:
    """The toy grammar's labels, over the vocabulary of ``series``' tokenizer (its last checkpoint's)."""
    tokenizer = series.load_tokenizer()
    id_to_word = tuple(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    return GrammarLabeller(id_to_word, tokenizer.bos_token_id)


# The token labeller of each family that has one (:meth:`CheckpointSeries.labeller`).
LABELLERS: dict[str, Callable[[CheckpointSeries], TokenLabeller]] = {"toy": _toy_labeller}
# How a family's series is named to a reader (figure titles), where its folder's name would not say it.
DISPLAY_NAMES: dict[str, str] = {"toy": "the toy world"}

_SYSTEM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from (transformers wraps huggingface_hub's)."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


# -- opening a series -------------------------------------------------------------

def _number(value: object, what: str) -> int | None:
    """A step or token count of series.json: a non-negative integer, or None (unknown)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SeriesError(f"{what} is {value!r}, not an integer; write a whole number (or null when unknown)")
    if value < 0:
        raise SeriesError(f"{what} is {value}, a negative count; write the checkpoint's step and tokens seen (≥ 0)")
    return value


def _manifest_checkpoints(manifest_path: Path, manifest: object) -> list[Checkpoint]:
    """The checkpoints listed in a parsed ``series.json``, each entry checked."""
    shape = "expected {'checkpoints': [{'revision', 'step', 'tokens'}]}"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("checkpoints"), list):
        raise SeriesError(f"{manifest_path} is malformed (no list 'checkpoints'); {shape}")
    checkpoints = []
    for i, entry in enumerate(manifest["checkpoints"]):
        where = f"{manifest_path}, checkpoint {i}"
        if not isinstance(entry, dict) or "revision" not in entry:
            raise SeriesError(f"{where} is {entry!r}, not an entry with a revision; {shape}")
        try:
            revision = check_name(entry["revision"], f"{where}: revision")
        except UnsafeName as err:
            raise SeriesError(str(err)) from None
        checkpoints.append(Checkpoint(revision, _number(entry.get("step"), f"{where} ({revision}): step"),
                                      _number(entry.get("tokens"), f"{where} ({revision}): tokens")))
    return checkpoints


def _read_local(root: Path) -> CheckpointSeries:
    manifest_path = root / SERIES_FILE
    if not manifest_path.is_file():
        subdirs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise SeriesError(
            f"{root} is not a checkpoint series: it has no {SERIES_FILE}. A local series is a folder with "
            f"{SERIES_FILE} (listing revisions, steps and tokens) and one save_pretrained sub-folder per "
            f"revision{'; found sub-folders: ' + ', '.join(subdirs[:8]) if subdirs else ''}. "
            "Write one with crosstime.checkpoints.write_series_manifest(root, checkpoints)."
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SeriesError(f"{manifest_path} is malformed ({err}); expected {{'checkpoints': [{{'revision', 'step', 'tokens'}}]}}") from err
    except UnicodeDecodeError as err:
        raise SeriesError(f"{manifest_path} is not UTF-8 text (byte offset {err.start}); write it as UTF-8 JSON") from err
    checkpoints = _manifest_checkpoints(manifest_path, manifest)
    family = manifest.get("family", "local")
    if not isinstance(family, str):
        raise SeriesError(f"{manifest_path}: family {family!r} is not a string; write a name such as \"local\"")
    missing = [c.revision for c in checkpoints if not (root / c.revision / "config.json").is_file()]
    if missing:
        raise SeriesError(
            f"series {root} lists revisions with no saved model: {', '.join(missing)} "
            f"(expected {root}/<revision>/config.json from save_pretrained)"
        )
    pickled = [root / c.revision / PICKLED_WEIGHTS for c in checkpoints if _pickled_only(root / c.revision)]
    if pickled:  # transformers would unpickle it (code from the file runs; recent versions refuse with a traceback)
        raise SeriesError(f"{pickled[0]} holds the weights as a pickle{f' (and {len(pickled) - 1} more revisions)' if len(pickled) > 1 else ''}, "
                          "which crosstime does not load; re-save the checkpoint as safetensors: "
                          "model.save_pretrained(folder, safe_serialization=True)")
    return CheckpointSeries(str(root), family, checkpoints, local_root=root)


PICKLED_WEIGHTS = "pytorch_model.bin"


def _pickled_only(folder: Path) -> bool:
    """Whether a saved checkpoint's weights are only a pickle (``pytorch_model.bin`` or its shards)."""
    names = {p.name for p in folder.iterdir()}
    safetensors = any(n.startswith("model") and n.endswith((".safetensors", ".safetensors.index.json")) for n in names)
    return not safetensors and any(n.startswith("pytorch_model") and n.endswith((".bin", ".bin.index.json")) for n in names)


TOY_SERIES = "toy"  # the bare name of the built-in toy world


def resolve_source(source: str | Path) -> str | Path:
    """``source``, or for the bare name ``"toy"`` (when no path ``toy`` exists here) the folder of
    the built-in toy world, built first if it is not cached yet; it says where on stderr."""
    if isinstance(source, Path) or source != TOY_SERIES or Path(source).exists():
        return source
    root = toy_world()
    print(f"series {TOY_SERIES!r}: the built-in toy world in {root} "
          f"(set CROSSTIME_CACHE to keep it elsewhere; a folder ./{TOY_SERIES} would be used instead)",
          file=sys.stderr, flush=True)
    return root


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")  # org/name


def source_rule(source: str | Path) -> str | None:
    """Why ``source`` names a local folder rather than a Hub repo (the rule, in words), or None for a Hub
    id: ``org/name`` exactly, and no local folder is, or starts, its ``org`` part (``toyy/series``
    when ``toy/`` exists is a typo of a local path, not a repo)."""
    text = str(source)
    path = Path(text).expanduser()
    if isinstance(source, Path) or text.startswith((".", "/", "~")):
        return "it is written as a path"
    if os.path.lexists(path):
        return "it exists here"
    if not _HUB_ID.fullmatch(text) or ".." in text:
        return "it is not of the form org/name"
    if path.parent.exists():
        return f"its folder {path.parent} exists here"
    org = text.split("/")[0]
    near = sorted(p.name for p in Path.cwd().iterdir() if p.is_dir() and len(p.name) >= 3 and org.startswith(p.name))
    return f"the local folder {near[0]} starts it (a typo of a local path?)" if near else None


def looks_local(source: str | Path) -> bool:
    """Whether ``source`` names a local folder rather than a Hub repo (:func:`source_rule`)."""
    return source_rule(source) is not None


def _requested(revisions: list[str] | None) -> list[str] | None:
    """The revisions asked for, each checked as a folder name (they become ``RUN/activations/<revision>/``)."""
    if revisions is None:
        return None
    try:
        return [check_name(r, "requested revision") for r in revisions]
    except UnsafeName as err:
        raise SeriesError(str(err)) from None


class SeriesConfig(BaseModel):
    """The settings of :func:`open_series` (``crosstime series``)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="A local series folder or a Hugging Face repo id.")
    revisions: list[str] | None = Field(None, description="Revision names; needed for OLMo")
    tokens_per_step: int | None = Field(None, ge=1, description="Label an unknown family's steps by tokens.")


def open_series(source: str | Path, revisions: list[str] | None = None, tokens_per_step: int | None = None) -> CheckpointSeries:
    """Open a checkpoint series.

    ``source`` is a local folder (with ``series.json``) or a Hugging Face repo id. For hub
    ids of the built-in families the revision grid is known (Pythia) or parsed from the
    given ``revisions`` names (OLMo, BLOOM). No network call is made here; a source that
    :func:`looks_local` is never taken for a Hub id. ``"toy"`` is the built-in toy world
    (:func:`resolve_source`).
    """
    revisions = _requested(revisions)
    if tokens_per_step is not None and (isinstance(tokens_per_step, bool) or not isinstance(tokens_per_step, int)
                                        or tokens_per_step <= 0):
        raise SeriesError(f"tokens_per_step {tokens_per_step!r} must be a positive integer")
    source = resolve_source(source)
    rule = source_rule(source)
    if rule is not None:
        path = Path(source).expanduser()
        if not path.is_dir():
            why = "it is a file, not a folder" if path.exists() else "it does not exist"
            raise SeriesError(f"no such series folder {source} ({why}; taken as a local path because {rule}); pass "
                              f"the folder of a checkpoint series (with {SERIES_FILE}); a Hugging Face repo id looks "
                              "like org/name")
        series = _read_local(path.resolve())
        return series.subset(revisions) if revisions else series

    source = str(source)
    family = family_of(source)
    if family == "pythia":
        series = CheckpointSeries(source, family, pythia_checkpoints())
        return series.subset(revisions) if revisions else series
    if family == "olmo":
        if not revisions:
            raise SeriesError(
                f"OLMo revisions cannot be listed offline; pass them explicitly, e.g. "
                f"revisions=['step1000-tokens4B', 'step20000-tokens84B'] for {source}"
            )
        return CheckpointSeries(source, family, [parse_olmo_revision(r) for r in revisions])
    if family == "bloom":
        per_step = tokens_per_step or BLOOM_TOKENS_PER_STEP
        names = revisions or [f"global_step{s}" for s in BLOOM_1B1_STEPS]
        return CheckpointSeries(source, family, [parse_bloom_revision(r, per_step) for r in names])
    if not revisions:
        raise SeriesError(
            f"{source!r} is neither a local series folder nor a known family (Pythia, OLMo, BLOOM intermediate); "
            "pass its revisions explicitly (and tokens_per_step to label them by tokens)"
        )
    return CheckpointSeries(
        source,
        "hub",
        [
            Checkpoint(r, int(m.group(1)) if (m := re.search(r"(\d+)", r)) else None,
                       int(m.group(1)) * tokens_per_step if (m and tokens_per_step) else None)
            for r in revisions
        ],
    )
