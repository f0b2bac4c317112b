"""The JSON artifacts' schemas: the committed docs/schema/ is what the models generate, no field is
untyped, the settings listed again in crosstime.artifacts match the configs that own them, and a model
whose writer leaves fields out writes them back out as it read them."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, TypeAdapter
from script_loader import load_script

from crosstime.artifacts import (
    JSON_ARTIFACTS,
    AttributionSummary,
    EvaluationSettings,
    EvidenceSettings,
    Figure,
    ReportCrosscoderConfig,
    SuggestionNumbers,
    json_schemas,
)
from crosstime.crosscoder import CrosscoderConfig, TrainSettings
from crosstime.evaluate import EvaluateConfig
from crosstime.report import EvidenceConfig


def _generate_schemas():
    return load_script("docs/generate_schemas.py", "docs_generate_schemas")


def test_committed_schemas_are_the_generated_ones():
    generate = _generate_schemas()
    fresh = generate.schema_texts()
    committed = {p.name: p.read_text(encoding="utf-8") for p in generate.SCHEMA_DIR.glob("*.schema.json")}
    assert sorted(committed) == sorted(fresh), "run `python docs/generate_schemas.py` and commit docs/schema/"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"docs/schema/ {stale} differ from the models: run `python docs/generate_schemas.py`"
    assert "evaluation.schema.json" in fresh and "report.data.schema.json" in fresh


def _untyped(node, where: str) -> list[str]:
    """Places in a JSON Schema that accept anything: an empty schema (a field typed Any) or an object whose
    extra keys are untyped (a dict[str, Any])."""
    if isinstance(node, list):
        return [p for k, item in enumerate(node) for p in _untyped(item, f"{where}[{k}]")]
    if not isinstance(node, dict):
        return []
    found = [where] if node == {} else []
    if node.get("type") == "object" and node.get("additionalProperties", {}) in ({}, True) and "properties" not in node:
        found.append(where)
    for key, value in node.items():
        if key in ("properties", "$defs"):
            found += [p for name, sub in value.items() for p in _untyped(sub, f"{where}.{name}")]
        elif key in ("items", "anyOf", "prefixItems", "additionalProperties"):
            found += _untyped(value, f"{where}.{key}")
    return found


@pytest.mark.parametrize("path", sorted(JSON_ARTIFACTS))
def test_every_field_of_an_artifact_is_typed(path):
    schema = json_schemas()[path]
    assert _untyped(schema, path) == []
    # every model forbids keys it does not name: a writer's typo is an error, not a new field
    closed = [name for name, sub in schema.get("$defs", {}).items() if sub.get("type") == "object" and "properties" in sub]
    assert all(schema["$defs"][name].get("additionalProperties") is False for name in closed)


def test_the_untyped_check_finds_an_any():
    class Loose(BaseModel):
        numbers: dict[str, object]

    assert _untyped(Loose.model_json_schema(), "Loose") == ["Loose.numbers"]


def _json_type(annotation) -> dict:
    return TypeAdapter(annotation).json_schema(mode="serialization")


@pytest.mark.parametrize(("listed", "owner"), [(EvaluationSettings, EvaluateConfig),
                                               (ReportCrosscoderConfig, CrosscoderConfig),
                                               (EvidenceSettings, EvidenceConfig)])
def test_settings_listed_again_match_their_config(listed, owner):
    """The configs sit above crosstime.artifacts, so the artifacts list their fields again: the same names, in
    the same order, with the same JSON types (the stage's own fields after them)."""
    names = list(owner.model_fields)
    assert list(listed.model_fields)[: len(names)] == names
    for name in names:
        if name == "variant_config":  # the variant registry's own model (above the artifacts): a map of JSON values
            assert _json_type(listed.model_fields[name].annotation)["type"] == "object"
            continue
        assert _json_type(listed.model_fields[name].annotation) == _json_type(owner.model_fields[name].annotation), name


def test_one_name_two_meanings_two_titles():
    assert AttributionSummary.model_fields["steps"].title == "integration steps"
    assert TrainSettings.model_fields["steps"].title == "training steps"


def test_fields_a_writer_leaves_out_stay_out():
    """Absent is not None: a figure without a caption, and a pick's numbers with a None, read back and write
    again byte for byte."""
    figure = Figure(name="scan/a.png", group="scan", src="data:")
    assert figure.model_dump_json() == '{"name":"scan/a.png","group":"scan","src":"data:"}'
    figure.caption = "a reading"  # set later (crosstime.report.evolution.caption_figures): written
    assert json.loads(figure.model_dump_json())["caption"] == "a reading"
    numbers = SuggestionNumbers(min_cka_distance=0.5, accuracy=0.9, cka_with_after=None)
    text = numbers.model_dump_json()
    assert text == '{"min_cka_distance":0.5,"accuracy":0.9,"cka_with_after":null}'
    assert SuggestionNumbers.model_validate_json(text).model_dump_json() == text
