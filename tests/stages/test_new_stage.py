"""A stage of one's own, declared in this file alone: the command line, the records and the run
reader know it with no edit to any crosstime module (issue #23's acceptance)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import typer
import yaml
from pydantic import Field
from typer.testing import CliRunner

from crosstime import stage
from crosstime.artifacts import ArtifactError
from crosstime.cli import app
from crosstime.files import write_text
from crosstime.runs import StageNotRun, open_run
from crosstime.stage import Artifact, Stage, StageConfig


class NoteConfig(StageConfig):
    """Write a note into RUN/note.txt."""

    stage: ClassVar[str] = "note"
    text: str = Field(description="what the note says")


class ShoutConfig(StageConfig):
    """Shout the run's note into RUN/shout.txt."""

    stage: ClassVar[str] = "shout"
    times: int = Field(1, ge=1, description="how many times")


def _read(name: str):
    return lambda run, key: (run.root / name).read_text()


NOTE = Artifact("note", "note.txt", "note.txt", _read("note.txt"), "note", "the note",
                checksummed=("note.txt",))
SHOUT = Artifact("shout", "shout.txt", "shout.txt", _read("shout.txt"), "shout", "the shout",
                 checksummed=("shout.txt",))


def write_note(config: NoteConfig) -> str:
    with stage.writing(config):
        write_text(config.rundir.root / "note.txt", config.text)
    return config.text


def shout(config: ShoutConfig) -> str:
    from crosstime.runs import open_inputs

    loud = " ".join([open_inputs(config).read(NOTE).upper()] * config.times)  # checked before any work
    with stage.writing(config):
        write_text(config.rundir.root / "shout.txt", loud)
    return loud


def _echo(result: str, config) -> None:
    typer.echo(result)


NOTE_STAGE = Stage(name="note", config=NoteConfig, work=write_note, writes=(NOTE,), show=_echo, help="Write a note.")
SHOUT_STAGE = Stage(name="shout", config=ShoutConfig, work=shout, reads=(NOTE,), writes=(SHOUT,), show=_echo,
                    help="Shout the note.")


@pytest.fixture
def registered():
    for declared in (NOTE_STAGE, SHOUT_STAGE):
        stage.register(declared)
    yield
    for declared in (NOTE_STAGE, SHOUT_STAGE):
        stage.STAGES.pop(declared.name)


def test_a_stage_declared_here_runs_through_the_cli_and_the_run_reader(registered, tmp_path):
    run = tmp_path / "run"
    runner = CliRunner()
    assert "Shout the note." in runner.invoke(app, ["--help"]).output

    first = runner.invoke(app, ["shout", str(run)])  # its input is not there: one line naming the command
    assert first.exit_code == 2
    assert f"run `crosstime note {run} --text TEXT` first" in first.output
    assert not run.exists()

    assert runner.invoke(app, ["note", str(run), "--text", "hello"]).exit_code == 0
    done = runner.invoke(app, ["shout", str(run), "--times", "2"])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "HELLO HELLO"

    records = yaml.safe_load((run / "config.yaml").read_text())
    assert records["shout"]["times"] == 2 and records["shout"]["writes"] == ["shout"]
    assert records["note"]["writes"] == ["note"]
    opened = open_run(run)
    assert opened.read(SHOUT) == "HELLO HELLO" and opened.read(NOTE) == "hello"
    assert stage.finished(ShoutConfig(run=run, times=2))
    assert not stage.finished(ShoutConfig(run=run, times=3))

    runner.invoke(app, ["note", str(run), "--text", "bye"])  # what shout read was redone
    assert not stage.finished(ShoutConfig(run=run, times=2))
    (run / "shout.txt").write_text("tampered")
    with pytest.raises(ArtifactError, match=r"shout\.txt changed after `crosstime shout` wrote it"):
        open_run(run).read(SHOUT)


def test_an_artifact_no_finished_stage_vouches_for_is_not_read(registered, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "note.txt").write_text("left by a killed run")  # a file without a record is not the stage's output
    with pytest.raises(StageNotRun, match=r"note\.txt \(the note\) is not there: no finished stage wrote it"):
        open_run(run).read(NOTE)
    assert not open_run(run).has(NOTE)
    assert Path(run / "note.txt").exists()


def test_the_first_command_named_comes_from_the_writers_declaration():
    """The hint names the run, the stage's positional arguments and its required options (a renamed one by
    its option: import's run is --out), and a keyed stage's key."""
    import crosstime.stages  # noqa: F401  (registers the built-in stages)

    assert stage.STAGES["harvest"].hint("runs/x") == "crosstime harvest runs/x SERIES --layer LAYER"
    assert stage.STAGES["attribute"].hint("runs/x", "pp_attractor") == "crosstime attribute runs/x --task pp_attractor"
    assert stage.STAGES["import"].hint("runs/x") == "crosstime import FORMAT PATH --out runs/x"
    assert stage.STAGES["train"].hint("runs/x") == "crosstime train runs/x"
