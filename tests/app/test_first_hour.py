"""The first hour of a new user (#28): short reprs of a run's outputs, messages that say each thing
once, help that shows every default, tables that fit 80 columns, records of what was used."""

from __future__ import annotations

import inspect
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typer.core import TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

from crosstime import __version__, cli, entry
from crosstime.artifacts import (
    AttributionSummary,
    CheckpointEvaluation,
    Evaluation,
    EvaluationSummary,
    Suggestion,
)
from crosstime.cli import AnnotateConfig, TasksMakeConfig, ToyBuildConfig, app
from crosstime.crosscoder import CrosscoderError, TrainConfig, load
from crosstime.demo import GLOSSARY, DemoConfig
from crosstime.evaluate import paper_row
from crosstime.interop.exporting import ExportConfig, PushConfig
from crosstime.progress import Bar
from crosstime.report.dashboard import crosscoder_settings
from crosstime.report.serve import ServeConfig
from crosstime.runs import EvaluationOutputs, ScanOutputs, TaskAttribution
from crosstime.series import SeriesConfig
from crosstime.stage import STAGES
from crosstime.toy import ToyConfig, toy_world_path

REVISIONS = [f"step{s}" for s in (0, 16, 64, 128, 256, 512, 1000)]


def invoke(args: list[str], **env: str):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="crosstime", env=env or None)


# -- repr ----------------------------------------------------------------------------------------------

def _short(text: str) -> None:
    assert len(text) < 400 and len(text.splitlines()) <= 3, text


def test_an_evaluations_repr_is_a_few_lines():
    summary = EvaluationSummary.model_construct(l0=13.6234, dead=129, dead_fraction=129 / 1024,
                                                explained_variance_overall=0.9771)
    numbers = Evaluation.model_construct(summary=summary, checkpoints=[
        CheckpointEvaluation.model_construct(revision=r) for r in REVISIONS])
    text = repr(EvaluationOutputs(numbers, [{"feature": i, "frequency": 0.01} for i in range(1024)]))
    _short(text)
    assert text.splitlines()[0] == ("EvaluationOutputs(7 checkpoints: step0 … step1000; L0 13.62, dead 129 (12.6%), "
                                    "explained variance 0.977; features.csv 1024 rows)")
    assert "not written" in repr(EvaluationOutputs(numbers, None))


def test_an_attributions_and_a_scans_repr_are_a_few_lines(tmp_path):
    summary = AttributionSummary.model_construct(revisions=REVISIONS[:2], n_pairs=100, pairs_kept=98)
    rows = [{"feature": i, "ie": 0.5} for i in range(5000)]
    text = repr(TaskAttribution("induction", tmp_path, summary, rows, rows, None))
    _short(text)
    assert text.startswith("TaskAttribution('induction', 2 checkpoints: step0, step16; 100 pairs (98 kept); "
                           "features 5000 rows, joint 5000 rows, ablation not written)")
    suggestion = Suggestion.model_construct(revisions=["step0", "step128", "step1000"])
    scan = ScanOutputs(tmp_path, suggestion, None, rows, None, None)
    _short(repr(scan))
    assert "suggestion step0, step128, step1000; phases not written; accuracy 5000 rows, dynamics not written" in repr(scan)


# -- messages that say each thing once -----------------------------------------------------------------

