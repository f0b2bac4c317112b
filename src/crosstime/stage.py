"""The stage contract: every stage is ``stage(config) -> result``, with one config base.

A stage's config inherits :class:`StageConfig` (``extra="forbid"``, so a misspelt setting is
an error; ``run`` is the run directory) and names itself (``stage``) and the settings that
change *how* it runs but not *what* it writes (``execution``: progress, device, batch sizes).
A stage

1. validates its input before any work,
2. enters :func:`writing`: it takes the run's lock (one writer per run directory: a second
   one is refused at once, naming the stage and process that hold it; readers are never
   blocked) and calls :func:`begin`, which removes its record from ``RUN/config.yaml``, so a
   stage killed half-way is never taken for finished (its old output may be half overwritten),
3. does the work, writing every file atomically,
4. leaves :func:`writing`, which calls :func:`finish` on success: it records the settings
   that change its output, and a digest of the records of the stages it reads
   (``upstream``), since their output changes its output too. The lock is released on every
   way out (and by the system when a process dies).

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
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from crosstime import distributed
from crosstime.artifacts import RUN_LOCK, RUN_LOCK_HOLDER, ArtifactError, RunDir
from crosstime.errors import CrosstimeError
from crosstime.files import sha256_file, write_json, write_text

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
    import torch

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


class StageConfig(BaseModel):
    """Settings every stage shares; each stage's config inherits this."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting

    run: Path = Field(description="run directory (every stage reads and writes one)")
    progress: bool = Field(True, description="show progress bars")

    stage: ClassVar[str] = ""
    execution: ClassVar[frozenset[str]] = frozenset()  # settings that do not change the output
    upstream: ClassVar[tuple[str, ...] | None] = ()  # stages whose output it reads (None: every other stage)

    @property
    def rundir(self) -> RunDir:
        return RunDir(self.run)

    def record_key(self) -> str:
        """This stage's section in ``config.yaml``."""
        return self.stage

    @abstractmethod
    def output(self) -> Path:
        """The file whose existence marks the stage's output (checked by :func:`finished`)."""

    def output_files(self) -> list[Path]:
        """The files the stage wrote that later stages read: their sha256 goes into the record, and a
        reader checks them with :func:`verify_outputs` (none by default: the store and the crosscoder
        verify their own files)."""
        return []

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


def begin(config: StageConfig) -> None:
    """Forget the stage's recorded settings: from now until :func:`finish` its output is in flux."""
    records = read_records(config.rundir)
    if config.record_key() in records:
        del records[config.record_key()]
        _write_records(config.rundir, records)


INPUTS_KEY = "inputs_digest"
FILES_KEY = "files"  # {path relative to the run: sha256} of the stage's output_files()


def _inputs_digest(config: StageConfig, records: dict[str, Any]) -> str:
    """A digest of the records of the stages ``config`` reads (their settings decide its input)."""
    key = config.record_key()
    names = sorted(k for k in records if k != key) if config.upstream is None else list(config.upstream)
    text = json.dumps({k: records.get(k) for k in names}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finish(config: StageConfig, **resolved: Any) -> None:
    """Record the stage's output settings (``resolved`` adds values decided during the work), the
    digest of its upstream records and the checksums of its output files."""
    run = config.rundir
    records = read_records(run)
    record = {**config.resolved().output_settings(), **resolved, INPUTS_KEY: _inputs_digest(config, records)}
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
    from filelock import FileLock, Timeout

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


@contextlib.contextmanager
def writing(config: StageConfig) -> Iterator[dict[str, Any]]:
    """The stage's work: under the run's lock, between :func:`begin` and (on success) :func:`finish`.

    Yields a dict for values decided during the work (they are recorded beside the settings)."""
    with lock(config.rundir, config.stage):
        begin(config)
        resolved: dict[str, Any] = {}
        yield resolved
        finish(config, **resolved)
