"""The stage contract: a stage is a *declaration* — its config, the artifacts it reads and the
artifacts it writes — and everything else is derived from it.

A stage module (``crosstime/stages/*.py``) builds one :class:`Stage` and :func:`register` s it:

    EVALUATE = register(Stage(name="evaluate", config=EvaluateConfig, work=evaluate,
                              reads=(ACTIVATIONS, CROSSCODER), writes=(EVALUATION,), show=..., help=...))

From the declaration come: the record key in ``RUN/config.yaml`` (the name, ``name/KEY`` for a
keyed stage such as ``attribute/TASK``), the marker file that says the output exists and the
files checksummed into the record (the written :class:`Artifact` s'), the upstream digest (the
records of the stages that wrote what it reads), the check of its inputs before any work with
the "run `crosstime X …` first" message (:mod:`crosstime.runs`), what the report reads, and
the CLI command (:mod:`crosstime.cli`). An :class:`Artifact` is a typed output of a run: its
place, its marker, its checksummed files and the function that reads it (for the one run
reader, :mod:`crosstime.runs`).

A stage's config inherits :class:`StageConfig` (``extra="forbid"``, so a misspelt setting is
an error; ``run`` is the run directory) and names itself (``stage``) and the settings that
change *how* it runs but not *what* it writes (``execution``: progress, device, batch sizes).
A stage

1. validates its input before any work,
2. enters :func:`writing`: it takes the run's lock (one writer per run directory: a second
   one is refused at once, naming the stage and process that hold it; readers are never
   blocked) and calls :func:`begin`, which removes from ``RUN/config.yaml`` its record and the
   record of any stage that wrote an artifact it is about to write, so an artifact being
   rewritten is never taken for finished (its old output may be half overwritten),
3. does the work, writing every file atomically,
4. leaves :func:`writing`, which calls :func:`finish` on success: it records the settings
   that change its output, the artifacts it wrote (``writes``), a digest of the records of
   the stages whose artifacts it read (``upstream``), since their output changes its output
   too, and the checksums of its checksummed files. The lock is released on every way out
   (and by the system when a process dies).

:func:`finished` is true when the recorded settings equal the config's, the upstream stages'
records are those it was made from, and the stage's output exists; that is what the demo
(and a user) may reuse. The run directory itself, progress bars and devices are never part
of the comparison, so a moved or copied run directory, or a run with ``--no-progress``,
reuses its finished stages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import torch
import yaml
from filelock import FileLock, Timeout
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from crosstime import distributed
from crosstime.artifacts import RUN_LOCK, RUN_LOCK_HOLDER, ArtifactError, RunDir
from crosstime.errors import CrosstimeError
from crosstime.files import sha256_file, write_json, write_text

T = TypeVar("T")

DEVICE_HELP = "'auto' (this rank's GPU if there is one, else the CPU), 'cpu', 'cuda', 'cuda:1', …"


def parse_count(value: Any) -> Any:
    """'1M' -> 1_000_000, '250K' -> 250_000, '2e6' -> 2_000_000; anything else is left to the field's type."""
    if not isinstance(value, str):
        return value
    text = value.strip().upper().replace("_", "").replace(",", "")
    scale = {"K": 10**3, "M": 10**6, "B": 10**9}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        amount = float(number) * scale
    except ValueError:
        return value  # the int validator names it
    return int(amount) if math.isfinite(amount) and amount == int(amount) else value


Count = Annotated[int, BeforeValidator(parse_count)]
"""An int setting that also reads token counts such as ``400M`` or ``1.5K``."""


def check_device(name: str) -> str:
    """A device setting that can be used on this machine (checked before any work): 'auto', 'cpu',
    'cuda' or 'cuda:N' with CUDA available, or any other name torch knows and has."""
    import torch  # lazy: start-up time (torch, only to check a device setting; crosstime.stage is imported without it)

    if name == "auto":
        return name
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"{name!r} is not a device torch knows ({err}); use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name!r} asks for CUDA but this machine has none (torch {torch.__version__}, "
                             f"cuda build {torch.version.cuda}); use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


