"""The ``crosstime`` command line: one command per pipeline stage, built from the stage's config.

Every option of a stage command is a field of its config (name, help text, default: one
place, the config), so the command line and the Python API cannot drift apart. Values reach
the config as typed (``--lr 1e-3``, ``--tokens 400M``, ``--revisions a,b``) and the config
validates them.

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
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from typer.core import TyperArgument, TyperGroup

from crosstime import __version__
from crosstime.errors import CrosstimeError
from crosstime.interop.formats import known_formats  # the format registry, for import's and export's help

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


app = typer.Typer(
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


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return ""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value)) or "none"
    return f" [default: {value}]"


def _parameter(name: str, field: FieldInfo, positional: bool) -> inspect.Parameter:
    bare = _bare(field.annotation)
    help_text = (field.description or "") + _default_text(field)
    flag = name.replace("_", "-")
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
        option = typer.Option(None, f"--{flag}", help=help_text + " (comma-separated or repeated)",
                              metavar=_metavar(bare), show_default=False)
    else:
        annotation = Optional[str]
        option = typer.Option(None if not field.is_required() else ..., f"--{flag}", help=help_text,
                              metavar=_metavar(bare), show_default=False)
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


def stage_command(name: str, config_cls: type[BaseModel], run: Callable[[Any], Any],
                  show: Callable[[Any, Any], None], positional: Sequence[str] = ("run",), help: str | None = None,
                  typer_app: typer.Typer = app) -> None:
    """Add command ``name``: options from ``config_cls``'s fields, then ``show(run(config), config)``."""
    fields = _fields(config_cls)
    names = [n for n, _, _ in fields]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise TypeError(f"{config_cls.__name__}: settings {sorted(clash)} appear twice once nested models are flattened")
    order = [*positional, *(n for n in names if n not in positional)]
    by_name = {n: f for n, _, f in fields}
    params = [_parameter(n, by_name[n], n in positional) for n in order]

    def command(**given: Any) -> None:
        inputs = [p for value in given.values() for p in _given_paths(value)]
        with one_line_errors(inputs):
            config = config_cls(**_values(config_cls, given))
            result = run(config)
            show(result, config)

    command.__signature__ = inspect.Signature(params)
    command.__doc__ = help or (config_cls.__doc__ or "").strip().splitlines()[0]
    typer_app.command(name)(command)


# -- what each stage prints -----------------------------------------------------------------

def _show_scan(result, config) -> None:
    from crosstime.scan import print_scan_summary

    print_scan_summary(result)


def _show_harvest(store, config) -> None:
    from crosstime import distributed

    if distributed.world().is_main:
        typer.echo(store.summary())


def _show_train(model, config) -> None:
    from crosstime import distributed
    from crosstime.crosscoder.logs import heldout_summary

    if distributed.world().is_main:
        typer.echo(f"{config.rundir.crosscoder}: {model.config.variant} crosscoder, M={model.n_checkpoints} "
                   f"({', '.join(model.revisions or [])}), d={model.d_model}, F={model.n_features}")
        held = heldout_summary(config.rundir.crosscoder, list(model.revisions or []))
        if held:
            typer.echo(held)


def _show_evaluate(result, config) -> None:
    from rich.console import Console

    from crosstime.evaluate import format_table, paper_row

    console = Console()
    console.print(format_table(result))
    console.print(paper_row(result))
    if result.summary.dead_window_tokens < config.dead_tokens:
        console.print(f"[yellow]note: the store has only {result.summary.dead_window_tokens:,} tokens to count dead "
                      f"latents over (--dead-tokens {config.dead_tokens:,})[/yellow]")
    console.print(f"wrote {config.rundir.evaluation_file} and {config.rundir.evaluation}/")


def _show_attribute(result, config) -> None:
    from crosstime.attribution import print_attribution

    print_attribution(result)


def _show_report(path, config) -> None:
    typer.echo(f"open {path}")


