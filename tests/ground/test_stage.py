"""The stage contract: settings recorded after success, reuse from output-changing settings only."""

from __future__ import annotations

import hashlib
import shutil
from typing import ClassVar

import pytest
import yaml
from pydantic import Field, ValidationError

from crosstime import stage
from crosstime.artifacts import ArtifactError
from crosstime.stage import Artifact, Count, Stage, StageConfig


class ToyStageConfig(StageConfig):
    stage: ClassVar[str] = "toystage"
    execution: ClassVar[frozenset[str]] = frozenset({"device"})

    width: int = Field(3, description="changes the output")
    device: str = Field("auto", description="does not")
    tokens: Count = Field(1000, description="a count")


def _read_text(run, key: str | None) -> str:
    return (run.root / "out.txt").read_text()


OUT = Artifact("toyout", "out.txt", "out.txt", _read_text, "toystage", "the toy stage's text",
               checksummed=("out.txt",))


def _nothing(result, config) -> None:
    return None


@pytest.fixture(autouse=True)
def toy_stages():
    """The two toy stages, registered for each test and removed after it (the registry is global)."""
    for declared in (TOY, DOWN):
        stage.register(declared)
    yield
    for declared in (TOY, DOWN):
        stage.STAGES.pop(declared.name)


def _run_stage(config: ToyStageConfig, fail: bool = False) -> None:
    stage.begin(config)
    config.output().write_text("half" if fail else "x" * config.width)
    if fail:
        raise RuntimeError("killed half-way")
    stage.finish(config)


def test_record_after_success_reuse_and_forgetting(tmp_path):
    cfg = ToyStageConfig(run=tmp_path / "run", width=4)
    cfg.run.mkdir()
    assert not stage.finished(cfg)
    _run_stage(cfg)
    records = yaml.safe_load((cfg.run / "config.yaml").read_text())
    assert records["toystage"] == {"width": 4, "tokens": 1000, "inputs_digest": records["toystage"]["inputs_digest"],
                                   "writes": ["toyout"], "files": {"out.txt": hashlib.sha256(b"xxxx").hexdigest()}}
    assert stage.finished(cfg)
    assert stage.finished(cfg.model_copy(update={"device": "cuda", "progress": False}))
    assert not stage.finished(cfg.model_copy(update={"width": 5}))
    copied = tmp_path / "elsewhere"
    shutil.copytree(cfg.run, copied)
    assert stage.finished(cfg.model_copy(update={"run": copied}))
    (copied / "out.txt").unlink()
    assert not stage.finished(cfg.model_copy(update={"run": copied}))  # the output must exist too
    # a re-run that dies half-way leaves no record claiming the (now half-written) output
    with pytest.raises(RuntimeError):
        _run_stage(cfg, fail=True)
    assert "toystage" not in (yaml.safe_load((cfg.run / "config.yaml").read_text()) or {})
    assert not stage.finished(cfg)


def test_other_stages_records_are_kept_and_bad_yaml_is_named(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"scan": {"layer": 1}}))
    cfg = ToyStageConfig(run=run)
    _run_stage(cfg)
    assert set(yaml.safe_load((run / "config.yaml").read_text())) == {"scan", "toystage"}
    (run / "config.yaml").write_text("scan: [unclosed\n")
    with pytest.raises(ArtifactError, match=r"config\.yaml is not valid YAML"):
        stage.finished(cfg)
    (run / "config.yaml").write_text("- a list\n")
    with pytest.raises(ArtifactError, match="should map stage names"):
        stage.recorded(cfg)


def test_configs_refuse_unknown_settings_and_read_counts(tmp_path):
    with pytest.raises(ValidationError, match="widht"):
        ToyStageConfig(run=tmp_path, widht=3)
    assert [ToyStageConfig(run=tmp_path, tokens=t).tokens for t in ("1M", "1.5K", "2e3", "7", 9)] == [
        1_000_000, 1500, 2000, 7, 9]
    for bad in ("1.2345K", "lots", "inf", "nan"):
        with pytest.raises(ValidationError, match="valid integer"):
            ToyStageConfig(run=tmp_path, tokens=bad)


class Downstream(ToyStageConfig):
    stage: ClassVar[str] = "downstream"


DOWN_OUT = Artifact("toydown", "down.txt", "down.txt", _read_text, "downstream", "the downstream text")
TOY = Stage(name="toystage", config=ToyStageConfig, work=_run_stage, writes=(OUT,), show=_nothing, help="a toy")
DOWN = Stage(name="downstream", config=Downstream, work=_run_stage, reads=(OUT,), writes=(DOWN_OUT,), show=_nothing,
             help="reads the toy's text")


def test_a_stage_is_not_reused_once_what_it_read_was_redone(tmp_path):
    up = ToyStageConfig(run=tmp_path, width=2)
    down = Downstream(run=tmp_path)
    _run_stage(up)
    _run_stage(down)
    assert stage.finished(down)
    _run_stage(up.model_copy(update={"width": 6}))  # the upstream output changed under it
    assert not stage.finished(down)
    _run_stage(down)
    assert stage.finished(down)
    _run_stage(up.model_copy(update={"width": 6, "device": "cpu"}))  # redone, same settings: same input
    assert stage.finished(down)


HOLD = """
import sys, time
from crosstime import stage
from crosstime.artifacts import RunDir
with stage.lock(RunDir(sys.argv[1]), "train"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_one_writer_per_run_directory(tmp_path):
    """A second writer is refused at once, naming the stage and process that hold the run; readers
    are not blocked; the lock is released on every way out of a stage."""
    import subprocess
    import sys

    from crosstime.artifacts import RunDir

    cfg = ToyStageConfig(run=tmp_path / "run")
    _run_stage_locked(cfg)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(cfg.run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(stage.RunBusy, match=rf"being written by `crosstime train` \(pid {holder.pid} on "):
            _run_stage_locked(cfg.model_copy(update={"width": 9}))
        assert stage.finished(cfg) and stage.recorded(cfg)["width"] == 3  # read freely; the record untouched
    finally:
        holder.kill()
        holder.wait()
    _run_stage_locked(cfg.model_copy(update={"width": 9}))  # a dead holder's lock is gone with it
    with pytest.raises(RuntimeError):
        with stage.writing(cfg):
            raise RuntimeError("a stage that fails")
    with stage.lock(RunDir(cfg.run), "again"):  # released after the failure
        pass


def test_a_stage_that_fails_before_writing_leaves_no_run_directory(tmp_path):
    cfg = ToyStageConfig(run=tmp_path / "new")
    with pytest.raises(ValueError):
        with stage.writing(cfg):
            raise ValueError("bad input found during the work")
    assert not cfg.run.exists()


def _run_stage_locked(config: ToyStageConfig) -> None:
    with stage.writing(config):
        config.output().write_text("x" * config.width)
