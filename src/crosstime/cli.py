"""The ``crosstime`` command line: every command is built from a config (:func:`config_command`).

A pipeline stage's command comes from its declaration (:mod:`crosstime.stage`); every other
command (``series``, ``annotate``, ``serve``, ``export``, ``push``, ``toy build``, ``tasks make``)
from a small config of its own. Every option is a field of the config (name, help text,
default, bounds: one place, the config), so the command line and the Python API cannot drift
apart. Values reach the config as typed (``--lr 1e-3``, ``--tokens 400M``, ``--revisions a,b``)
and the config validates them.

One error path (:func:`one_line_errors`, around every command, and the app's group for
usage errors): an expected failure is one line on stderr, ``error: …``, naming the file or
option and the fix, and exit code 2 (130 for Ctrl-C). Expected are our
:class:`~crosstime.errors.CrosstimeError` s, a setting the config refuses (pydantic's
``ValidationError``), a usage error (unknown option, missing argument), and these failures of
the system: disk full, permission denied or a read-only file system, a named input that does
not exist, a file we read that is not UTF-8, an interrupt. Anything else is a bug and keeps
its traceback. ``crosstime --debug …`` (or ``CROSSTIME_DEBUG=1``) shows the traceback of an
expected failure too.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import io
import os
import shutil
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperGroup

import crosstime.stages  # noqa: F401  (registers the built-in stages: their commands come from their declarations)
from crosstime import __version__
from crosstime.demo import DemoConfig, DemoResult, demo
from crosstime.errors import CrosstimeError
from crosstime.files import write_text
from crosstime.interop.exporting import ExportConfig, PushConfig, export_run, push_run
from crosstime.probes import PROBE_KINDS, make_probe_rows, rows_jsonl
from crosstime.progress import end_line
from crosstime.report import export_annotations, import_annotations
from crosstime.report.serve import ServeConfig, serve
from crosstime.series import SERIES_FILE, CheckpointSeries, SeriesConfig, open_series
from crosstime.stage import STAGES, THREADS_HELP, Stage, cpu_cores, threads_line, torch_threads
from crosstime.toy import ToyConfig, build_toy_world, read_build, toy_world_cached, toy_world_path

# click's exceptions, as the typer installed uses them (typer ≥ 0.17 carries its own copy of click)
_CLICK = sys.modules[typer.BadParameter.__module__]
DEBUG_ENV = "CROSSTIME_DEBUG"
_state = {"debug": False}  # set by the app's callback on every invocation (``--debug``)


def _untagged(params: list) -> list:
    """``params`` with no type tag (``<bool>``, ``<str>``) in their help: a flag's name says it is a
    switch and an argument's name (RUN, SERIES) says what it takes; options keep their metavar
    (N, X, PATH, A,B, a|b)."""
    for param in params:
        if isinstance(param, TyperArgument) or param.metavar is None:
            param.display_type_rich = _no_type_tag
    return params


def _no_type_tag(ctx: Any) -> None:
    return None


class _UntaggedGroup(TyperGroup):
    """A command group whose help, and its commands' help, shows no type tags (:func:`_untagged`)."""

    def get_params(self, ctx: Any) -> list:
        return _untagged(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            help_option = command.get_help_option(ctx)
            _untagged([*command.params, *([help_option] if help_option is not None else [])])
        return command


class _OneLineGroup(_UntaggedGroup):
    """The app's command group: a usage error (unknown option, missing argument, a value click
    refuses) is one line ``error: …`` with exit code 2, like every other expected failure."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK.UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # `crosstime` alone: the help is the answer
                if err.format_message().strip():  # with rich, typer has printed the help already
                    err.show()
                sys.exit(err.exit_code)
            where = f" (see `{err.ctx.command_path} --help`)" if err.ctx is not None else ""
            typer.echo(f"error: {_one_line(err.format_message())}{where}", err=True)
            sys.exit(2)
        except _CLICK.ClickException as err:
            typer.echo(f"error: {_one_line(err.format_message())}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # non-standalone click returns Exit's code


class _StagesFirst(typer.Typer):
    """The app: the registered stages' commands (:func:`stage_commands`), then the commands added to it."""

    @property
    def registered_commands(self) -> list:
        return [*stage_commands(), *self._own_commands]

    @registered_commands.setter
    def registered_commands(self, value: list) -> None:
        self._own_commands = value

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        def decorator(f: Any) -> Any:  # typer appends to registered_commands, which is made anew: to the own list
            scratch = typer.Typer()
            scratch.command(*args, **kwargs)(f)
            self._own_commands += scratch.registered_commands
            return f

        return decorator


app = _StagesFirst(
    cls=_OneLineGroup,
    help="crosstime: sparse crosscoders over pretraining checkpoints — when does a model learn what?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"crosstime {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help=f"Show the traceback of an expected failure too "
                                                       f"(or set {DEBUG_ENV}=1)."),
) -> None:
    """crosstime: sparse crosscoders over pretraining checkpoints."""
    _state["debug"] = debug


# -- the one error path ------------------------------------------------------------------------

def _one_line(message: str) -> str:
    """``message`` on one line (a multi-line message's lines joined with '; ')."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _fail(message: str, code: int = 2) -> typer.Exit:
    end_line()  # a progress bar drawn on the terminal keeps its line: the error starts its own
    typer.echo(f"error: {_one_line(message)}", err=True)
    return typer.Exit(code)


def _debugging() -> bool:
    return _state["debug"] or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _frames(tb: types.TracebackType | None) -> list[types.FrameType]:
    """The frames of a traceback, innermost first."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames[::-1]


def _open_file(err: BaseException) -> str | None:
    """The file an error happened on when the error does not say (a write's ENOSPC, a decode
    error): the innermost open file object in the frames it passed through."""
    for frame in _frames(err.__traceback__):
        for value in frame.f_locals.values():
            name = getattr(value, "name", None) if isinstance(value, io.IOBase) else None
            if isinstance(name, (str, os.PathLike)):  # open(path).name is the path as given
                return os.fspath(name)
    return None


def _mount(path: str) -> str:
    """The device (and mount point) a path lies on, as ``/dev/sda1 (mounted at /data)``."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    while not os.path.ismount(where) and where != where.parent:
        where = where.parent
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            devices = {fields[1]: fields[0] for fields in (line.split() for line in handle) if len(fields) > 1}
    except OSError:  # not Linux: the mount point alone says where
        devices = {}
    device = devices.get(str(where))
    return f"{device} (mounted at {where})" if device else str(where)


def _is_named(filename: str, inputs: Sequence[str]) -> bool:
    """Whether ``filename`` is one of the paths the user named, or inside one of them."""
    path = Path(filename).expanduser().absolute()
    for given in inputs:
        named = Path(given).expanduser().absolute()
        if path == named or named in path.parents:
            return True
    return False


def _os_message(err: OSError, inputs: Sequence[str], rerun: str) -> str | None:
    """The one line for a failure of the system we expect, or None (a bug: keep the traceback)."""
    file = err.filename or _open_file(err)
    shown = str(file) if file is not None else "a file"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        place = _mount(str(file) if file is not None else (inputs[0] if inputs else "."))
        full = "no space left" if err.errno == errno.ENOSPC else "disk quota exceeded"
        return f"{full} on {place} while writing {shown}; {rerun}"
    if err.errno == errno.EACCES or err.errno == errno.EPERM:
        return (f"permission denied on {shown} ({err.strerror}); make it readable and writable by you, or choose "
                "another folder")
    if err.errno == errno.EROFS:
        return f"{shown} is on a read-only file system; choose a writable folder"
    if err.errno == errno.ENOENT and err.filename is not None and _is_named(str(err.filename), inputs):
        return f"{err.filename} does not exist; check the path you gave"
    return None


def _decode_message(err: UnicodeDecodeError, inputs: Sequence[str]) -> str:
    file = _open_file(err)
    if file is None:  # the named input that is a file, when there is just one
        files = [g for g in inputs if Path(g).expanduser().is_file()]
        file = files[0] if len(files) == 1 else None
    what = file if file is not None else f"a file crosstime read (inputs: {', '.join(inputs) or 'none'})"
    return (f"{what} is not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at offset {err.start}: "
            f"{err.reason}); crosstime reads text as UTF-8: convert it (e.g. `iconv -f latin1 -t utf-8`)")


STAGE_RERUN = "everything written before is kept; free space and re-run the same command: it resumes"
STAGE_INTERRUPTED = "interrupted; a re-run resumes"
# what a command that writes all or nothing (import, export, push) says
_INTEROP_RERUN = "nothing was kept; free space and re-run the same command"
_INTEROP_INTERRUPTED = "interrupted; nothing was kept: re-run the same command"


@contextlib.contextmanager
def one_line_errors(inputs: Sequence[str] = (), rerun: str = STAGE_RERUN,
                    interrupted: str = STAGE_INTERRUPTED) -> Iterator[None]:
    """Turn every expected failure inside into one line ``error: …`` and exit code 2 (130 for an
    interrupt); anything else is a bug and keeps its traceback. ``inputs``: the paths the user
    named (a missing one is an expected failure). ``rerun`` and ``interrupted``: what the
    disk-full and the interrupt messages say was kept and what to do (a stage resumes)."""
    try:
        yield
    except ValidationError as err:
        _expected(err, validation_message(err))
    except CrosstimeError as err:
        _expected(err, str(err))
    except UnicodeDecodeError as err:
        _expected(err, _decode_message(err, inputs))
    except OSError as err:
        message = _os_message(err, inputs, rerun)
        if message is None:
            raise
        _expected(err, message)
    except KeyboardInterrupt as err:
        _expected(err, interrupted, code=130)


def _expected(err: BaseException, message: str, code: int = 2) -> typing.NoReturn:
    if _debugging():
        raise err
    raise _fail(message, code) from err


def _given_paths(values: Any) -> list[str]:
    """The option values that may name files (strings and paths, lists of them)."""
    items = values if isinstance(values, (list, tuple)) else [values]
    return [str(v) for v in items if isinstance(v, (str, Path)) and str(v)]


# -- commands from configs ---------------------------------------------------------------------

_NESTED: set[str] = set()  # settings that are models, flattened into their fields' options (_fields)


def validation_message(err: ValidationError) -> str:
    """A pydantic error as one line naming each option: ``--lr: Input should be greater than 0 (got -1)``.

    A setting of a nested model is named by its own option (``--max-contexts``, as the command
    line flattens it); an error of the whole config (a validator of several settings) by its
    message alone, without the config's input."""
    parts = []
    for e in err.errors():
        names = [str(p) for p in e["loc"] if isinstance(p, str) and p not in _NESTED]
        where = "--" + names[0].replace("_", "-") if names else ""
        got = f" (got {e['input']!r})" if where and e["type"] not in ("missing", "extra_forbidden") and "input" in e else ""
        msg = e["msg"].removeprefix("Value error, ")  # our validators' messages are sentences of their own
        parts.append(f"{where}: {msg}{got}" if where else f"{msg}{got}")
    return _one_line("; ".join(parts))


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _bare(annotation: Any) -> Any:
    """``X | None`` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _metavar(annotation: Any) -> str:
    a = _bare(annotation)
    if typing.get_origin(a) is typing.Literal:
        return "|".join(str(v) for v in typing.get_args(a))
    if typing.get_origin(a) in (list, tuple):
        return "A,B"
    return {int: "N", float: "X", Path: "PATH", bool: ""}.get(a, "TEXT")


def _option_metavar(name: str, field: FieldInfo, option: str | None) -> str:
    """A renamed option shows its field's name as the metavar (import's ``--out RUN``)."""
    return name.upper() if option is not None else _metavar(field.annotation)


def _default_text(field: FieldInfo, flag: str) -> str:
    """`` [default: …]``: a list's items (``a, b``), a switch's flag (``progress``, ``no-force``)."""
    if field.is_required():
        return ""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value)) or "none"  # spaces: a long list wraps
    elif isinstance(value, bool):
        value = flag if value else f"no-{flag}"
    return " " + escape(f"[default: {value}]")  # escaped: help text is rich markup, where [default: …] is a tag


def _parameter(name: str, field: FieldInfo, positional: bool, option: str | None = None,
               metavar: str | None = None) -> inspect.Parameter:
    """The command parameter of setting ``name``: an argument (``positional``) or an option, named
    ``--option`` when given (else ``--name``), showing ``metavar`` when given (else one from its type)."""
    bare = _bare(field.annotation)
    flag = (option or name).replace("_", "-")
    listed = " (comma-separated or repeated)" if typing.get_origin(bare) in (list, tuple) else ""
    help_text = (field.description or "") + listed + _default_text(field, flag)
    if positional:
        default = typer.Argument(None if not field.is_required() else ..., help=help_text, metavar=name.upper(),
                                 show_default=False)
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[str],
                                 default=default)
    if bare is bool:
        annotation, option = Optional[bool], typer.Option(None, f"--{flag}/--no-{flag}", help=help_text,
                                                          show_default=False)
    elif typing.get_origin(bare) in (list, tuple):
        annotation = Optional[list[str]]
        option = typer.Option(None, f"--{flag}", help=help_text, metavar=metavar or _metavar(bare),
                              show_default=False)
    else:
        annotation = Optional[str]
        option = typer.Option(None if not field.is_required() else ..., f"--{flag}", help=help_text,
                              metavar=metavar or _option_metavar(name, field, option), show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=option)


def _fields(config_cls: type[BaseModel]) -> list[tuple[str, str | None, FieldInfo]]:
    """``(option name, nested model field or None, field)`` for every setting, nested models flattened."""
    out = []
    for name, field in config_cls.model_fields.items():
        if _is_model(field.annotation):
            _NESTED.add(name)
            out += [(sub, name, f) for sub, f in _model_fields(field.annotation).items()]
        else:
            out.append((name, None, field))
    return out


def _model_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The fields of a nested model and of every subclass of it, each name once: a field typed by a
    base model takes any subclass (a crosscoder variant's own settings: ``--k`` is topk's), and the
    config refuses a setting its chosen subclass lacks. A subclass's declaration wins (its help)."""
    fields = dict(model.model_fields)
    for sub in model.__subclasses__():
        fields.update(_model_fields(sub))
    return fields