def test_a_refused_demo_setting_says_what_was_given_once():
    result = invoke(["demo", "--tasks", "simple_agrement"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.count("(got ") == 1 and line.count("simple_agrement") == 1, line
    result = invoke(["demo", "--revisions", "step0,step3"])
    assert result.output.count("(got ") == 1 and result.output.count("'step3'") == 1, result.output


def test_a_refused_joint_k_says_what_was_given_once(tmp_path):
    result = invoke(["attribute", tmp_path, "--task", "induction", "--joint-k", "1,0"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.startswith("error: --joint-k: ") and "feature counts >= 1" in line, line
    assert line.count("got") == 1 and line.count("'0'") == 1, line


def test_a_crosscoder_folder_without_its_files_names_them_once(tmp_path):
    with pytest.raises(CrosscoderError) as err:
        load(tmp_path)
    message = str(err.value)
    assert "config.json and model.safetensors missing;" in message
    assert message.count("config.json") == 1 and message.count("model.safetensors") == 1, message


@pytest.mark.parametrize("command", [["evaluate"], ["attribute", "--task", "induction"], ["train"]])
def test_a_stage_on_a_missing_run_folder_says_the_folder_is_missing(tmp_path, command):
    result = invoke([command[0], tmp_path / "nope", *command[1:]])
    assert result.exit_code == 2
    assert f"no run directory {tmp_path / 'nope'}: the folder is missing" in result.output, result.output


# -- records of what was used --------------------------------------------------------------------------

def test_train_records_tokens_only_when_they_decided_the_length(tmp_path):
    by_steps = TrainConfig(run=tmp_path, steps=1000, batch_size=1024).output_settings()
    by_tokens = TrainConfig(run=tmp_path, tokens=2048, batch_size=1024).output_settings()
    assert "tokens" not in by_steps and by_steps["steps"] == 1000
    assert by_tokens["tokens"] == 2048 and by_tokens["steps"] is None
    shown = {s.name: s.value for s in crosscoder_settings({"variant": "relu"}, by_steps)}
    assert "tokens" not in shown and shown["steps"] == 1000  # no "training rows 400,000,000"


# -- help shows every default --------------------------------------------------------------------------

def _settings(config: type[BaseModel]) -> dict[str, FieldInfo]:
    """The settings of a command's config, a nested model's (and its subclasses') flattened in, as its options."""
    out: dict[str, FieldInfo] = {}
    for name, field in config.model_fields.items():
        nested = field.annotation
        if inspect.isclass(nested) and issubclass(nested, BaseModel):
            models = [nested]
            for model in models:  # its subclasses, theirs, …
                models += model.__subclasses__()
                out.update(model.model_fields)
        else:
            out[name] = field
    return out


def _shown(value: object, flag: str) -> str:
    if isinstance(value, bool):
        return flag if value else f"no-{flag}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _leaves(group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            yield from _leaves(command, (*path, name))
        else:
            yield (*path, name)


def test_every_command_shows_every_default_in_help():
    """Each setting with a default (other than None) shows ``[default: …]`` in its command's --help, at
    200 columns (wrapped lines joined; rich shortens long flags at 80)."""
    configs = {(d.name,): d.config for d in STAGES.values()}
    configs.update({("demo",): DemoConfig, ("series",): SeriesConfig, ("toy", "build"): ToyBuildConfig,
                    ("tasks", "make"): TasksMakeConfig, ("annotate",): AnnotateConfig, ("serve",): ServeConfig,
                    ("export",): ExportConfig, ("push",): PushConfig})
    assert set(_leaves(get_command(app))) == set(configs)  # a new command is added here
    renamed = {"import_": "import"}
    for path, config in configs.items():
        text = invoke([*path, "--help"], COLUMNS="200").output
        joined = re.sub(r"\s+", " ", text.replace("│", " "))
        expected = [f"[default: {_shown(f.get_default(call_default_factory=True), renamed.get(n, n).replace('_', '-'))}]"
                    for n, f in _settings(config).items()
                    if not f.is_required() and f.get_default(call_default_factory=True) is not None]
        for shown in expected:
            assert re.sub(r"\s+", " ", shown) in joined, (path, shown)
        assert joined.count("[default:") == len(expected), path


# -- toy build copies the cached world; --version answers before the app is built --------------------

def _fake_cached_world(cache: Path, config: ToyConfig) -> Path:
    world = toy_world_path(config)
    assert world.is_relative_to(cache)
    (world / "step0").mkdir(parents=True)
    (world / "step0" / "model.safetensors").write_bytes(bytes(range(256)))
    (world / "build.json").write_text(json.dumps({"accuracy": {"step1000": {"simple_agreement": 0.97}},
                                                  "timing": {"total_s": 303.0}}))
    return world


def test_toy_build_copies_the_identical_cached_world(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSTIME_CACHE", str(tmp_path / "cache"))
    cached = _fake_cached_world(tmp_path / "cache", ToyConfig(seed=3))

    def no_training(*args, **kwargs):
        raise AssertionError("toy build trained although the identical world is cached")

    monkeypatch.setattr(cli, "build_toy_world", no_training)
    result = invoke(["toy", "build", "--out", tmp_path / "toy", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert f"copied from the cache {cached}" in result.output and "simple_agreement 97%" in result.output
    copied = sorted(p.relative_to(tmp_path / "toy") for p in (tmp_path / "toy").rglob("*"))
    assert copied == sorted(p.relative_to(cached) for p in cached.rglob("*"))
    assert (tmp_path / "toy" / "step0" / "model.safetensors").read_bytes() == bytes(range(256))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "toy"]  # no temporary folder left
    # another seed is not cached: it trains
    with pytest.raises(AssertionError, match="trained although"):
        cli._toy_build(cli.ToyBuildConfig(out=tmp_path / "other", seed=4))


def test_version_answers_without_importing_the_app():
    """``crosstime --version`` (the entry point) imports neither torch nor the command line."""
    code = ("import sys; sys.argv = ['crosstime', '--version']; from crosstime.entry import main; main(); "
            "print(sorted(m for m in ('torch', 'crosstime.cli', 'typer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"crosstime {__version__}", "[]"]


def test_the_entry_runs_the_app_for_anything_else(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["crosstime", "--debug", "--version"])
    with pytest.raises(SystemExit) as done:
        entry.main()
    assert done.value.code == 0 and capsys.readouterr().out == f"crosstime {__version__}\n"


# -- progress: bars on a terminal, lines in a log; an error starts its own line --------------------------

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_written_to_a_log_is_plain_lines():
    log = io.StringIO()  # not a TTY, as a file or a pipe
    bar = Bar(total=1000, desc="harvest L0", file=log)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 2, lines  # its start and its end: a line every LOG_EVERY_S (30 s) at most in between
    assert lines[0].startswith("harvest L0:   0%") and "1000/1000" in lines[1], lines


def test_a_bar_on_a_terminal_redraws_and_an_error_starts_its_own_line(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = Bar(total=10, desc="harvest L0", file=terminal)
    bar.update(5)
    bar.refresh()
    exit_ = cli._fail("no space left on /dev/sda1")  # what the one error path prints while the bar is drawn
    assert exit_.exit_code == 2
    text = terminal.getvalue()
    assert "\r" in text  # redrawn in place
    assert "\nerror: no space left on /dev/sda1\n" in text and "|error" not in text, repr(text)
    bar.close()


def test_the_demo_explains_each_metric_it_prints():
    summary = EvaluationSummary.model_construct(l0=13.62, dead=129, delta_ce=[0.001, 0.002])
    row = paper_row(Evaluation.model_construct(summary=summary))
    labels = [part.split()[0] for part in row.split(" | ")]  # the word before each number
    assert labels == ["L0", "Dead", "ΔCE"], row
    for label in labels:
        assert f"{label}: " in GLOSSARY["evaluate"]
    assert "|IE| " in GLOSSARY["attribute"] and "IE: " in GLOSSARY["attribute"]
