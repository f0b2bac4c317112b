"""The command line's one error path: every expected failure is one line ``error: …`` naming the
input, exit code 2 (130 for an interrupt), no traceback unless ``--debug``; nothing is written
outside the run for names that try to leave it.

The bad-input matrix runs every command (series, scan, harvest, train, evaluate, attribute,
report, annotate, demo, toy build) on small fixtures: a tiny local series (conftest), a run with
an activation store, the same run with a crosscoder, and damaged copies and files.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import WORDS
from typer.testing import CliRunner

from crosstime.cli import app

PAIRS = [("the dog", "runs", "run"), ("the dogs", "run", "runs"), ("the cat", "sleeps", "sleep"),
         ("the cats", "sleep", "sleeps"), ("a big dog", "runs", "run"), ("the old men", "sleep", "sleeps")]


@dataclass
class World:
    """Paths of the fixtures the cases refer to as ``{name}``."""

    root: Path  # everything below is inside it
    cwd: Path  # the current folder of every case (holds runs/, so `runs/x` looks local)
    series: Path
    corpus: Path
    store: Path  # a run with an activation store only
    cc: Path  # the same run with a crosscoder
    empty: Path  # an existing run folder with nothing in it
    bad_yaml: Path  # `cc` with a config.yaml that is not YAML
    task: Path
    task_latin1: Path
    series_numeric: Path  # series.json with a revision given as a number
    series_escape: Path  # series.json with a revision '../x'
    series_negative: Path  # series.json with a negative step
    csv_unclosed: Path
    csv_nul: Path
    csv_latin1: Path
    corpus_latin1: Path
    new: Path  # a run folder that does not exist yet


def _jsonl(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(encoding))
    return path


def _series_json(folder: Path, entries: list[dict]) -> Path:
    folder.mkdir()
    (folder / "series.json").write_text(json.dumps({"checkpoints": entries}))
    return folder


@pytest.fixture(scope="module")
def world(tiny_series, tmp_path_factory) -> World:
    from crosstime.crosscoder import CrosscoderConfig, build
    from crosstime.store import HarvestConfig
    from crosstime.stages.harvest import harvest

    root = tmp_path_factory.mktemp("cli")
    rng = random.Random(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(200)))
    store = harvest(HarvestConfig(run=root / "store", series=str(tiny_series), layer=1, corpus=str(corpus), tokens=256,
                                  context_len=16, chunk_contexts=8, batch_size=4, progress=False, device="cpu"))
    shutil.copytree(root / "store", root / "cc")
    build(CrosscoderConfig(n_checkpoints=3, d_model=32, n_features=16, seed=1, revisions=store.revisions,
                           scales=[store.scales[r] for r in store.revisions])).save(root / "cc" / "crosscoder")
    shutil.copytree(root / "cc", root / "bad_yaml")
    (root / "bad_yaml" / "config.yaml").write_text("train: [unclosed\n")
    (root / "empty").mkdir()
    (root / "cwd" / "runs").mkdir(parents=True)
    pairs = [{"one_prefix_prefix": p, "one_prefix_word_good": g, "one_prefix_word_bad": b,
              "sentence_good": f"{p} {g} .", "sentence_bad": f"{p} {b} ."} for p, g, b in PAIRS]
    latin = [{**pairs[0], "one_prefix_prefix": "the café"}]
    (root / "a.csv").write_text('feature,description\n1,"plural subject\n2,verb\n')
    (root / "nul.csv").write_text("feature,description\n1,ok\n2,a\x00b\n")
    (root / "latin1.csv").write_bytes(b"feature,description\n1,caf\xe9\n")
    (root / "latin1.txt").write_bytes(corpus.read_bytes() + b"\nthe caf\xe9 is old\n")
    return World(
        root=root, cwd=root / "cwd", series=tiny_series, corpus=corpus, store=root / "store", cc=root / "cc",
        empty=root / "empty", bad_yaml=root / "bad_yaml", task=_jsonl(root / "agreement.jsonl", pairs),
        task_latin1=_jsonl(root / "latin.jsonl", latin, encoding="latin-1"),
        series_numeric=_series_json(root / "s_numeric", [{"revision": 5, "step": 5, "tokens": 50}]),
        series_escape=_series_json(root / "s_escape", [{"revision": "../x", "step": 1, "tokens": 10}]),
        series_negative=_series_json(root / "s_negative", [{"revision": "step1", "step": -3, "tokens": 10}]),
        csv_unclosed=root / "a.csv", csv_nul=root / "nul.csv", csv_latin1=root / "latin1.csv",
        corpus_latin1=root / "latin1.txt", new=root / "new",
    )


def invoke(args: list[str]):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="crosstime")


def assert_one_line_error(result, names: str, code: int = 2) -> str:
    """The result of a refused command: ``code``, one line ``error: …`` naming ``names``, no traceback."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert names in lines[0], (names, lines[0])
    return lines[0]