def _values(config_cls: type[BaseModel], given: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave, as config keyword arguments (lists split at commas)."""
    values: dict[str, Any] = {}
    for name, parent, field in _fields(config_cls):
        value = given.get(name)
        if value is None:
            continue
        if isinstance(value, list):
            value = [part.strip() for item in value for part in str(item).split(",") if part.strip()]
        (values.setdefault(parent, {}) if parent else values)[name] = value
    return values


def _at_least_one(value: int | None) -> int | None:
    """``--threads``' check (a callback, not a range: the help shows no range tag)."""
    if value is not None and value < 1:
        raise typer.BadParameter(f"{value}: at least 1")
    return value


def _on_terminal() -> bool:
    """Whether stderr is a terminal (a person reading, not a log)."""
    return sys.stderr.isatty()


def config_command(name: str, config_cls: type[BaseModel], run: Callable[[Any], Any],
                   show: Callable[[Any, Any], None], positional: Sequence[str] = ("run",), help: str | None = None,
                   typer_app: typer.Typer = app, options: dict[str, str] | None = None,
                   metavars: dict[str, str] | None = None, rerun: str = STAGE_RERUN,
                   interrupted: str = STAGE_INTERRUPTED, threads: bool = False) -> None:
    """Add command ``name`` to ``typer_app``: ``positional`` settings of ``config_cls`` are its
    arguments, the other fields its options (``options`` renames some, ``metavars`` sets what
    some show); it runs ``show(run(config), config)`` inside :func:`one_line_errors` with
    ``rerun`` and ``interrupted`` (what a full disk and an interrupt leave behind). With ``threads``
    (a stage) it has ``--threads`` (default every core; a config's own ``threads`` gets the count),
    says the count on stderr and runs under it (:func:`crosstime.stage.threads_line`)."""
    fields = _fields(config_cls)
    names = [n for n, _, _ in fields]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise TypeError(f"{config_cls.__name__}: settings {sorted(clash)} appear twice once nested models are flattened")
    order = [*positional, *(n for n in names if n not in positional)]
    by_name = {n: f for n, _, f in fields}
    renamed, shown = options or {}, metavars or {}
    params = [_parameter(n, by_name[n], n in positional, renamed.get(n), shown.get(n)) for n in order]
    if threads and "threads" not in by_name:
        params.append(inspect.Parameter("threads", inspect.Parameter.KEYWORD_ONLY, annotation=int | None,
                                        default=typer.Option(None, "--threads", callback=_at_least_one, metavar="N", help=THREADS_HELP,
                                                             show_default=False)))

    def command(**given: Any) -> None:
        inputs = [p for value in given.values() for p in _given_paths(value)]
        with one_line_errors(inputs, rerun=rerun, interrupted=interrupted):
            if threads:  # the scan's own option is text (its config checks it): a count once validated
                given["threads"] = given.get("threads") or cpu_cores()
            config = config_cls(**_values(config_cls, given))
            count = int(given["threads"]) if threads else None
            if count is not None and _on_terminal():  # said on a terminal; a log or pipe keeps one-line errors
                typer.echo(threads_line(count), err=True)
            with torch_threads(count):
                result = run(config)
            show(result, config)

    command.__signature__ = inspect.Signature(params)
    command.__doc__ = help or (config_cls.__doc__ or "").strip().splitlines()[0]
    typer_app.command(name)(command)


_STAGE_COMMANDS: dict[str, tuple[Stage, list]] = {}  # name -> (declaration, its typer CommandInfo), made once


def stage_commands() -> list:
    """One command per registered stage (:data:`crosstime.stage.STAGES`, pipeline order), made from its
    declaration when first asked for: a stage registered after this module was imported (a module of
    the user's, a test) has its command the next time the command line is built."""
    out = []
    for declared in STAGES.values():
        made = _STAGE_COMMANDS.get(declared.name)
        if made is None or made[0] is not declared:
            scratch = typer.Typer()
            kept = {} if declared.resumable else {"rerun": _INTEROP_RERUN, "interrupted": _INTEROP_INTERRUPTED}
            config_command(declared.name, declared.config, declared.work, declared.show,
                           positional=declared.positional, help=declared.help, options=declared.options,
                           typer_app=scratch, threads=True, **kept)
            made = _STAGE_COMMANDS[declared.name] = (declared, scratch.registered_commands)
        out += made[1]
    return out


# -- commands that are not stages -----------------------------------------------------------------
# Each is a config (its options), the work it drives and what it prints. A config that is the
# settings of one library function lives beside it (SeriesConfig, ServeConfig, ExportConfig,
# PushConfig); one that is only the command's (what to write where, a choice between two
# functions) lives here.

def _alternatives(names: list[str]) -> str:
    """``a, b or c.`` (the formats of the registry, for a help text)."""
    return f"{', '.join(names[:-1])} or {names[-1]}." if len(names) > 1 else f"{''.join(names)}."




def _shown_by_the_work(result: Any, config: Any) -> None:
    """A command whose work prints as it goes (``serve``) prints nothing after it."""


def _show_series(series: CheckpointSeries, config: SeriesConfig) -> None:
    table = Table(title=f"{series.source} ({series.family}, {len(series)} checkpoints)")
    for col in ("revision", "step", "tokens", "label"):
        table.add_column(col, justify="right" if col != "revision" else "left")
    for c in series:
        table.add_row(c.revision, str(c.step), str(c.tokens), c.label)
    Console().print(table)


class AnnotateConfig(BaseModel):
    """``crosstime annotate``: export the reported features for annotation, or import the annotated CSV."""

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="Run directory.")
    export: Path | None = Field(None, description="Write the reported features to this CSV (fill in `description`).")
    import_: Path | None = Field(None, description="Read descriptions from this CSV into the run and its dashboard.")
    n_features: int = Field(100, ge=1, description="Features to export when the run has no report yet.")

    @model_validator(mode="after")
    def _one_direction(self) -> AnnotateConfig:
        if (self.export is None) == (self.import_ is None):
            raise ValueError("give exactly one of --export FILE or --import FILE")
        return self