def _register_stages() -> None:
    from crosstime.attribution import AttributeConfig, attribute
    from crosstime.crosscoder import TrainConfig, train
    from crosstime.evaluate import EvaluateConfig, evaluate
    from crosstime.report import ReportConfig, report
    from crosstime.scan import ScanConfig, scan
    from crosstime.store import HarvestConfig, harvest

    stage_command("scan", ScanConfig, scan, _show_scan, positional=("run", "series"),
                  help="Scan every checkpoint: task accuracy, representation similarity, training dynamics; "
                       "the phases in order of onset; suggest checkpoints.")
    stage_command("harvest", HarvestConfig, harvest, _show_harvest, positional=("run", "series"),
                  help="Harvest site activations of checkpoints into RUN/activations (resumable; works under "
                       "torchrun).")
    stage_command("train", TrainConfig, train, _show_train,
                  help="Train a crosscoder on RUN/activations into RUN/crosscoder (resumes when re-run; works "
                       "under torchrun).")
    stage_command("evaluate", EvaluateConfig, evaluate, _show_evaluate,
                  help="Reconstruction (EV, L0, dead), splicing (ΔCE, KL) per checkpoint, RelDec classes and "
                       "emergence; feature dimensionality, the direction turn, emergence by feature type.")
    stage_command("attribute", AttributeConfig, attribute, _show_attribute,
                  help="Per-checkpoint indirect effects of the crosscoder's features on a task; RelIE; ablation "
                       "check.")
    stage_command("report", ReportConfig, report, _show_report,
                  help="Write RUN/report/index.html: one self-contained dashboard (overview + feature browser).")


# -- commands that are not stages -----------------------------------------------------------------

def series(
    source: str = typer.Argument(..., help="A local series folder or a Hugging Face repo id."),
    revisions: Optional[list[str]] = typer.Option(None, "--revisions", metavar="A,B",
                                                  help="Revision names (comma-separated or repeated); needed for OLMo."),
    tokens_per_step: Optional[int] = typer.Option(None, "--tokens-per-step", metavar="N", min=1,
                                                  help="Label an unknown family's steps by tokens."),
) -> None:
    """List the checkpoints of a series: revision, step, tokens seen."""
    from rich.console import Console
    from rich.table import Table

    from crosstime.series import open_series

    names = [r for item in revisions or [] for r in item.split(",") if r] or None
    with one_line_errors([source]):
        s = open_series(source, revisions=names, tokens_per_step=tokens_per_step)
    table = Table(title=f"{s.source} ({s.family}, {len(s)} checkpoints)")
    for col in ("revision", "step", "tokens", "label"):
        table.add_column(col, justify="right" if col != "revision" else "left")
    for c in s:
        table.add_row(c.revision, str(c.step), str(c.tokens), c.label)
    Console().print(table)


def annotate(
    run: Path = typer.Argument(..., help="Run directory."),
    export: Optional[Path] = typer.Option(None, "--export", metavar="PATH",
                                          help="Write the reported features to this CSV (fill in `description`)."),
    import_: Optional[Path] = typer.Option(None, "--import", metavar="PATH",
                                           help="Read descriptions from this CSV into the run and its dashboard."),
    n_features: int = typer.Option(100, "--n-features", metavar="N", min=1,
                                   help="Features to export when the run has no report yet."),
) -> None:
    """Export reported features for annotation, or import the annotated CSV back."""
    from crosstime.report import export_annotations, import_annotations

    if (export is None) == (import_ is None):
        raise _fail("give exactly one of --export FILE or --import FILE")
    with one_line_errors(_given_paths([run, export, import_]), rerun="free space and re-run the same command",
                         interrupted="interrupted; re-run the same command"):
        if export is not None:
            path = export_annotations(run, export, n_features=n_features)
            typer.echo(f"wrote {path}: fill in the `description` column, then `crosstime annotate {run} --import {path}`")
        else:
            merged = import_annotations(run, import_)
            typer.echo(f"imported {import_}: {len(merged)} annotated features in {Path(run) / 'report' / 'annotations.json'}")


def serve(
    run: Path = typer.Argument(..., help="Run directory with a report (crosstime report RUN)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free one)."),
) -> None:
    """Serve RUN's dashboard on http://127.0.0.1:PORT/ (a large report loads its features as you open them)."""
    from crosstime.report.serve import serve as serve_report

    with one_line_errors(_given_paths([run])):
        serve_report(run, port)


def _listed(values: Optional[list[str]]) -> Optional[list[str]]:
    """Comma-separated or repeated option values as one list (None when not given)."""
    return [part.strip() for item in values for part in item.split(",") if part.strip()] if values else None


def _alternatives(names: list[str]) -> str:
    """``a, b or c.`` (the formats of the registry, for a help text)."""
    return f"{', '.join(names[:-1])} or {names[-1]}." if len(names) > 1 else f"{''.join(names)}."