def _tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every file (size, mtime) and folder (None) below ``root``; lock files (left by design) and a
    store's ``.verified.json`` (a reader's cache of hashed files: which reader writes it first
    depends on the order the tests run in) aside."""
    out: dict[str, tuple[int, int] | None] = {}
    for p in root.rglob("*"):
        if p.name.startswith(".crosstime.lock") or p.name == ".verified.json":
            continue
        out[str(p.relative_to(root))] = (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
    return out


# -- the bad-input matrix ------------------------------------------------------------------------------

HUB = "crosstime-test/not-cached"  # a Hub id in no cache; HF_HUB_OFFLINE=1 (conftest)
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --device cuda is valid")

CASES = [
    # (id, arguments, substring naming the input; {name} is a World path)
    # series
    ("series: mistyped local folder", ["series", "toy-typo"], "no such series folder toy-typo"),
    ("series: ./x", ["series", "./x"], "no such series folder ./x"),
    ("series: runs/x with runs/", ["series", "runs/x"], "no such series folder runs/x"),
    ("series: revision ../../x", ["series", "EleutherAI/pythia-70m", "--revisions", "../../x"], "'../../x'"),
    ("series: numeric revision", ["series", "{series_numeric}"], "{series_numeric}/series.json, checkpoint 0"),
    ("series: revision ../x", ["series", "{series_escape}"], "'../x' cannot be used as a folder name"),
    ("series: negative step", ["series", "{series_negative}"], "step is -3, a negative count"),
    ("series: --tokens-per-step -5", ["series", "EleutherAI/pythia-70m", "--tokens-per-step", "-5"],
     "--tokens-per-step"),
    ("series: unknown option", ["series", "{series}", "--bogus"], "--bogus"),
    ("series: Hub family unknown", ["series", "org/name"], "'org/name' is neither"),
    # scan
    ("scan: --device bogus", ["scan", "{new}", "{series}", "--layer", "1", "--device", "bogus"], "--device"),
    pytest.param("scan: --device cuda", ["scan", "{new}", "{series}", "--layer", "1", "--device", "cuda"],
                  "--device", marks=NO_CUDA, id="scan: --device cuda"),
    ("scan: --batch-size 0", ["scan", "{new}", "{series}", "--layer", "1", "--batch-size", "0"], "--batch-size"),
    ("scan: --min-jump nan", ["scan", "{new}", "{series}", "--layer", "1", "--min-jump", "nan"], "--min-jump"),
    ("scan: --layer 99", ["scan", "{new}", "{series}", "--layer", "99"], "layer 99"),
    ("scan: unknown task", ["scan", "{new}", "{series}", "--layer", "1", "--tasks", "nosuchtask"], "'nosuchtask'"),
    ("scan: non-UTF-8 task file", ["scan", "{new}", "{series}", "--layer", "1", "--tasks", "{task_latin1}"],
     "{task_latin1} is not UTF-8"),
    ("scan: non-UTF-8 corpus", ["scan", "{new}", "{series}", "--layer", "1", "--tasks", "{task}",
                                "--similarity-source", "corpus", "--corpus", "{corpus_latin1}"],
     "{corpus_latin1} is not UTF-8"),
    ("scan: mistyped series", ["scan", "{new}", "toy-typo", "--layer", "1"], "toy-typo"),
    ("scan: Hub id offline", ["scan", "{new}", HUB, "--layer", "1", "--revisions", "step1"], f"'{HUB}'"),
    ("scan: revision ../../x", ["scan", "{new}", "{series}", "--layer", "1", "--revisions", "../../x"], "'../../x'"),
    ("scan: missing layer", ["scan", "{new}", "{series}"], "--layer"),
    # harvest
    ("harvest: --tokens inf", ["harvest", "{new}", "{series}", "--layer", "1", "--tokens", "inf"], "--tokens"),
    ("harvest: --tokens 1.2345K", ["harvest", "{new}", "{series}", "--layer", "1", "--tokens", "1.2345K"],
     "--tokens"),
    ("harvest: --tokens -5", ["harvest", "{new}", "{series}", "--layer", "1", "--tokens", "-5"], "--tokens"),
    ("harvest: --context-len 1", ["harvest", "{new}", "{series}", "--layer", "1", "--context-len", "1"],
     "--context-len"),
    ("harvest: --device bogus", ["harvest", "{new}", "{series}", "--layer", "1", "--device", "bogus"], "--device"),
    ("harvest: non-UTF-8 corpus", ["harvest", "{new}", "{series}", "--layer", "1", "--corpus", "{corpus_latin1}",
                                   "--tokens", "64", "--context-len", "16"], "{corpus_latin1}:201 is not UTF-8"),
    ("harvest: missing corpus", ["harvest", "{new}", "{series}", "--layer", "1", "--corpus", "missing.txt",
                                 "--tokens", "64", "--context-len", "16"], "missing.txt"),
    ("harvest: mistyped series", ["harvest", "{new}", "toy-typo", "--layer", "1", "--corpus", "{corpus}"],
     "no such series folder toy-typo"),
    ("harvest: Hub id offline", ["harvest", "{new}", HUB, "--revisions", "step1", "--layer", "1", "--corpus",
                                 "{corpus}"], f"'{HUB}' at revision 'step1'"),
    ("harvest: numeric revision in series.json", ["harvest", "{new}", "{series_numeric}", "--layer", "1"],
     "{series_numeric}/series.json"),
    ("harvest: revision ../x in series.json", ["harvest", "{new}", "{series_escape}", "--layer", "1"],
     "{series_escape}/series.json"),
    ("harvest: revision ../../x", ["harvest", "{new}", "{series}", "--layer", "1", "--revisions", "../../x"],
     "'../../x'"),
    ("harvest: --layer -1", ["harvest", "{new}", "{series}", "--layer", "-1", "--corpus", "{corpus}"], "layer -1"),
    # train
    ("train: --lr inf", ["train", "{store}", "--lr", "inf"], "--lr"),
    ("train: --lr -1", ["train", "{store}", "--lr", "-1"], "--lr"),
    ("train: --tokens inf", ["train", "{store}", "--tokens", "inf"], "--tokens"),
    ("train: --steps 0", ["train", "{store}", "--steps", "0"], "--steps"),
    ("train: --k 0", ["train", "{store}", "--variant", "topk", "--k", "0"], "--k"),
    ("train: topk --k > F", ["train", "{store}", "--variant", "topk", "--k", "100", "--n-features", "16"], "--k"),
    pytest.param("train: --device cuda", ["train", "{store}", "--device", "cuda"], "--device", marks=NO_CUDA,
                 id="train: --device cuda"),
    ("train: --device bogus", ["train", "{store}", "--device", "bogus"], "--device"),
    ("train: unknown option", ["train", "{store}", "--lrr", "1e-3"], "--lrr"),
    ("train: missing run", ["train", "{root}/missing"], "{root}/missing"),
    ("train: run without a store", ["train", "{empty}"], "{empty}/activations"),
    ("train: malformed config.yaml", ["train", "{bad_yaml}", "--steps", "2", "--batch-size", "16"],
     "{bad_yaml}/config.yaml"),
    ("train: revision not in the store", ["train", "{store}", "--revisions", "../../x"], "'../../x'"),
    # evaluate
    ("evaluate: run without a crosscoder", ["evaluate", "{store}"], "{store}/crosscoder"),
    ("evaluate: missing run", ["evaluate", "{root}/missing"], "{root}/missing"),
    ("evaluate: --dead-tokens 0", ["evaluate", "{cc}", "--dead-tokens", "0"], "--dead-tokens"),
    ("evaluate: --presence 2", ["evaluate", "{cc}", "--presence", "2"], "--presence"),
    ("evaluate: --tokens inf", ["evaluate", "{cc}", "--tokens", "inf"], "--tokens"),
    ("evaluate: --device bogus", ["evaluate", "{cc}", "--device", "bogus"], "--device"),
    ("evaluate: malformed config.yaml", ["evaluate", "{bad_yaml}", "--batch-rows", "64"], "{bad_yaml}/config.yaml"),
    # attribute
    ("attribute: task ../../x", ["attribute", "{cc}", "--task", "../../x"], "'../../x'"),
    ("attribute: task ...jsonl", ["attribute", "{cc}", "--task", "...jsonl"], "'...jsonl'"),
    ("attribute: unknown task", ["attribute", "{cc}", "--task", "nosuchtask"], "'nosuchtask'"),
    ("attribute: missing task file", ["attribute", "{cc}", "--task", "missing.jsonl"], "missing.jsonl"),
    ("attribute: non-UTF-8 task file", ["attribute", "{cc}", "--task", "{task_latin1}"],
     "{task_latin1} is not UTF-8"),
    ("attribute: --top-k > F", ["attribute", "{cc}", "--task", "{task}", "--top-k", "1000"], "--top-k 1000"),
    ("attribute: run without a crosscoder", ["attribute", "{store}", "--task", "{task}"], "crosscoder"),
    ("attribute: --steps 0", ["attribute", "{cc}", "--task", "{task}", "--steps", "0"], "--steps"),
    ("attribute: --threshold nan", ["attribute", "{cc}", "--task", "{task}", "--threshold", "nan"], "--threshold"),
    pytest.param("attribute: --device cuda", ["attribute", "{cc}", "--task", "{task}", "--device", "cuda"],
                 "--device", marks=NO_CUDA, id="attribute: --device cuda"),
    ("attribute: missing --task", ["attribute", "{cc}"], "--task"),
    # report
    ("report: missing run", ["report", "{root}/missing"], "{root}/missing"),
    ("report: feature out of range", ["report", "{cc}", "--features", "9999"], "9999"),
    ("report: --n-features 0", ["report", "{cc}", "--n-features", "0"], "--n-features"),
    ("report: --max-contexts -1", ["report", "{cc}", "--max-contexts", "-1"], "--max-contexts"),
    ("report: --device bogus", ["report", "{cc}", "--device", "bogus"], "--device"),
    ("report: malformed config.yaml", ["report", "{bad_yaml}"], "{bad_yaml}/config.yaml"),
    # annotate
    ("annotate: neither --export nor --import", ["annotate", "{cc}"], "exactly one"),
    ("annotate: missing CSV", ["annotate", "{cc}", "--import", "{root}/missing.csv"], "{root}/missing.csv"),
    ("annotate: unclosed quote", ["annotate", "{cc}", "--import", "{csv_unclosed}"], "line 2: malformed CSV"),
    ("annotate: NUL in a description", ["annotate", "{cc}", "--import", "{csv_nul}"], "line 3: column description"),
    ("annotate: non-UTF-8 CSV", ["annotate", "{cc}", "--import", "{csv_latin1}"], "line 2: not UTF-8"),
    ("annotate: missing run", ["annotate", "{root}/missing", "--export", "{root}/x.csv"], "{root}/missing"),
    ("annotate: export to a folder", ["annotate", "{cc}", "--export", "{root}"], "is a folder"),
    ("annotate: --n-features 0", ["annotate", "{cc}", "--export", "{root}/x.csv", "--n-features", "0"],
     "--n-features"),
    # demo
    ("demo: --lr inf", ["demo", "{new}", "--lr", "inf"], "--lr"),
    ("demo: --tokens 0", ["demo", "{new}", "--tokens", "0"], "--tokens"),
    ("demo: --train-steps -1", ["demo", "{new}", "--train-steps", "-1"], "--train-steps"),
    ("demo: unknown option", ["demo", "{new}", "--bogus"], "--bogus"),
    ("demo: --first-revisions not a toy checkpoint", ["demo", "{new}", "--first-revisions", "step3"],
     "--first-revisions"),
    # toy build
    ("toy build: --steps 0", ["toy", "build", "--out", "{new}", "--steps", "0"], "--steps"),
    ("toy build: --threads 0", ["toy", "build", "--out", "{new}", "--threads", "0"], "--threads"),
    ("toy build: --out exists", ["toy", "build", "--out", "{cc}"], "{cc} already exists"),
    ("toy build: missing --out", ["toy", "build"], "--out"),
    ("toy build: --seed abc", ["toy", "build", "--out", "{new}", "--seed", "abc"], "--seed"),
    # the app
    ("unknown command", ["nosuchcommand"], "nosuchcommand"),
    ("unknown global option", ["--bogus", "series", "x"], "--bogus"),
]


@pytest.mark.parametrize("case_id,args,names", CASES, ids=[c.id if hasattr(c, "id") else c[0] for c in CASES])
def test_bad_input_is_one_line(world, monkeypatch, case_id, args, names):
    monkeypatch.chdir(world.cwd)
    monkeypatch.delenv("CROSSTIME_DEBUG", raising=False)
    paths = {k: str(v) for k, v in vars(world).items()}
    before = _tree(world.root)
    result = invoke([a.format(**paths) for a in args])
    line = assert_one_line_error(result, names.format(**paths))
    print(f"{case_id}: {line}")  # shown with -s: every message, for reading
    assert _tree(world.root) == before  # a refused command wrote nothing
    assert not world.new.exists()


def test_the_matrix_spans_every_command():
    commands = {c.values[1][0] if hasattr(c, "values") else c[1][0] for c in CASES}
    assert {"series", "scan", "harvest", "train", "evaluate", "attribute", "report", "annotate", "demo",
            "toy"} <= commands
    assert len(CASES) >= 40


# -- names that try to leave the run ----------------------------------------------------------------

FOLDER_NAME = "cannot be used as a folder name"


@pytest.mark.parametrize("args,names", [
    (["attribute", "{run}", "--task", "../../x"], FOLDER_NAME),
    (["attribute", "{run}", "--task", "...jsonl"], FOLDER_NAME),
    (["attribute", "{run}", "--task", "../../../x"], FOLDER_NAME),
    (["harvest", "{run}", "{series_escape}", "--layer", "1", "--corpus", "{corpus}"], FOLDER_NAME),
    (["harvest", "{run}", "{series}", "--layer", "1", "--corpus", "{corpus}", "--revisions", "step0,../../x"],
     "unknown revision '../../x'"),  # not in the series, whose names are all checked
    (["scan", "{run}", "{series}", "--layer", "1", "--revisions", "../x"], FOLDER_NAME),
], ids=["attribute ../../x", "attribute ...jsonl", "attribute ../../../x", "harvest series.json ../x",
        "harvest --revisions ../../x", "scan --revisions ../x"])
def test_path_traversal_names_write_nothing_anywhere(world, tmp_path, monkeypatch, args, names):
    """A task or revision named to leave the run is refused before anything is written: the run,
    its parent folders and the current folder are as they were."""
    deep = tmp_path / "a" / "b"
    shutil.copytree(world.cc, deep / "run")
    monkeypatch.chdir(deep)
    before = _tree(tmp_path), _tree(world.root)
    paths = {**{k: str(v) for k, v in vars(world).items()}, "run": str(deep / "run")}
    result = invoke([a.format(**paths) for a in args])
    assert_one_line_error(result, names)
    assert (_tree(tmp_path), _tree(world.root)) == before


# -- the Hub and local folders ------------------------------------------------------------------------

def test_a_hub_id_offline_fails_fast_without_network(world, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network call attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    start = time.perf_counter()
    result = invoke(["harvest", world.new, HUB, "--revisions", "step1", "--layer", "1", "--corpus", world.corpus])
    seconds = time.perf_counter() - start
    line = assert_one_line_error(result, f"'{HUB}' at revision 'step1'")
    assert "HF_HUB_OFFLINE is set" in line and "local series folder" in line
    assert "HF_HUB_OFFLINE=0" not in line  # it is set to 1: the fix is a download or a local folder
    assert seconds < 10, seconds  # measured well under a second (no retries)
    assert not world.new.exists()


def test_no_network_fails_at_once_with_one_line(world, monkeypatch):
    """HF_HUB_OFFLINE unset and no network (every connection refused): one quick connection attempt, then
    the cache only (no retries), and one line saying there is no network and what to do."""
    attempts = []

    def unreachable(self, address):
        attempts.append(address)
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    def resolve(host, port, *args, **kwargs):  # a resolver that answers (the connection is what fails)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(socket.socket, "connect", unreachable)
    start = time.perf_counter()
    result = invoke(["harvest", world.new, HUB, "--revisions", "step1", "--layer", "1", "--corpus", world.corpus])
    seconds = time.perf_counter() - start
    line = assert_one_line_error(result, f"'{HUB}' at revision 'step1'")
    assert "no network: cannot reach the Hugging Face Hub (huggingface.co:443: Network is unreachable)" in line
    assert "HF_HUB_OFFLINE=1" in line and "local series folder" in line and "HF_HUB_OFFLINE=0" not in line
    assert len(attempts) == 1, attempts  # asked once, not retried
    assert seconds < 10, seconds
    assert not world.new.exists()


# -- the system: disk full, permissions, interrupts -----------------------------------------------------

def _check_disk_full(line: str, run: Path) -> None:
    assert line.startswith("error: no space left on "), line
    assert f"while writing {run}/" in line, line
    assert "everything written before is kept; free space and re-run the same command: it resumes" in line


def test_disk_full_simulated(world, tmp_path, monkeypatch):
    """ENOSPC from a write (no file name in the error, as the system gives it): one line naming the
    device, the file and what to do; the same command afterwards finishes."""
    run = shutil.copytree(world.cc, tmp_path / "run")
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    line = assert_one_line_error(invoke(["report", run, "--max-contexts", "2", "--logit-lens", "none"]),
                                 "no space left on")
    _check_disk_full(line, run)
    monkeypatch.setattr(os, "fsync", real_fsync)
    result = invoke(["report", run, "--max-contexts", "2", "--logit-lens", "none"])
    assert result.exit_code == 0, result.output
    assert (run / "report" / "index.html").is_file()


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


def test_disk_full_on_a_real_tmpfs(world, tmp_path):
    """A run on a small tmpfs that is full: the one line names the tmpfs; after it is enlarged, the
    same command finishes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (test_disk_full_simulated covers the message)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        run = shutil.copytree(world.cc, disk / "run")
        with open(disk / "filler", "wb", buffering=0) as handle, pytest.raises(OSError) as full:  # fill it
            while True:
                handle.write(b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC
        line = assert_one_line_error(invoke(["report", run, "--max-contexts", "2", "--logit-lens", "none"]),
                                     "no space left on")
        _check_disk_full(line, run)
        assert f"tmpfs (mounted at {disk})" in line
        assert _mount("-o", "remount,size=8m", str(disk)).returncode == 0
        result = invoke(["report", run, "--max-contexts", "2", "--logit-lens", "none"])
        assert result.exit_code == 0, result.output
    finally:
        unmounted = subprocess.run(["umount", str(disk)], capture_output=True, text=True, check=False)
        assert unmounted.returncode == 0, unmounted.stderr


@pytest.fixture(scope="module")
def reported(world, tmp_path_factory) -> Path:
    """``cc`` with a report (features to annotate)."""
    run = shutil.copytree(world.cc, tmp_path_factory.mktemp("reported") / "run")
    result = invoke(["report", run, "--max-contexts", "2", "--logit-lens", "none"])
    assert result.exit_code == 0, result.output
    return run


def test_disk_full_in_annotate_export(reported, tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "features.csv"
    line = assert_one_line_error(invoke(["annotate", reported, "--export", out]), f"while writing {out}")
    assert line.startswith("error: no space left on ") and "free space and re-run the same command" in line
    assert not out.exists()


@pytest.mark.parametrize("code,expected", [(errno.EACCES, "permission denied on {file}"),
                                           (errno.EROFS, "{file} is on a read-only file system")])
def test_permission_and_read_only_errors(reported, tmp_path, monkeypatch, code, expected):
    """Root ignores file modes, so the system's answer is simulated: the rename of the written file fails."""
    real_replace = os.replace

    def refuse(src, dst, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    out = tmp_path / "features.csv"
    assert_one_line_error(invoke(["annotate", reported, "--export", out]), expected.format(file=out))
    monkeypatch.setattr(os, "replace", real_replace)


def test_an_interrupt_is_one_line_and_exit_130(world, tmp_path, monkeypatch):
    from crosstime import stage

    run = shutil.copytree(world.cc, tmp_path / "run")

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "begin", interrupted)
    result = invoke(["report", run, "--max-contexts", "2", "--logit-lens", "none"])
    assert_one_line_error(result, "interrupted; a re-run resumes", code=130)
    assert not (run / ".crosstime.lock.json").exists()  # the lock was let go


# -- a bug keeps its traceback; --debug shows one for an expected failure ---------------------------------

def test_a_bug_keeps_its_traceback(world, monkeypatch):
    from crosstime import stage

    def bug(config):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(stage, "begin", bug)
    result = invoke(["report", world.cc, "--max-contexts", "2", "--logit-lens", "none"])
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)
    assert "error: " not in result.output


def test_an_unexpected_os_error_keeps_its_traceback(reported, tmp_path, monkeypatch):
    """ENOENT of a file the user did not name is a bug of ours, not an input to fix."""
    def missing(fd):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere/internal.bin")

    monkeypatch.setattr(os, "fsync", missing)
    result = invoke(["annotate", reported, "--export", tmp_path / "x.csv"])
    assert result.exit_code == 1 and isinstance(result.exception, FileNotFoundError)


def test_a_named_input_that_is_missing_is_one_line(reported, tmp_path, monkeypatch):
    """ENOENT of a path the user gave (or one inside it) is an input to fix: one line naming it."""
    out = tmp_path / "x.csv"

    def missing(fd):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(out))

    monkeypatch.setattr(os, "fsync", missing)
    assert_one_line_error(invoke(["annotate", reported, "--export", out]), f"{out} does not exist; check the path")


