"""The dashboard's script, src/crosstime/report/js/: node's unit tests of its pure files
(tests/report/js/*.test.js, `node:test`), and the page's one script (the files concatenated in
``dashboard.SCRIPTS`` order) parses. Skipped, with the reason, without node on PATH."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from crosstime.report.dashboard import SCRIPTS, script

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH: the dashboard's JS tests need node >= 18 "
                                                     "(apt-get install -y nodejs)")
JS_TESTS = sorted((Path(__file__).parent / "js").glob("*.test.js"))


@needs_node
def test_node_unit_tests_pass():
    """Every test of the pure helpers passes (the files named: `node --test DIR` differs across node versions)."""
    assert JS_TESTS
    run = subprocess.run([NODE, "--test", *map(str, JS_TESTS)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", run.stdout, re.MULTILINE))
    assert int(counts["tests"]) == int(counts["pass"]) >= 40 and counts["fail"] == "0", run.stdout


@needs_node
def test_page_script_parses(tmp_path):
    path = tmp_path / "page.js"
    path.write_text(script(), encoding="utf-8")
    run = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@needs_node
def test_a_broken_script_does_not_parse(tmp_path):
    """The check above can fail: a file cut short is a syntax error."""
    path = tmp_path / "page.js"
    path.write_text(script()[:-20], encoding="utf-8")
    assert subprocess.run([NODE, "--check", str(path)], capture_output=True, timeout=60).returncode != 0


def test_every_file_of_js_is_on_the_page_once_in_order():
    folder = resources.files("crosstime.report").joinpath("js")
    assert sorted(SCRIPTS) == sorted(p.name for p in folder.iterdir() if p.name.endswith(".js"))
    page = script()
    texts = [folder.joinpath(name).read_text(encoding="utf-8") for name in SCRIPTS]
    assert [page.count(text) for text in texts] == [1] * len(SCRIPTS)
    at = [page.index(text) for text in texts]
    assert at == sorted(at)