_INTEROP_RERUN = "nothing was kept; free space and re-run the same command"
_INTEROP_INTERRUPTED = "interrupted; nothing was kept: re-run the same command"


def import_(
    format: str = typer.Argument(..., metavar="FORMAT", help=_alternatives(known_formats("read"))),
    path: str = typer.Argument(..., metavar="PATH",
                               help="The saved crosscoder: its file or folder (hub: also owner/name[:folder])."),
    out: Path = typer.Option(..., "--out", metavar="RUN", help="Run directory; the crosscoder goes to RUN/crosscoder."),
    store: Optional[Path] = typer.Option(None, "--store", metavar="PATH",
                                         help="Activation store to check it against (default: RUN/activations if any)."),
    revisions: Optional[list[str]] = typer.Option(None, "--revisions", metavar="A,B",
                                                  help="Checkpoint names, for formats that do not record them."),
    scales: Optional[list[str]] = typer.Option(None, "--scales", metavar="A,B",
                                               help="Input scales s_m, for formats that do not record them."),
    force: bool = typer.Option(False, "--force", help="Replace a crosscoder RUN already holds."),
) -> None:
    """Import a crosscoder saved by another codebase into RUN/crosscoder (every later stage reads it)."""
    from crosstime.interop import ImportConfig, import_crosscoder

    with one_line_errors(_given_paths([path, out, store]), rerun=_INTEROP_RERUN, interrupted=_INTEROP_INTERRUPTED):
        config = ImportConfig(run=out, format=format, path=path, store=store, revisions=_listed(revisions),
                              scales=_listed(scales), force=force)
        imported, checked = import_crosscoder(config)
    m = imported.model
    typer.echo(f"{config.rundir.crosscoder}: {m.config.variant} crosscoder from {format} {path}, M={m.n_checkpoints} "
               f"({', '.join(m.revisions or [])}), d={m.d_model}, F={m.n_features}")
    for note in imported.notes:
        typer.echo(f"  {note}")
    typer.echo(f"  checked against the store at {checked.root}" if checked is not None else
               "  not checked against a store (give --store, or import into a run with RUN/activations)")


