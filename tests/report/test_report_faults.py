"""Damaged stage outputs under a report: every case is a clear error naming the file, or an
explicit statement that the stage's output is not there — never a report built on damaged data.

The store, the crosscoder and the command line have matrices of their own
(test_store_faults.py, test_crosscoder_faults.py, test_cli.py); this one covers the files the
scan, evaluate and attribute stages write and the report reads, and the run's config.yaml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_report_helpers import cached_run

from crosstime.artifacts import read_report_data
from crosstime.errors import CrosstimeError
from crosstime.report import EvidenceConfig, ReportConfig
from crosstime.stages.report import report

QUICK = EvidenceConfig(max_contexts=4, logit_lens="none")
TASK = "agreement"
FILES = ["scan/accuracy.csv", "scan/dynamics.csv", "scan/similarity.npz", "scan/suggestion.json",
         "scan/fingerprints.json", "evaluation.json", "evaluation/features.csv",
         f"attribution/{TASK}/features.csv", f"attribution/{TASK}/summary.json", f"attribution/{TASK}/ablation.csv",
         f"attribution/{TASK}/confusion.csv", f"attribution/{TASK}/effects.safetensors"]
DAMAGES = ["garbage", "truncated", "deleted", "one_byte"]
OUTCOMES: dict[str, str] = {}


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "garbage":  # same size, nothing like the file
        path.write_bytes(bytes((i * 131 + 7) % 251 for i in range(len(data))))
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "deleted":
        path.unlink()
    else:  # one byte changed: the file may still parse as a valid one
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    run, _ = cached_run(tmp_path_factory, M=3)
    return run


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_stage_output_never_reaches_the_report(pristine, tmp_path, name, how):
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    shutil.rmtree(run / "report", ignore_errors=True)  # another test may have reported on the shared run
    assert (run / name).is_file(), name
    _damage(run / name, how)
    with pytest.raises(CrosstimeError) as caught:
        report(ReportConfig(run=run, n_features=4, progress=False, evidence=QUICK))
    message = str(caught.value)
    assert Path(name).name in message and "\n" not in message.strip(), message
    assert "re-run" in message
    assert not (run / "report" / "index.html").exists()  # nothing built on it
    OUTCOMES[f"{name} {how}"] = "clear error"


@pytest.mark.parametrize("how", ["garbage", "truncated", "deleted"])
def test_a_damaged_config_yaml(pristine, tmp_path, how):
    """config.yaml holds the records: damaged, it is an error naming it; gone, no stage counts as
    finished and the report says so for each instead of reading their files."""
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    _damage(run / "config.yaml", how)
    if how == "deleted":
        report(ReportConfig(run=run, n_features=4, progress=False, evidence=QUICK))
        missing = " ".join(read_report_data(run / "report").model_dump(mode="json")["missing"])
        for stage in ("scan", "evaluate", "attribute"):
            assert f"`crosstime {stage}` did not finish there" in missing
        OUTCOMES[f"config.yaml {how}"] = "explicit: stages listed as unfinished"
        return
    if how == "truncated":  # half a YAML mapping may still parse: then records are missing or differ
        try:
            report(ReportConfig(run=run, n_features=4, progress=False, evidence=QUICK))
        except CrosstimeError as err:
            assert "config.yaml" in str(err)
            OUTCOMES[f"config.yaml {how}"] = "clear error"
            return
        missing = " ".join(read_report_data(run / "report").model_dump(mode="json")["missing"])
        assert "did not finish there" in missing
        OUTCOMES[f"config.yaml {how}"] = "explicit: stages listed as unfinished"
        return
    with pytest.raises(CrosstimeError, match=r"config\.yaml"):
        report(ReportConfig(run=run, n_features=4, progress=False, evidence=QUICK))
    OUTCOMES[f"config.yaml {how}"] = "clear error"


def test_zz_outcome_counts():
    """Printed for the record (pytest -s); every case above either raised or stated the gap."""
    counts: dict[str, int] = {}
    for outcome in OUTCOMES.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"report fault matrix: {len(OUTCOMES)} cases: {counts}")
    assert len(OUTCOMES) == len(FILES) * len(DAMAGES) + 3
