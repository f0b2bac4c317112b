"""The hardening matrix of issue 28: one parametrised matrix per surface (annotate, export, import,
serve, series sources). Each case plants one bad input and checks that the command answers with one
line starting ``error:`` (or the project's error type, for the API) and that nothing on disk changed
(a listing with the hash of every file, before and after); a near miss of each is still accepted.

Surface -> cases: ANNOTATE_CASES, EXPORT_CASES, IMPORT_CASES, SERVE_CASES, SERIES_CASES.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import math
import os
import shutil
import socket
import stat
import threading
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_series
from crosscoder.test_formats_io import (
    REVS,
    D,
    F,
    assert_refused,
    cct_config,
    invoke,
    rand_weights,
    write_cct,
    write_llamascopium,
)
from report.test_report_helpers import cached_run
from safetensors.torch import load_file, save_file

from crosstime.artifacts import read_report_data
from crosstime.crosscoder import Crosscoder
from crosstime.interop.formats import read, write
from crosstime.names import UnsafeName
from crosstime.report import EvidenceConfig, ReportConfig
from crosstime.report.annotate import MAX_EXTRA_COLUMNS
from crosstime.report.serve import make_server
from crosstime.series import SeriesError, open_series, source_rule
from crosstime.stages.report import report


def snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root``: a file's sha256, a link's target, a folder, or the kind of a special file
    (never read: a FIFO would block)."""
    out: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = ("dir" if stat.S_ISDIR(mode) else "special", stat.S_IFMT(mode))
    return out


def refused_unchanged(root: Path, args: list, *words: str) -> str:
    """Run ``crosstime *args``: one ``error:`` line containing ``words``, and ``root`` exactly as before."""
    before = snapshot(root)
    line = assert_refused(invoke(*args), *words)
    assert snapshot(root) == before, line
    return line


# -- annotate -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    """A run with a report (copy it before changing it)."""
    run = tmp_path_factory.mktemp("hardening") / "run"
    shutil.copytree(cached_run(tmp_path_factory, M=3)[0], run, ignore=shutil.ignore_patterns("report"))
    report(ReportConfig(run=run, n_features=4, progress=False, evidence=EvidenceConfig(max_contexts=4, logit_lens="none")))
    return run


def _feature_ids(run: Path) -> list[int]:
    return [f["id"] for f in read_report_data(run / "report").model_dump(mode="json")["features"]]


def _edit_data_json(tmp: Path, run: Path) -> tuple[list, list]:
    data = json.loads((run / "report" / "data.json").read_text())
    data["title"] = "reaches 87% …"  # a planted edit the dashboard must not show
    (run / "report" / "data.json").write_text(json.dumps(data))
    good = tmp / "ann.csv"
    good.write_text(f"feature,description\n{_feature_ids(run)[0]},subject number\n")
    return ["annotate", run, "--import", good], ["changed after"]


def _csv_with(text: str):
    def plant(tmp: Path, run: Path) -> tuple[list, list]:
        path = tmp / "ann.csv"
        path.write_text(text.format(f=_feature_ids(run)[0]))
        return ["annotate", run, "--import", path], []
    return plant


def _fifo(tmp: Path, run: Path) -> tuple[list, list]:
    os.mkfifo(tmp / "ann.csv")
    return ["annotate", run, "--import", tmp / "ann.csv"], ["named pipe (FIFO)"]


def _dev_zero_link(tmp: Path, run: Path) -> tuple[list, list]:
    (tmp / "ann.csv").symlink_to("/dev/zero")
    return ["annotate", run, "--import", tmp / "ann.csv"], ["character device", "/dev/zero"]


ANNOTATE_CASES = {
    "edited report/data.json": _edit_data_json,
    "arabic-indic digit id": _csv_with("feature,description\n\u0665,five\n"),
    "underscore id 1_0": _csv_with("feature,description\n1_0,ten\n"),
    "duplicate columns by case": _csv_with("feature,description,Description\n{f},a,b\n"),
    "too many extra columns": _csv_with("feature,description," + ",".join(f"x{i}" for i in range(MAX_EXTRA_COLUMNS + 1))
                                        + "\n{f},a" + "," * (MAX_EXTRA_COLUMNS + 1) + "\n"),
    "FIFO as the CSV": _fifo,
    "/dev/zero link as the CSV": _dev_zero_link,
}