Device = Annotated[str, AfterValidator(check_device)]
"""A device setting, checked when the config is made: a stage never starts work on a device it lacks."""


# -- artifacts and stage declarations ----------------------------------------------------------

@dataclass(frozen=True)
class Artifact(Generic[T]):
    """A typed output of a run directory: where it lives, what marks it written, which of its files
    are checksummed into the writer's record, and how it is read (by :mod:`crosstime.runs` only).

    ``path`` and ``marker`` are relative to the run and may hold ``{key}`` for a keyed artifact
    (one per task: ``attribution/{key}``). ``checksummed``: globs relative to the run of the files
    a reader verifies against the record (empty where the artifact verifies its own files, as the
    store and the crosscoder do). ``read(run, key)`` gets a :class:`crosstime.runs.Run` whose
    record of this artifact was verified; it returns the typed object. ``writer``: the stage that
    makes it, named in the "run `crosstime X` first" message. ``self_verifying``: its own files
    carry what a reader checks (the store's manifest and chunk seals, the crosscoder's recorded
    sha256), so it is read wherever its marker exists, vouched for by a record or not (a
    crosscoder saved by ``fit(out=…)`` or ``Crosscoder.save`` is a crosscoder).
    """

    name: str
    path: str
    marker: str
    read: Callable[[Any, str | None], T]
    writer: str
    description: str
    checksummed: tuple[str, ...] = ()
    self_verifying: bool = False

    @property
    def keyed(self) -> bool:
        return "{key}" in self.path

    def ident(self, key: str | None = None) -> str:
        """How a record names it in its ``writes``: ``crosscoder``, ``attribution/simple_agreement``."""
        self._check_key(key)
        return self.name if key is None else f"{self.name}/{key}"

    def where(self, run: RunDir, key: str | None = None) -> Path:
        self._check_key(key)
        return run.root / self.path.format(key=key)

    def marker_path(self, run: RunDir, key: str | None = None) -> Path:
        self._check_key(key)
        return run.root / self.marker.format(key=key)

    def files(self, run: RunDir, key: str | None = None) -> list[Path]:
        """The checksummed files there are now, sorted."""
        self._check_key(key)
        found = {p for pattern in self.checksummed for p in run.root.glob(pattern.format(key=key)) if p.is_file()}
        return sorted(found)

    def _check_key(self, key: str | None) -> None:
        if self.keyed != (key is not None):
            raise TypeError(f"artifact {self.name!r} is {'' if self.keyed else 'not '}keyed; got key {key!r}")


@dataclass(frozen=True)
class Stage:
    """A stage, declared: the one place its name, config, inputs, outputs and command are said.

    ``work(config) -> result`` is the Python API (it validates, then does the work inside
    :func:`writing`); ``reads`` are required inputs, checked before any work by
    :func:`crosstime.runs.open_inputs`; ``optional_reads`` are read when the run has them (their
    writers' records still go into the upstream digest); ``writes`` are always written;
    ``writes_also(config)`` adds artifacts a config writes besides (streaming training that keeps
    its store). ``key(config)`` names a keyed stage's artifact (attribute: the task's name), which
    the option ``key_field`` sets.
    ``show(result, config)`` prints the command's result; ``positional`` are the command's
    arguments (the rest are options, named as their fields unless ``options`` renames them:
    import's ``run`` is ``--out``); ``help`` is its one-line help; ``resumable``: a stage stopped
    half-way (disk full, Ctrl-C) resumes when re-run, and its messages say so (import writes all
    or nothing, so its messages say nothing was kept).
    """

    name: str
    config: type[StageConfig]
    work: Callable[[Any], Any]
    writes: tuple[Artifact, ...]
    show: Callable[[Any, Any], None]
    help: str
    reads: tuple[Artifact, ...] = ()
    optional_reads: tuple[Artifact, ...] = ()
    writes_also: Callable[[Any], tuple[Artifact, ...]] | None = None
    key: Callable[[Any], str] | None = None
    key_field: str | None = None
    positional: tuple[str, ...] = ("run",)
    options: dict[str, str] = field(default_factory=dict)
    resumable: bool = True

    def record_key(self, config: StageConfig) -> str:
        return self.name if self.key is None else f"{self.name}/{self.key(config)}"

    def key_of(self, artifact: Artifact, config: StageConfig) -> str | None:
        """The key ``config`` writes ``artifact`` under: the stage's key for a keyed artifact, else None."""
        return self.key(config) if artifact.keyed and self.key is not None else None

    def written(self, config: StageConfig) -> tuple[Artifact, ...]:
        return self.writes + (self.writes_also(config) if self.writes_also is not None else ())

    def written_idents(self, config: StageConfig) -> list[str]:
        return [a.ident(self.key_of(a, config)) for a in self.written(config)]

    def hint(self, run: str | Path, key: str | None = None) -> str:
        """The command that makes this stage's output in ``run``: its positional arguments and
        required options as placeholders (``crosstime harvest RUN SERIES --layer LAYER``)."""
        parts = [f"crosstime {self.name}"]
        for name in self.positional:
            parts.append(str(run) if name == "run" else name.upper())
        for name, info in self.config.model_fields.items():
            if info.is_required() and name not in self.positional:
                value = str(run) if name == "run" else key if key is not None and name == self.key_field else name.upper()
                parts.append(f"--{self.options.get(name, name).replace('_', '-')} {value}")
        return " ".join(parts)


