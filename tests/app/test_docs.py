"""The numbers the docs quote are those of a fresh demo run (docs/generate.py fills them in)."""

import importlib.util
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"[-+−]?\d[\d,]*(?:\.\d+)?")


def _generate():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _generate()


def _same(quoted: str, fresh: str) -> bool:
    """Equal text with equal integers; decimals within 1% (or 0.011 absolute: a rounding step)."""
    if NUMBER.sub("#", quoted).strip() != NUMBER.sub("#", fresh).strip():
        return False
    a, b = NUMBER.findall(quoted), NUMBER.findall(fresh)
    for x, y in zip(a, b):
        fx, fy = (float(v.replace(",", "").replace("−", "-")) for v in (x, y))
        if "." not in x + y and fx != fy:
            return False
        if not math.isclose(fx, fy, rel_tol=0.01, abs_tol=0.011):
            return False
    return len(a) == len(b)


def test_fill_replaces_only_the_marked_text():
    text = "a <!-- gen:x -->old<!-- /gen --> b <!-- gen:y -->\nkeep\n<!-- /gen --> c"
    out = generate.fill(text, {"x": "new"})
    assert out == "a <!-- gen:x -->new<!-- /gen --> b <!-- gen:y -->\nkeep\n<!-- /gen --> c"
    assert generate.markers(out) == {"x": "new", "y": "\nkeep\n"}


def test_same_tolerates_rounding_not_other_numbers():
    assert _same("EV 0.989, 163 dead", "EV 0.990, 163 dead")
    assert not _same("EV 0.989, 163 dead", "EV 0.989, 164 dead")
    assert not _same("feature 750", "feature 751") and not _same("EV 0.9", "EV 0.8")


@pytest.mark.slow  # the session's demo run: minutes
@pytest.mark.parametrize("doc", generate.FILES, ids=lambda p: p.name)
def test_quoted_numbers_match_a_fresh_demo(demo_run, doc):
    quoted = generate.markers(doc.read_text(encoding="utf-8"))
    fresh = generate.values(demo_run, with_times=True)
    assert quoted, f"{doc} has no generated numbers"
    assert set(quoted) <= set(fresh), f"markers without a value: {set(quoted) - set(fresh)}"
    wrong = {k: (v, fresh[k]) for k, v in quoted.items() if k not in generate.TIME_KEYS and not _same(v, fresh[k])}
    assert not wrong, f"{doc.name} quotes numbers a fresh demo does not give (run `python docs/generate.py`): {wrong}"


def test_docs_figures_exist_and_are_referenced():
    tutorial = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    for target in generate.FIGURES.values():
        assert (ROOT / "docs" / "img" / target).is_file()
        assert f"img/{target}" in tutorial