def _annotate(config: AnnotateConfig) -> Path | dict[int, dict[str, Any]]:
    """The CSV written (``--export``), or the annotations merged into the run (``--import``)."""
    if config.export is not None:
        return export_annotations(config.run, config.export, n_features=config.n_features)
    return import_annotations(config.run, config.import_)


def _show_annotate(result: Path | dict[int, dict[str, Any]], config: AnnotateConfig) -> None:
    if config.export is not None:
        typer.echo(f"wrote {result}: fill in the `description` column, then "
                   f"`crosstime annotate {config.run} --import {result}`")
    else:
        typer.echo(f"imported {config.import_}: {len(result)} annotated features in "
                   f"{config.run / 'report' / 'annotations.json'}")


def _show_push(url: str, config: PushConfig) -> None:
    typer.echo(f"pushed {config.run} to {url}")


def _show_export(written: list[Path], config: ExportConfig) -> None:
    typer.echo(f"wrote {config.out} ({config.format}): {', '.join(str(p.relative_to(config.out)) for p in written)}")


toy_app = typer.Typer(cls=_UntaggedGroup, no_args_is_help=True,
                      help="The embedded toy world: agreement grammar, copy and induction documents, minimal pairs, tiny pretrained GPT-NeoX.")


class ToyBuildConfig(BaseModel):
    """``crosstime toy build``: where to build the toy world, and the :class:`~crosstime.toy.ToyConfig` settings it exposes."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Folder to create (a local checkpoint series plus corpus/, pairs/, build.json).")
    seed: int = Field(0, description="Seeds the grammar, pairs, weights and data order (same seed: same weights).")
    steps: int | None = Field(None, description="Pretraining steps (default: ToyConfig's).")
    threads: int | None = Field(None, description="torch threads (fixed for determinism; default 1, robust on a "
                                                     "busy machine; 2 is faster on idle cores).")
    force: bool = Field(False, description="Replace --out if it exists.")
    progress: bool = Field(True, description="Show a progress bar.")


def _toy_build(config: ToyBuildConfig) -> tuple[Path, Path | None]:
    """The toy world at ``--out`` and the cached world it was copied from (None: built now)."""
    # given values go to ToyConfig as given (0 too): it refuses what it cannot use
    toy = ToyConfig(**config.model_dump(include={"seed", "steps", "threads"}, exclude_none=True))
    if config.out.exists() and not config.force:
        raise _fail(f"{config.out} already exists; choose another --out or pass --force")
    if toy_world_cached(toy):  # the identical world (same settings, same code version): a copy, not minutes
        return _copy_world(toy_world_path(toy), config.out), toy_world_path(toy)
    return build_toy_world(config.out, toy, progress=config.progress, overwrite=config.force), None


def _copy_world(cached: Path, out: Path) -> Path:
    """Copy the cached world into a temporary sibling of ``out``, then put it in place of ``out``."""
    out = out.expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.copy-{os.getpid()}"
    try:
        shutil.copytree(cached, tmp)
        if out.exists():  # --force (checked before)
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _show_toy_build(result: tuple[Path, Path | None], config: ToyBuildConfig) -> None:
    root, cached = result
    build = read_build(root)
    final = list(build["accuracy"])[-1]
    accs = ", ".join(f"{k} {v:.0%}" for k, v in build["accuracy"][final].items())
    seconds = build["timing"]["total_s"]
    how = f"{seconds:.0f} s" if cached is None else f"copied from the cache {cached}, built once in {seconds:.0f} s"
    typer.echo(f"toy world in {root} ({how}); {final}: {accs}")


tasks_app = typer.Typer(cls=_UntaggedGroup, no_args_is_help=True,
                        help="Probe tasks for any tokenizer: induction, previous-token copying, IOI (BLiMP-schema JSONL).")


class TasksMakeConfig(BaseModel):
    """``crosstime tasks make``: which probe pairs to write where, for which tokenizer."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="induction, previous_token (copying) or ioi.")
    out: Path = Field(description="JSONL file to write (give it to scan --tasks or attribute --task).")
    tokenizer: str = Field("toy", description="A tokenizer folder, or a checkpoint series (its last checkpoint's "
                                              "tokenizer; toy: the toy world's).")
    n: int = Field(300, ge=2, description="Pairs to write (even: they come in twins).")
    seed: int = Field(0, description="Seeds the words, names and templates drawn.")
    force: bool = Field(False, description="Replace --out if it exists.")