STAGES: dict[str, Stage] = {}
"""The registered stages by name, in the order registered (the pipeline's: :mod:`crosstime.stages`)."""


def register(declared: Stage) -> Stage:
    """Add a stage to :data:`STAGES` (its config's ``stage`` must be its name); returns it."""
    if declared.config.stage != declared.name:
        raise TypeError(f"stage {declared.name!r}: its config {declared.config.__name__} names itself "
                        f"{declared.config.stage!r}")
    known = STAGES.get(declared.name)
    if known is not None and known is not declared:
        raise ValueError(f"a stage named {declared.name!r} is registered already ({known.config.__name__})")
    STAGES[declared.name] = declared
    return declared


def declaration(config: StageConfig) -> Stage:
    """The registered stage of ``config``."""
    found = STAGES.get(config.stage)
    if found is None or not isinstance(config, found.config):
        raise TypeError(f"{type(config).__name__} is not the config of a registered stage (stage {config.stage!r}); "
                        "register its Stage first (crosstime.stage.register)")
    return found


class StageConfig(BaseModel):
    """Settings every stage shares; each stage's config inherits this."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting

    run: Path = Field(description="run directory (every stage reads and writes one)")
    progress: bool = Field(True, description="show progress bars")

    stage: ClassVar[str] = ""
    execution: ClassVar[frozenset[str]] = frozenset()  # settings that do not change the output

    @property
    def rundir(self) -> RunDir:
        return RunDir(self.run)

    def record_key(self) -> str:
        """This stage's section in ``config.yaml``."""
        return declaration(self).record_key(self)

    def output(self) -> Path:
        """The file whose existence marks the stage's output (checked by :func:`finished`): the
        marker of the first artifact it writes."""
        declared = declaration(self)
        first = declared.writes[0]
        return first.marker_path(self.rundir, declared.key_of(first, self))

    def output_files(self) -> list[Path]:
        """The checksummed files of the artifacts it wrote: their sha256 goes into the record, and a
        reader checks them with :func:`verify_outputs`."""
        declared = declaration(self)
        return sorted({p for a in declared.written(self) for p in a.files(self.rundir, declared.key_of(a, self))})

    def resolved(self) -> StageConfig:
        """The config with unset settings decided (from the run or the defaults); itself by default."""
        return self

    def output_settings(self) -> dict[str, Any]:
        """The settings recorded in ``config.yaml``: everything but the run and execution settings."""
        return self.model_dump(mode="json", exclude={"run", "progress", *self.execution})


