"""What a new user meets first: the README's Python snippet, run verbatim in an empty folder;
``crosstime.open_run`` on the run it makes (checked against the files, read independently);
the command list of ``crosstime --help`` in the README's pipeline order, without type tags."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_python_blocks() -> list[str]:
    """The ```python blocks of README.md, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)


def subprocess_env(home: Path) -> dict[str, str]:
    """This test session's environment (its CROSSTIME_CACHE: the toy world is built already), with
    HOME pointed at an empty folder, so anything written to ~ shows up there."""
    src = str(ROOT / "src")
    path = os.pathsep.join([src, os.environ["PYTHONPATH"]]) if os.environ.get("PYTHONPATH") else src
    return {**os.environ, "HOME": str(home), "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def snippet_run(toy_world, tmp_path_factory) -> dict:
    """The README's Python blocks run verbatim, as one script, in an empty folder."""
    blocks = readme_python_blocks()
    assert blocks, "README.md has no ```python block"
    cwd, home = tmp_path_factory.mktemp("readme_cwd"), tmp_path_factory.mktemp("readme_home")
    result = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=cwd, env=subprocess_env(home),
                            capture_output=True, text=True, timeout=600)
    return {"cwd": cwd, "home": home, "result": result, "toy_world": toy_world}


@pytest.mark.slow  # the README's pipeline, every stage, end to end
def test_readme_snippet_runs_verbatim_in_an_empty_folder(snippet_run):
    result = snippet_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    # "toy" was the cached toy world, said on stderr; nothing was written to ~ or beside the run
    assert f"built-in toy world in {snippet_run['toy_world']}" in result.stderr
    assert [p.name for p in snippet_run["cwd"].iterdir()] == ["runs"]
    assert list(snippet_run["home"].iterdir()) == []


@pytest.mark.slow  # the README's pipeline, every stage, end to end
def test_open_run_gives_what_the_stages_wrote(snippet_run):
    import crosstime
    from crosstime.crosscoder import load

    assert snippet_run["result"].returncode == 0, snippet_run["result"].stderr[-3000:]
    root = snippet_run["cwd"] / "runs" / "py"
    run = crosstime.open_run(root)
    written = json.loads((root / "evaluation.json").read_text())
    assert run.evaluation.summary.l0 == written["summary"]["l0"]
    assert [c.delta_ce for c in run.evaluation.checkpoints] == [c["delta_ce"] for c in written["checkpoints"]]
    with open(root / "evaluation" / "features.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(run.evaluation.features) == len(rows) == run.crosscoder.n_features
    assert [r["trajectory"] for r in run.evaluation.features] == [r["trajectory"] for r in rows]
    assert run.evaluation.features[3]["reldec"] == pytest.approx([float(rows[3][f"reldec_{r}"])
                                                                  for r in run.crosscoder.revisions], rel=1e-5)
    assert run.store.revisions == run.crosscoder.revisions == ["step64", "step512"]
    plain = load(root / "crosscoder").unfold_scales()  # the same weights, loaded without the store
    assert all((a == b).all() for a, b in zip(run.crosscoder.state_dict().values(), plain.state_dict().values()))
    assert list(run.attributions) == run.tasks == ["simple_agreement"]
    task = run.attributions["simple_agreement"]
    summary = json.loads((root / "attribution" / "simple_agreement" / "summary.json").read_text())
    assert task.summary.top_features == summary["top_features"] and task.summary.n_pairs == summary["n_pairs"]
    with open(root / "attribution" / "simple_agreement" / "features.csv", newline="") as handle:
        assert [r["feature"] for r in task.features] == [int(r["feature"]) for r in csv.DictReader(handle)]


def test_open_run_names_the_stage_to_run(tmp_path):
    import crosstime
    from crosstime.runs import StageNotRun

    with pytest.raises(StageNotRun, match="no run directory"):
        crosstime.open_run(tmp_path / "nowhere")
    run = crosstime.open_run(tmp_path)  # a run directory where nothing has finished
    for what, command in [("store", "crosstime harvest"), ("crosscoder", "crosstime train"),
                          ("evaluation", "crosstime evaluate")]:
        with pytest.raises(StageNotRun, match=command):
            getattr(run, what)
    assert run.tasks == [] and len(run.attributions) == 0 and "pp_attractor" not in run.attributions
    with pytest.raises(StageNotRun, match="task 'pp_attractor' has no finished attribution .no task is attributed "
                                          "here yet.; run `crosstime attribute .* --task pp_attractor`"):
        run.attributions["pp_attractor"]


@pytest.mark.slow  # the README's pipeline, every stage, end to end
def test_open_run_refuses_a_changed_output(snippet_run, tmp_path):
    import shutil

    import crosstime
    from crosstime.artifacts import ArtifactError
    from crosstime.runs import StageNotRun

    assert snippet_run["result"].returncode == 0, snippet_run["result"].stderr[-3000:]
    root = shutil.copytree(snippet_run["cwd"] / "runs" / "py", tmp_path / "copy")
    with open(root / "evaluation.json", "a") as handle:
        handle.write(" ")
    with pytest.raises(ArtifactError, match="evaluation.json changed after `crosstime evaluate`"):
        crosstime.open_run(root).evaluation
    with pytest.raises(StageNotRun, match="task 'pp_attractor' has no finished attribution .attributed here: "
                                          "simple_agreement"):
        crosstime.open_run(root).attributions["pp_attractor"]


def help_commands(args: list[str]) -> tuple[list[str], str]:
    """The command names listed by ``crosstime ARGS --help``, in order, and the whole help text."""
    from typer.testing import CliRunner

    from crosstime.cli import app

    out = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100"}).output
    panel = out.split("Commands")[1] if "Commands" in out else ""
    return re.findall(r"^│ (\w+) ", panel, flags=re.MULTILINE), out


def test_help_lists_the_pipeline_in_the_readmes_order_then_the_rest():
    # the README's diagram: checkpoints ─► scan ─► harvest ─► … ─► report
    diagram = re.search(r"^checkpoints ─► (.*)$", README.read_text(encoding="utf-8"), flags=re.MULTILINE).group(1)
    pipeline = [name.strip() for name in diagram.split("─►")]
    assert pipeline == ["scan", "harvest", "train", "evaluate", "attribute", "interpret", "report"]
    commands, _ = help_commands([])
    assert commands[: len(pipeline) + 2] == [*pipeline, "import", "demo"]  # import: another way to a crosscoder
    assert {"series", "toy", "annotate"} <= set(commands[len(pipeline) + 2:])


@pytest.mark.parametrize("args", [[], ["harvest"], ["train"], ["demo"], ["toy", "build"], ["annotate"]])
def test_help_shows_no_type_tags(args):
    _, text = help_commands(args)
    assert "--help" in text
    tags = re.findall(r"<(?:bool|str|int|float|path|list\[str\])>", text)
    assert not tags, f"`crosstime {' '.join(args)} --help` shows type tags {sorted(set(tags))}"
    if args == ["harvest"]:  # the options that take a value keep their metavar
        assert re.search(r"--layer\s+N\b", text) and re.search(r"--revisions\s+A,B\b", text)