def _probe_tokenizer(source: str):
    """A tokenizer folder (loaded from disk only), else a checkpoint series' tokenizer ("toy": the toy world's)."""
    path = Path(source).expanduser()
    if not (path / SERIES_FILE).exists() and any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer  # lazy: start-up time (transformers takes seconds to import)

        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    if path.is_dir() and not (path / SERIES_FILE).exists():
        raise _fail(f"--tokenizer {source} is neither a tokenizer folder (tokenizer.json or tokenizer_config.json) "
                    f"nor a checkpoint series ({SERIES_FILE})")
    return open_series(source).load_tokenizer()


def _tasks_make(config: TasksMakeConfig) -> list[dict]:
    if config.kind not in PROBE_KINDS:  # before loading a tokenizer ("toy" may build the toy world)
        raise _fail(f"unknown task kind {config.kind!r}; choose one of {', '.join(PROBE_KINDS)}")
    if config.out.exists() and not config.force:
        raise _fail(f"{config.out} already exists; choose another --out or pass --force")
    rows = make_probe_rows(config.kind, _probe_tokenizer(config.tokenizer), n_pairs=config.n, seed=config.seed)
    write_text(config.out, rows_jsonl(rows))
    return rows


def _show_tasks_make(rows: list[dict], config: TasksMakeConfig) -> None:
    typer.echo(f"wrote {config.out}: {len(rows)} {config.kind} pairs ({len(rows) // 2} twins) for the tokenizer of "
               f"{config.tokenizer}")