@pytest.mark.parametrize("case", list(ANNOTATE_CASES))
def test_annotate_refuses(case, reported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reported, run)
    args, words = ANNOTATE_CASES[case](tmp_path, run)
    refused_unchanged(tmp_path, args, *words)


def test_annotate_near_misses_still_import(reported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reported, run)
    ids = _feature_ids(run)
    extras = ",".join(f"x{i}" for i in range(MAX_EXTRA_COLUMNS))  # exactly the bound
    path = tmp_path / "ann.csv"
    path.write_text(f"Feature,Description,{extras}\n{ids[0]},first{',' * MAX_EXTRA_COLUMNS}\n"
                    f"{ids[1]},=not a formula,{'y,' * (MAX_EXTRA_COLUMNS - 1)}y\n")
    result = invoke("annotate", run, "--import", path)
    assert result.exit_code == 0, result.output
    again = invoke("annotate", run, "--import", path)  # the re-rendered data.json is vouched for: no refusal
    assert again.exit_code == 0, again.output
    data = read_report_data(run / "report").model_dump(mode="json")
    assert {f["id"]: f["description"] for f in data["features"]}[ids[1]] == "=not a formula"


def test_annotation_export_escapes_formulas_and_the_round_trip_keeps_them(reported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reported, run)
    ids = _feature_ids(run)
    texts = ['=HYPERLINK("http://evil.example","x")', "+1 plural", "-ish", "@SUM(A1)"]  # the report lists 4
    path = tmp_path / "ann.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["feature", "description", "note"])
        writer.writerows([(i, t, "plain" if k == 0 else "") for k, (i, t) in enumerate(zip(ids, texts))])
    assert invoke("annotate", run, "--import", path).exit_code == 0
    exported = tmp_path / "out.csv"
    assert invoke("annotate", run, "--export", exported).exit_code == 0
    with open(exported, newline="") as handle:
        rows = {int(r["feature"]): r for r in csv.DictReader(handle)}
    assert [rows[i]["description"] for i in ids[:4]] == ["'" + t for t in texts]
    assert rows[ids[0]]["note"] == "plain" and rows[ids[0]]["feature"] == str(ids[0])  # others as they are
    assert invoke("annotate", run, "--import", exported).exit_code == 0  # the ' is dropped again
    data = read_report_data(run / "report").model_dump(mode="json")
    assert [{f["id"]: f["description"] for f in data["features"]}[i] for i in ids[:4]] == texts


# -- export ---------------------------------------------------------------------------------------

def _imported_run(tmp: Path, name: str = "run") -> Path:
    pt = write_cct(tmp / "foreign", rand_weights())
    run = tmp / name
    result = invoke("import", "cct", pt, "--out", run)
    assert result.exit_code == 0, result.output
    return run


def _unsafe_run(tmp: Path) -> Path:
    """A run whose crosscoder names its checkpoints like the planted Llamascopium config (saved by the API)."""
    pt = write_cct(tmp / "foreign", rand_weights())
    model = read("cct", pt, revisions=["../../escaped-0", "../../escaped-1", "../../escaped-2"]).model
    model.save(tmp / "unsafe" / "crosscoder")
    return tmp / "unsafe"


def _export_into(where: str) -> callable:
    def plant(tmp: Path, run: Path) -> tuple[list, list]:
        out = {"is the run": run, "inside the run": run / "crosscoder", "contains the run": tmp}[where]
        return ["export", run, "--format", "cct", "--out", out, "--force"], [f"{where.split()[0]} the run"]
    return plant