def export(
    run: Path = typer.Argument(..., help="Run directory (its crosscoder, and for neuronpedia its report)."),
    format: str = typer.Option(..., "--format", metavar="FORMAT", help=_alternatives(known_formats("write"))),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Folder to write (must not exist or be empty)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Export RUN's crosscoder for other tools: another codebase's files, a Hub folder, or Neuronpedia JSONL."""
    from crosstime.interop import export_run

    with one_line_errors(_given_paths([run, out]), rerun=_INTEROP_RERUN, interrupted=_INTEROP_INTERRUPTED):
        written = export_run(run, format, out, force=force)
    typer.echo(f"wrote {out} ({format}): {', '.join(str(p.relative_to(out)) for p in written)}")


def push(
    run: Path = typer.Argument(..., help="Run directory."),
    repo_id: str = typer.Argument(..., metavar="REPO_ID", help="Hugging Face repo id, owner/name."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
) -> None:
    """Upload RUN's crosscoder as a Hub folder (weights, config, model card, index.json) to REPO_ID."""
    from crosstime.interop import push_run

    with one_line_errors(_given_paths([run]), rerun=_INTEROP_RERUN, interrupted=_INTEROP_INTERRUPTED):
        url = push_run(run, repo_id, private=private)
    typer.echo(f"pushed {run} to {url}")


toy_app = typer.Typer(cls=_UntaggedGroup, no_args_is_help=True,
                      help="The embedded toy world: agreement grammar, copy and induction documents, minimal pairs, tiny pretrained GPT-NeoX.")


@toy_app.command("build")
def toy_build(
    out: Path = typer.Option(..., "--out", metavar="PATH",
                             help="Folder to create (a local checkpoint series plus corpus/, pairs/, build.json)."),
    seed: int = typer.Option(0, "--seed", metavar="N",
                             help="Seeds the grammar, pairs, weights and data order (same seed: same weights)."),
    steps: Optional[int] = typer.Option(None, "--steps", metavar="N", help="Pretraining steps (default: ToyConfig's)."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N",
                                          help="torch threads (fixed for determinism; default 1, robust on a busy "
                                               "machine; 2 is faster on idle cores)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Build the toy world: grammar corpus, minimal pairs, and a tiny GPT-NeoX pretrained at Pythia-style steps."""
    from crosstime.toy import ToyConfig, build_toy_world, read_build

    # given values go to the config as given (0 too): it refuses what it cannot use
    settings = {"seed": seed, **({"steps": steps} if steps is not None else {}),
                **({"threads": threads} if threads is not None else {})}
    removed = "the unfinished build was removed"
    with one_line_errors([str(out)], rerun=f"{removed}; free space and re-run the same command",
                         interrupted=f"interrupted; {removed}: re-run the same command"):
        config = ToyConfig(**settings)
        if out.exists() and not force:
            raise _fail(f"{out} already exists; choose another --out or pass --force")
        root = build_toy_world(out, config, progress=progress, overwrite=force)
    build = read_build(root)
    final = list(build["accuracy"])[-1]
    accs = ", ".join(f"{k} {v:.0%}" for k, v in build["accuracy"][final].items())
    typer.echo(f"toy world in {root} ({build['timing']['total_s']:.0f} s); {final}: {accs}")


tasks_app = typer.Typer(cls=_UntaggedGroup, no_args_is_help=True,
                        help="Probe tasks for any tokenizer: induction, previous-token copying, IOI (BLiMP-schema JSONL).")


def _probe_tokenizer(source: str):
    """A tokenizer folder (loaded from disk only), else a checkpoint series' tokenizer ("toy": the toy world's)."""
    from crosstime.series import SERIES_FILE, open_series

    path = Path(source).expanduser()
    if not (path / SERIES_FILE).exists() and any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    if path.is_dir() and not (path / SERIES_FILE).exists():
        raise _fail(f"--tokenizer {source} is neither a tokenizer folder (tokenizer.json or tokenizer_config.json) "
                    f"nor a checkpoint series ({SERIES_FILE})")
    return open_series(source).load_tokenizer()


@tasks_app.command("make")
def tasks_make(
    kind: str = typer.Argument(..., metavar="KIND", help="induction, previous_token (copying) or ioi."),
    out: Path = typer.Option(..., "--out", metavar="FILE.jsonl",
                             help="JSONL file to write (give it to scan --tasks or attribute --task)."),
    tokenizer: str = typer.Option("toy", "--tokenizer", metavar="PATH_OR_SERIES",
                                  help="A tokenizer folder, or a checkpoint series (its last checkpoint's tokenizer; "
                                       "toy: the toy world's)."),
    n: int = typer.Option(300, "--n", metavar="N", min=2, help="Pairs to write (even: they come in twins)."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seeds the words, names and templates drawn."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Write minimal pairs that probe a mechanism, checked to be one token per answer for --tokenizer."""
    from crosstime.files import write_text
    from crosstime.probes import PROBE_KINDS, make_probe_rows, rows_jsonl

    if kind not in PROBE_KINDS:  # before loading a tokenizer ("toy" may build the toy world)
        raise _fail(f"unknown task kind {kind!r}; choose one of {', '.join(PROBE_KINDS)}")
    with one_line_errors(_given_paths([out, tokenizer]), rerun="nothing was written; free space and re-run",
                         interrupted="interrupted; nothing was written: re-run the same command"):
        if out.exists() and not force:
            raise _fail(f"{out} already exists; choose another --out or pass --force")
        rows = make_probe_rows(kind, _probe_tokenizer(tokenizer), n_pairs=n, seed=seed)
        write_text(out, rows_jsonl(rows))
    typer.echo(f"wrote {out}: {len(rows)} {kind} pairs ({len(rows) // 2} twins) for the tokenizer of {tokenizer}")


def _show_demo(result, config) -> None:
    from rich.console import Console
    from rich.table import Table

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


def _register_demo() -> None:
    from crosstime.demo import DemoConfig, demo

    stage_command("demo", DemoConfig, demo, _show_demo,
                  help="Run the whole pipeline on the toy world (re-running reuses finished stages).")


# --help lists the commands in pipeline order (scan … report), then the demo, then the rest
_register_stages()
_register_demo()
app.command()(series)
app.add_typer(toy_app, name="toy")
app.add_typer(tasks_app, name="tasks")
app.command()(annotate)
app.command()(serve)
app.command("import")(import_)
app.command()(export)
app.command()(push)

if __name__ == "__main__":  # pragma: no cover
    app()