def _show_demo(result: DemoResult, config: DemoConfig) -> None:
    console = Console()
    table = Table(title="time by stage")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in result.timings.items():
        table.add_row(name + (" (reused)" if name in result.reused else ""), f"{seconds:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(result.timings.values()):.1f}")
    console.print(table)
    console.print("\n[bold]Findings[/bold]")
    for i, line in enumerate(result.findings, 1):
        console.print(f"{i}. {line}")
    console.print(f"\nDashboard: [bold]{result.dashboard.resolve()}[/bold]")
    if result.first_run is not None:
        console.print(f"The first paper's crosscoder ({', '.join(result.first_revisions)}, agreement tasks): "
                      f"[bold]{result.first_run.resolve()}[/bold]")


# --help lists the commands in pipeline order (scan … report), then the demo, then the rest
config_command("demo", DemoConfig, demo, _show_demo,
               help="Run the whole pipeline on the toy world (re-running reuses finished stages).")
config_command("series", SeriesConfig,
               lambda c: open_series(c.source, revisions=c.revisions or None, tokens_per_step=c.tokens_per_step),
               _show_series, positional=("source",),
               help="List the checkpoints of a series: revision, step, tokens seen.")
app.add_typer(toy_app, name="toy")
app.add_typer(tasks_app, name="tasks")
config_command("build", ToyBuildConfig, _toy_build, _show_toy_build, positional=(), typer_app=toy_app,
               help="Build the toy world: grammar corpus, minimal pairs, and a tiny GPT-NeoX pretrained at "
                    "Pythia-style steps.",
               rerun="the unfinished build was removed; free space and re-run the same command",
               interrupted="interrupted; the unfinished build was removed: re-run the same command")