def _force_over_foreign(tmp: Path, run: Path) -> tuple[list, list]:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "0.pt").write_text("a file of the same name")  # not enough: the other file is not export's
    (tmp / "mine" / "notes.txt").write_text("keep")
    return ["export", run, "--format", "cct", "--out", tmp / "mine", "--force"], ["notes.txt"]


def _force_over_link(tmp: Path, run: Path) -> tuple[list, list]:
    (tmp / "elsewhere").mkdir()
    (tmp / "link").symlink_to(tmp / "elsewhere")
    return ["export", run, "--format", "cct", "--out", tmp / "link", "--force"], ["symbolic link"]


def _unsafe_names(tmp: Path, run: Path) -> tuple[list, list]:
    return ["export", _unsafe_run(tmp), "--format", "saelens", "--out", tmp / "x" / "out"], ["escaped-0"]


EXPORT_CASES = {
    "--out is the run": _export_into("is the run"),
    "--out inside the run": _export_into("inside the run"),
    "--out contains the run": _export_into("contains the run"),
    "--force over a folder it did not write": _force_over_foreign,
    "--force over a symbolic link": _force_over_link,
    "unsafe revision names (saelens folders)": _unsafe_names,
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_refuses(case, tmp_path):
    root = tmp_path / "root"
    run = _imported_run(root)
    args, words = EXPORT_CASES[case](root, run)
    refused_unchanged(tmp_path, args, *words)


def test_export_near_misses_still_export(tmp_path):
    run = _imported_run(tmp_path)
    out = tmp_path / "sae"
    assert invoke("export", run, "--format", "saelens", "--out", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == REVS
    again = invoke("export", run, "--format", "saelens", "--out", out, "--force")  # its own previous export
    assert again.exit_code == 0, again.output
    beside = tmp_path / "run-export"  # a sibling whose name starts like the run's
    assert invoke("export", run, "--format", "cct", "--out", beside).exit_code == 0
    assert sorted(p.name for p in beside.iterdir()) == ["0.pt", "0_cfg.json"]


def test_saelens_writer_refuses_unsafe_names_before_writing(tmp_path):
    model = read("cct", write_cct(tmp_path / "foreign", rand_weights()), revisions=["ok", "../escaped", "c"]).model
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeName, match="escaped"):
        write(model, "saelens", tmp_path / "out" / "inner")
    assert not (tmp_path / "out" / "escaped").exists()
    assert set(snapshot(tmp_path)) - set(before) <= {"out", "out/inner", "out/inner/ok", "out/inner/ok/cfg.json",
                                                     "out/inner/ok/sae_weights.safetensors"}


# -- import ---------------------------------------------------------------------------------------

def _cct_norms(norms: list) -> callable:
    def plant(tmp: Path) -> tuple[list, list]:
        pt = write_cct(tmp / "cct", rand_weights(), cfg=cct_config(estimated_act_norm_list=norms))
        return ["import", "cct", pt, "--out", tmp / "new"], ["estimated_act_norm_list"]
    return plant


def _llamascopium_zero_norm(tmp: Path) -> tuple[list, list]:
    folder = write_llamascopium(tmp / "ls", rand_weights())
    tensors = load_file(folder / "sae_weights.safetensors")
    first_hook = json.loads((folder / "config.json").read_text())["hook_points"][0]
    tensors[f"dataset_average_activation_norm.{first_hook}"] = torch.tensor(0.0)
    save_file(tensors, str(folder / "sae_weights.safetensors"), metadata={"version": "2.0.0"})
    return ["import", "llamascopium", folder, "--out", tmp / "new"], ["dataset_average_activation_norm"]


def _bias_of(dtype: torch.dtype) -> callable:
    def plant(tmp: Path) -> tuple[list, list]:
        w = rand_weights()
        w["b_enc"] = (w["b_enc"] * 10).to(dtype)
        return ["import", "cct", write_cct(tmp / "cct", w), "--out", tmp / "new"], ["non-float", "b_enc"]
    return plant


def _escaping_hook_points(tmp: Path) -> tuple[list, list]:
    hooks = [f"../../escaped-{i}" for i in range(3)]
    return ["import", "llamascopium", write_llamascopium(tmp / "ls", rand_weights(), hooks=hooks), "--out",
            tmp / "new"], ["escaped-0"]


def _linked_crosscoder(tmp: Path) -> tuple[list, list]:
    run = _imported_run(tmp)
    hub = tmp / "hub"
    assert invoke("export", run, "--format", "hub", "--out", hub).exit_code == 0
    shutil.move(run / "crosscoder", tmp / "kept")
    (run / "crosscoder").symlink_to(tmp / "kept")
    return ["import", "hub", hub, "--out", run, "--force"], ["symbolic link"]


def _pickled_series(tmp: Path) -> tuple[list, list]:
    root = make_tiny_series(tmp / "series", steps=(0, 10))
    folder = root / "step10"
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return ["series", root], ["pytorch_model.bin", "safetensors"]


def _fifo_path(tmp: Path) -> tuple[list, list]:
    os.mkfifo(tmp / "cc.pt")
    return ["import", "cct", tmp / "cc.pt", "--out", tmp / "new"], ["named pipe (FIFO)"]


IMPORT_CASES = {
    "cct norm 0": _cct_norms([0.0, 11.0, 40.0]),
    "cct norm 'abc'": _cct_norms(["abc", 11.0, 40.0]),
    "llamascopium norm 0": _llamascopium_zero_norm,
    "int bias": _bias_of(torch.int64),
    "bool bias": _bias_of(torch.bool),
    "complex bias": _bias_of(torch.complex64),
    "hook_points leaving the folder": _escaping_hook_points,
    "hub --force onto a linked RUN/crosscoder": _linked_crosscoder,
    "local series with a pickled pytorch_model.bin": _pickled_series,
    "FIFO as the crosscoder file": _fifo_path,
}


@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_import_refuses(case, tmp_path):
    args, words = IMPORT_CASES[case](tmp_path)
    refused_unchanged(tmp_path, args, *words)


def test_import_near_misses_still_import(tmp_path):
    w = rand_weights()
    w["b_enc"] = w["b_enc"].to(torch.float64)  # float64 is a float: read, kept to float32's precision
    # CCT's scaling factors as JSON may hold them (an int among floats); CCT records s_m itself
    pt = write_cct(tmp_path / "cct", w, cfg=cct_config(estimated_act_norm_list=[0.5, 2, 4.0]))
    assert invoke("import", "cct", pt, "--out", tmp_path / "a").exit_code == 0
    saved = json.loads((tmp_path / "a" / "crosscoder" / "config.json").read_text())
    assert saved["scales"] == pytest.approx([0.5, 2.0, 4.0])
    hooks = ["blocks.3.hook_resid_post", "blocks.4.hook_resid_post", "blocks.5.hook_resid_post"]  # dots are fine
    folder = write_llamascopium(tmp_path / "ls", rand_weights(), hooks=hooks)
    assert invoke("import", "llamascopium", folder, "--out", tmp_path / "b").exit_code == 0
    hub = tmp_path / "hub"
    assert invoke("export", tmp_path / "b", "--format", "hub", "--out", hub).exit_code == 0
    again = invoke("import", "hub", hub, "--out", tmp_path / "a", "--force")  # a real folder is replaced
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "a" / "crosscoder" / "config.json").read_text())["revisions"] == hooks
    assert not list(tmp_path.glob("a/.crosscoder.partial-*"))
    assert F == json.loads((tmp_path / "a" / "crosscoder" / "config.json").read_text())["n_features"]


