"""The data a dashboard page embeds (``<script id="crosstime-data">``) is valid against the JSON Schema
of ``crosstime.artifacts.ReportData``: what the page's script may rely on. The page is the report of
the fabricated M = 3 run (test_report_helpers.cached_run, as tests/test_report.py and the browser test)."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
from test_report_helpers import cached_run

from crosstime.artifacts import ReportData
from crosstime.report import EvidenceConfig, ReportConfig
from crosstime.stages.report import report


@pytest.fixture(scope="module")
def page_data(tmp_path_factory) -> dict:
    run, _ = cached_run(tmp_path_factory, M=3)
    html = report(ReportConfig(run=run, n_features=12, progress=False, evidence=EvidenceConfig(n_top=4, max_contexts=8)))
    m = re.search(r'<script type="application/json" id="crosstime-data">(.*?)</script>', html.read_text(), re.DOTALL)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def validator():
    schema = ReportData.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_page_data_is_valid_against_the_report_data_schema(page_data, validator):
    assert len(page_data["features"]) == 12 and len(page_data["checkpoints"]) == 3 and page_data["tasks"]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(page_data)]
    assert errors == []


@pytest.mark.parametrize("edit", ["step as text", "a missing field", "an unknown field", "a task not a string"])
def test_the_schema_rejects_a_changed_page(page_data, validator, edit):
    """The check above can fail: each change of the page's data breaks the schema."""
    bad = copy.deepcopy(page_data)
    if edit == "step as text":
        bad["checkpoints"][0]["step"] = "one"
    elif edit == "a missing field":
        del bad["views"]
    elif edit == "an unknown field":
        bad["checkpoints"][1]["colour"] = "red"
    else:
        bad["tasks"].append(3)
    assert not validator.is_valid(bad)
