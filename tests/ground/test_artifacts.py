"""The artifact schema: tables written and read by the same column list, strictly."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from crosstime.artifacts import ArtifactError, Column, Table, pairs, read_model, write_model

TABLE = Table("t.csv", (
    Column("feature", int, "id"),
    Column("label", str, "a class"),
    Column("alive", bool, "fired"),
    Column("share", float, "per checkpoint", "checkpoint"),
    Column("pair", float, "per pair", "pair", max_checkpoints=3),
    Column("cos", float, "per interval", "interval"),
))


def _rows(M: int) -> list[dict]:
    P = len(pairs(M))
    return [{"feature": 7, "label": "a, b", "alive": True, "share": [0.5 + m for m in range(M)],
             "pair": [0.25] * P if M <= 3 else None, "cos": [0.125] * (M - 1)},
            {"feature": 8, "label": None, "alive": False, "share": [None] * M, "pair": [None] * P if M <= 3 else None,
             "cos": [float("nan")] * (M - 1)}]


def test_header_spells_every_checkpoint_pair_and_interval():
    assert TABLE.header(["a", "b", "c"]) == [
        "feature", "label", "alive", "share_a", "share_b", "share_c", "pair_a_vs_b", "pair_a_vs_c", "pair_b_vs_c",
        "cos_a_to_b", "cos_b_to_c"]
    assert "pair_a_vs_b" not in TABLE.header(["a", "b", "c", "d"])  # past max_checkpoints
    assert pairs(3) == [(0, 1), (0, 2), (1, 2)]


@pytest.mark.parametrize("M", [1, 3, 4])
def test_round_trip(tmp_path, M):
    revs = [f"step{m}" for m in range(M)]
    TABLE.write(tmp_path, _rows(M), revs)
    back = TABLE.read(tmp_path, revs)
    assert back[0] == _rows(M)[0]
    assert back[1]["label"] is None and back[1]["share"] == [None] * M and back[1]["alive"] is False
    assert all(v != v for v in back[1]["cos"])  # NaN stays NaN


def test_a_reader_never_guesses(tmp_path):
    revs = ["a", "b"]
    TABLE.write(tmp_path, _rows(2), revs)
    with pytest.raises(ArtifactError, match="its columns are not those"):
        TABLE.read(tmp_path, ["a", "c"])  # other checkpoints
    text = (tmp_path / "t.csv").read_text().replace("share_a", "reldec_a", 1)
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(ArtifactError, match=r"t\.csv: its columns"):
        TABLE.read(tmp_path, revs)
    TABLE.write(tmp_path, _rows(2), revs)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    (tmp_path / "t.csv").write_text("\n".join([lines[0], lines[1].replace("7", "seven", 1)]) + "\n")
    with pytest.raises(ArtifactError, match="line 2, column feature"):
        TABLE.read(tmp_path, revs)
    with pytest.raises(KeyError, match="no column"):
        TABLE.write(tmp_path, [{**_rows(2)[0], "extra": 1}], revs)
    with pytest.raises(ValueError, match="needs 2 values"):
        TABLE.write(tmp_path, [{**_rows(2)[0], "share": [1.0]}], revs)


class Doc(BaseModel):
    a: int
    b: list[str]


def test_json_models_are_validated_when_read(tmp_path):
    write_model(Doc(a=1, b=["x"]), tmp_path / "d.json")
    assert read_model(Doc, tmp_path / "d.json") == Doc(a=1, b=["x"])
    (tmp_path / "d.json").write_text('{"a": "one", "b": []}')
    with pytest.raises(ArtifactError, match=r"d\.json is not a Doc"):
        read_model(Doc, tmp_path / "d.json")
    with pytest.raises(ArtifactError, match="does not exist"):
        read_model(Doc, tmp_path / "none.json")