# -- serve ----------------------------------------------------------------------------------------

@pytest.fixture
def served(tmp_path):
    """A report folder with a link out to a file, one to the run, one inside; served on a free port."""
    report_dir = tmp_path / "run" / "report"
    report_dir.mkdir(parents=True)
    (report_dir / "index.html").write_text("<html>dashboard</html>")
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "run" / "notes.txt").write_text("secret notes of the run")
    (report_dir / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (report_dir / "up").symlink_to("..")
    (report_dir / "alias.html").symlink_to("index.html")
    server = make_server(tmp_path / "run", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, server.server_port
    server.shutdown()
    server.server_close()


def _get(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Host": host} if host is not None else {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


SERVE_CASES = {
    "link to a file outside report/": ("/leak.txt", "127.0.0.1:{port}", 404),
    "link to .. (the run)": ("/up/", "127.0.0.1:{port}", 404),
    "a run file through the link to ..": ("/up/notes.txt", "127.0.0.1:{port}", 404),
    "Host evil.example": ("/index.html", "evil.example", 403),
    "Host evil.example with the port": ("/index.html", "evil.example:{port}", 403),
    "Host localhost with another port": ("/index.html", "localhost:1", 403),
    "Host localhost.evil.example": ("/index.html", "localhost.evil.example:{port}", 403),
}


@pytest.mark.parametrize("case", list(SERVE_CASES))
def test_serve_refuses(case, served):
    root, port = served
    path, host, status = SERVE_CASES[case]
    before = snapshot(root)
    got, body = _get(port, path, host.format(port=port))
    assert got == status and b"secret" not in body and b"dashboard" not in body
    assert snapshot(root) == before


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:{port}", "LOCALHOST"])
def test_serve_near_misses_are_served(host, served):
    _, port = served
    assert _get(port, "/index.html", host.format(port=port)) == (200, b"<html>dashboard</html>")
    assert _get(port, "/alias.html", host.format(port=port)) == (200, b"<html>dashboard</html>")  # a link inside


# -- series sources -------------------------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any connection attempt (a source sent to the Hub would make one)."""
    def refuse(self, address):
        raise AssertionError(f"a network connection was attempted: {address}")
    monkeypatch.setattr(socket.socket, "connect", refuse)


SERIES_CASES = {
    "toyy/series with ./toy here": ("toyy/series", "the local folder toy starts it"),
    "runs/typo with ./runs here": ("runs/typo", "its folder runs exists here"),
    "org/../name": ("org/../name", "not of the form org/name"),
}


@pytest.mark.parametrize("case", list(SERIES_CASES))
def test_series_path_rule_refuses_locally(case, tmp_path, monkeypatch, no_network):
    (tmp_path / "toy" / "series").mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    source, rule = SERIES_CASES[case]
    refused_unchanged(tmp_path, ["series", source], "does not exist", rule)


def test_series_path_rule_near_misses_are_hub_ids(tmp_path, monkeypatch, no_network):
    (tmp_path / "toy").mkdir()
    monkeypatch.chdir(tmp_path)
    assert source_rule("EleutherAI/pythia-70m") is None and source_rule("to/series") is None  # no folder starts them
    assert len(open_series("EleutherAI/pythia-70m")) > 100  # the known grid: no network call
    monkeypatch.chdir(tmp_path / "toy")
    assert source_rule("toyy/series") is None  # the same text elsewhere is a Hub id
    with pytest.raises(SeriesError, match="revisions explicitly"):
        open_series("toyy/series")  # an unknown family needs revisions; nothing contacted


def test_series_with_safetensors_still_opens(tmp_path):
    root = make_tiny_series(tmp_path / "series", steps=(0, 10))
    (root / "step10" / "pytorch_model.bin").write_bytes(b"a stale pickle beside the safetensors")  # not loaded
    assert open_series(root).revisions == ["step0", "step10"]


def test_import_force_that_fails_mid_write_keeps_the_old_crosscoder_and_its_record(tmp_path, monkeypatch):
    """The new crosscoder is written beside the old one first: a full disk leaves the run as it was."""
    run = _imported_run(tmp_path)
    pt = write_cct(tmp_path / "other", rand_weights(seed=3))

    def full_disk(self, path, extra=None):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device", str(Path(path) / "model.safetensors"))

    monkeypatch.setattr(Crosscoder, "save", full_disk)
    refused_unchanged(tmp_path, ["import", "cct", pt, "--out", run, "--force"], "no space left")
