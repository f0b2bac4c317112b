"""CPU threads on the command line (#26 item 6): every stage runs under ``--threads`` (default: every
core the process may use), says so on a terminal, and leaves torch's setting as it was afterwards."""

from __future__ import annotations

import inspect
import os
from typing import ClassVar

import pytest
import torch
import typer
from typer.testing import CliRunner

from crosstime import cli, stage
from crosstime.cli import app, stage_commands
from crosstime.stage import Stage, StageConfig


class CountConfig(StageConfig):
    """Say torch's thread count."""

    stage: ClassVar[str] = "count-threads"


def _count(config: CountConfig) -> int:
    return torch.get_num_threads()


COUNT = Stage(name="count-threads", config=CountConfig, work=_count, writes=(),
              show=lambda n, config: typer.echo(f"torch threads {n}"), help="Say torch's thread count.")


@pytest.fixture
def registered():
    stage.register(COUNT)
    before = torch.get_num_threads()
    yield
    stage.STAGES.pop(COUNT.name)
    torch.set_num_threads(before)


def test_a_stage_runs_on_every_core_unless_told_and_restores_torchs_setting(registered, tmp_path, monkeypatch):
    cores = len(os.sched_getaffinity(0))
    assert stage.cpu_cores() == cores
    torch.set_num_threads(1)
    runner = CliRunner()
    done = runner.invoke(app, ["count-threads", str(tmp_path / "run")])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"torch threads {cores}"  # not a terminal: the result alone
    assert torch.get_num_threads() == 1
    done = runner.invoke(app, ["count-threads", str(tmp_path / "run"), "--threads", "3"])
    assert done.output.strip() == "torch threads 3" and torch.get_num_threads() == 1
    assert runner.invoke(app, ["count-threads", str(tmp_path / "run"), "--threads", "0"]).exit_code == 2

    monkeypatch.setattr(cli, "_on_terminal", lambda: True)  # on a terminal: one line says the count first
    said = []
    monkeypatch.setattr(typer, "echo", lambda message, err=False: said.append((message, err)))
    runner.invoke(app, ["count-threads", str(tmp_path / "run"), "--threads", "2"])
    assert said == [(f"threads: 2 (of {cores} cores; --threads to change)", True), ("torch threads 2", False)]


def test_the_scans_own_threads_option_is_the_one_threads_option():
    (command,) = [c for c in stage_commands() if c.name == "scan"]
    options = [p.default.param_decls for p in inspect.signature(command.callback).parameters.values()
               if p.name == "threads"]
    assert options == [("--threads",)]  # its config's field: no second --threads