def test_debug_shows_the_traceback(world, monkeypatch):
    monkeypatch.delenv("CROSSTIME_DEBUG", raising=False)
    from pydantic import ValidationError

    result = invoke(["--debug", "train", world.store, "--lr", "inf"])
    assert result.exit_code == 1 and isinstance(result.exception, ValidationError)
    monkeypatch.setenv("CROSSTIME_DEBUG", "1")
    result = invoke(["train", world.store, "--lr", "inf"])
    assert isinstance(result.exception, ValidationError)
    monkeypatch.setenv("CROSSTIME_DEBUG", "0")
    assert_one_line_error(invoke(["train", world.store, "--lr", "inf"]), "--lr")
    monkeypatch.delenv("CROSSTIME_DEBUG")
    assert_one_line_error(invoke(["train", world.store, "--lr", "inf"]), "--lr")  # --debug is per invocation


def _crosstime(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from crosstime.cli import app; sys.argv[0] = 'crosstime'; app()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, check=False)


def test_a_real_process_prints_one_line_on_stderr(world):
    """As a user sees it: stderr holds the one line, stdout nothing; CROSSTIME_DEBUG=1 gives the traceback."""
    done = _crosstime("attribute", world.cc, "--task", "../../x", env={"CROSSTIME_DEBUG": ""})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: --task: ")
    done = _crosstime("attribute", world.cc, "--task", "../../x", env={"CROSSTIME_DEBUG": "1"})
    assert done.returncode == 1 and "Traceback" in done.stderr and "../../x" in done.stderr
    done = _crosstime("train", world.store, "--bogus", env={"CROSSTIME_DEBUG": ""})
    # one line; click may add its own "(Possible options: …)" guess between the two
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and line.startswith("error: No such option: --bogus")
    assert line.endswith("(see `crosstime train --help`)")