config_command("make", TasksMakeConfig, _tasks_make, _show_tasks_make, positional=("kind",), typer_app=tasks_app,
               metavars={"out": "FILE.jsonl", "tokenizer": "PATH_OR_SERIES"},
               help="Write minimal pairs that probe a mechanism, checked to be one token per answer for --tokenizer.",
               rerun="nothing was written; free space and re-run",
               interrupted="interrupted; nothing was written: re-run the same command")
config_command("annotate", AnnotateConfig, _annotate, _show_annotate, options={"import_": "import"},
               metavars={"import_": "PATH"},
               help="Export reported features for annotation, or import the annotated CSV back.",
               rerun="free space and re-run the same command", interrupted="interrupted; re-run the same command")
config_command("serve", ServeConfig, lambda c: serve(c.run, c.port), _shown_by_the_work,
               help="Serve RUN's dashboard on http://127.0.0.1:PORT/ (a large report loads its features as you "
                    "open them).")
config_command("export", ExportConfig, lambda c: export_run(c.run, c.format, c.out, force=c.force), _show_export,
               metavars={"format": "FORMAT", "out": "DIR"},
               help="Export RUN's crosscoder for other tools: another codebase's files, a Hub folder, or "
                    "Neuronpedia JSONL.",
               rerun=_INTEROP_RERUN, interrupted=_INTEROP_INTERRUPTED)
config_command("push", PushConfig, lambda c: push_run(c.run, c.repo_id, private=c.private),
               _show_push, positional=("run", "repo_id"),
               help="Upload RUN's crosscoder as a Hub folder (weights, config, model card, index.json) to REPO_ID.",
               rerun=_INTEROP_RERUN, interrupted=_INTEROP_INTERRUPTED)

if __name__ == "__main__":  # pragma: no cover
    app()