def read_records(run: RunDir) -> dict[str, Any]:
    """``config.yaml`` as ``{stage: settings}`` (empty when the run has none)."""
    if not run.config_file.exists():
        return {}
    try:
        data = yaml.safe_load(run.config_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{run.config_file} is not valid YAML ({err}); delete it and re-run the stages") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ArtifactError(f"{run.config_file} should map stage names to settings; delete it and re-run the stages")
    return data


def _write_records(run: RunDir, data: dict[str, Any]) -> None:
    if distributed.world().is_main:  # one writer
        run.root.mkdir(parents=True, exist_ok=True)
        write_text(run.config_file, yaml.safe_dump(data, sort_keys=False))


INPUTS_KEY = "inputs_digest"
FILES_KEY = "files"  # {path relative to the run: sha256} of the stage's output_files()
WRITES_KEY = "writes"  # the artifacts the stage wrote (Artifact.ident), which the record vouches for


def writes_of(record_key: str, record: dict[str, Any]) -> list[str]:
    """The artifacts a record vouches for: its ``writes``. A record written before records listed
    them is read by its stage's declaration (the artifacts the stage always writes)."""
    writes = record.get(WRITES_KEY) if isinstance(record, dict) else None
    if isinstance(writes, list):
        return writes
    name, _, key = record_key.partition("/")
    declared = STAGES.get(name)
    if declared is None:
        return []
    return [a.ident(key if a.keyed else None) for a in declared.writes]


def record_of(records: dict[str, Any], ident: str) -> str | None:
    """The key of the record that vouches for artifact ``ident`` (None: no finished stage wrote it)."""
    for key, record in records.items():
        if ident in writes_of(key, record):
            return key
    return None


def begin(config: StageConfig) -> None:
    """Forget the stage's recorded settings, and the records of any stage that wrote an artifact it
    is about to write: from now until :func:`finish` those are in flux."""
    records = read_records(config.rundir)
    writing_now = set(declaration(config).written_idents(config))
    stale = [k for k, r in records.items() if k == config.record_key() or writing_now & set(writes_of(k, r))]
    for key in stale:
        del records[key]
    if stale:
        _write_records(config.rundir, records)


def _upstream_keys(config: StageConfig, records: dict[str, Any]) -> list[str]:
    """The records of the stages whose artifacts ``config``'s stage reads (required or optional; every
    key of a keyed one)."""
    declared = declaration(config)
    names = {a.name for a in (*declared.reads, *declared.optional_reads)}
    own = config.record_key()
    return sorted(k for k, r in records.items()
                  if k != own and any(ident.split("/")[0] in names for ident in writes_of(k, r)))


def _inputs_digest(config: StageConfig, records: dict[str, Any]) -> str:
    """A digest of the records of the stages ``config`` reads (their settings decide its input)."""
    text = json.dumps({k: records[k] for k in _upstream_keys(config, records)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finish(config: StageConfig, **resolved: Any) -> None:
    """Record the stage's output settings (``resolved`` adds values decided during the work), the
    artifacts it wrote, the digest of its upstream records and the checksums of its output files."""
    run = config.rundir
    records = read_records(run)
    record = {**config.resolved().output_settings(), **resolved, INPUTS_KEY: _inputs_digest(config, records),
              WRITES_KEY: declaration(config).written_idents(config)}
    files = {str(p.relative_to(run.root)): sha256_file(p) for p in sorted(config.output_files())}
    if files:
        record[FILES_KEY] = files
    records[config.record_key()] = record
    _write_records(run, records)


def verify_outputs(run: RunDir, key: str) -> bool:
    """Check the files stage ``key`` recorded when it finished; False when it has no record (it never
    finished, or was killed half-way: its outputs are not to be read). A recorded file that is
    missing or changed since is an :class:`ArtifactError` naming it and the fix."""
    record = read_records(run).get(key)
    if record is None:
        return False
    for rel, want in (record.get(FILES_KEY) or {}).items():
        path = run.root / rel
        if not path.is_file():
            raise ArtifactError(f"{path} was written by `crosstime {key.split('/')[0]}` but is gone; re-run that stage")
        if sha256_file(path) != want:
            raise ArtifactError(f"{path} changed after `crosstime {key.split('/')[0]}` wrote it (its checksum in "
                                f"{run.config_file} differs); re-run that stage")
    return True


def rewrote(run: RunDir, ident: str, paths: list[Path]) -> None:
    """Record the new checksums of ``paths``, checksummed files of artifact ``ident`` that a later
    command rewrote on purpose (``annotate --import`` re-rendering the report), so the record still
    vouches for them and an edit by anything else is still caught by :func:`verify_outputs`."""
    records = read_records(run)
    key = record_of(records, ident)
    if key is None:
        return
    records[key].setdefault(FILES_KEY, {}).update({str(p.relative_to(run.root)): sha256_file(p) for p in paths})
    _write_records(run, records)


def recorded(config: StageConfig) -> dict[str, Any] | None:
    """The settings recorded for this config's stage, or None."""
    return read_records(config.rundir).get(config.record_key())


def finished(config: StageConfig) -> bool:
    """Whether the stage finished with these output settings, on the upstream outputs there are
    now, and its output still exists."""
    records = read_records(config.rundir)
    done = records.get(config.record_key())
    if done is None or not config.output().exists():
        return False
    settings = config.resolved().output_settings()
    same_inputs = done.get(INPUTS_KEY) == _inputs_digest(config, records)
    return same_inputs and {k: done.get(k) for k in settings} == settings


class RunBusy(CrosstimeError):
    """Another process is writing this run directory."""


def _holder(run: RunDir) -> str:
    """Who holds the run's lock, in words (as the holder wrote it down when it took the lock)."""
    path = run.root / RUN_LOCK_HOLDER
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"`crosstime {info['stage']}` (pid {info['pid']} on {info['host']}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['since']))})")
    except (OSError, ValueError, KeyError, TypeError):  # written a moment after the lock is taken
        return "another crosstime process"


@contextlib.contextmanager
def lock(run: RunDir, stage_name: str) -> Iterator[None]:
    """Hold ``RUN/.crosstime.lock`` (the ``filelock`` package) while writing ``run``.

    A second writer is refused at once with :class:`RunBusy` naming the holder; readers never
    take the lock. Under torchrun the main rank holds it for all ranks.
    """
    if not distributed.world().is_main:
        yield
        return

    created = not run.root.exists()
    run.root.mkdir(parents=True, exist_ok=True)
    held = FileLock(run.root / RUN_LOCK, blocking=False)
    try:
        held.acquire()
    except Timeout:
        raise RunBusy(f"{run.root} is being written by {_holder(run)}; wait for it to finish (or stop it) before "
                      f"running `crosstime {stage_name}` on it. Reading the run is not blocked.") from None
    try:
        write_json(run.root / RUN_LOCK_HOLDER, {"stage": stage_name, "pid": os.getpid(), "host": socket.gethostname(),
                                                 "since": time.time()})
        yield
    finally:
        (run.root / RUN_LOCK_HOLDER).unlink(missing_ok=True)
        held.release()
        if created and {p.name for p in run.root.iterdir()} <= {RUN_LOCK}:  # a stage that wrote nothing
            (run.root / RUN_LOCK).unlink(missing_ok=True)
            run.root.rmdir()


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity)."""
    return len(os.sched_getaffinity(0))


THREADS_HELP = "torch CPU threads for the stage (default: every core this process may use)"


def threads_line(threads: int) -> str:
    """What the command line says at a stage's start: ``threads: 2 (of 2 cores; --threads to change)``.
    The command line runs every stage under :func:`torch_threads` (``--threads``, default :func:`cpu_cores`);
    a stage whose config has ``threads`` (the scan) gets the same count in it."""
    return f"threads: {threads} (of {cpu_cores()} cores; --threads to change)"


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """torch's CPU threads set to ``threads`` for the block (None: left as they are), restored afterwards;
    yields the count in use."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def writing(config: StageConfig) -> Iterator[dict[str, Any]]:
    """The stage's work: under the run's lock, between :func:`begin` and (on success) :func:`finish`.

    Yields a dict for values decided during the work (they are recorded beside the settings)."""
    with lock(config.rundir, config.stage):
        begin(config)
        resolved: dict[str, Any] = {}
        yield resolved
        finish(config, **resolved)
