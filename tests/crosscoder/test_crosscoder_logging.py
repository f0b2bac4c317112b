"""Optional experiment logging: what reaches W&B and TensorBoard is what metrics.jsonl holds.

The W&B contract (init, one log call per row, the run id kept for resume, finish) is checked
against a recording stand-in module, so it runs without wandb; real offline W&B and real
TensorBoard runs are read back from their files when those packages are installed.
"""

from __future__ import annotations

import json
import struct
import sys
import types
from pathlib import Path

import pytest
import torch

from crosstime.crosscoder import TrainSettings, fit

torch.set_num_threads(1)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2048, 2, 16, generator=g), torch.randn(512, 2, 16, generator=g)


def _cfg(**kw) -> TrainSettings:
    return TrainSettings(n_features=32, steps=12, batch_size=256, lr=1e-3, val_every=6, val_batches=2,
                         progress=False, **kw)


def _expected(out: Path) -> dict[tuple[int, str], float]:
    """metrics.jsonl flattened the way the loggers name things: (step, "train/loss"), (step, "val/ev_0"), …"""
    want = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        prefix = "val/" if row.get("split") == "heldout" else "train/"
        for k, v in row.items():
            if isinstance(v, list):
                want.update({(row["step"], f"{prefix}{k}_{i}"): x for i, x in enumerate(v)})
            elif isinstance(v, (int, float)) and k != "step":
                want[(row["step"], prefix + k)] = v
    return want


class _FakeRun:
    def __init__(self, **kw):
        self.kw, self.logged, self.finished = kw, [], False
        self.id = kw.get("id") or "run-1"

    def log(self, data, step):
        self.logged.append((step, dict(data)))

    def finish(self):
        self.finished = True


def test_wandb_receives_every_metrics_row_and_a_resume_continues_the_run(tmp_path, monkeypatch):
    runs = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: runs.append(_FakeRun(**kw)) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    x, held = _data()
    out = tmp_path / "cc"
    fit(x, _cfg(wandb_project="crosstime-test"), out=out, heldout=held)

    run = runs[0]
    assert run.kw["project"] == "crosstime-test" and run.kw["id"] is None and run.kw["dir"] == str(out)
    assert run.kw["config"]["n_features"] == 32 and run.finished
    got = {(step, k): v for step, data in run.logged for k, v in data.items()}
    assert got == pytest.approx(_expected(out))
    assert {k for _, k in got} >= {"train/loss", "train/l0", "train/ev_0", "train/ev_1", "val/recon"}

    # the same command again resumes from the saved state and continues the same W&B run
    fit(x, _cfg(wandb_project="crosstime-test"), out=out, heldout=held)
    assert runs[1].kw["id"] == "run-1" and runs[1].kw["resume"] == "allow"


def test_missing_logger_package_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ImportError, match="pip install wandb"):
        fit(_data()[0], _cfg(wandb_project="p"), out=tmp_path / "cc")


def test_tensorboard_scalars_equal_metrics_jsonl_after_a_crash_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import crosstime.crosscoder.training as T

    x, held = _data()
    out = tmp_path / "cc"
    clip, calls = T.clip_gradients, []

    def crash_at_step_9(*a, **kw):
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        return clip(*a, **kw)

    monkeypatch.setattr(T, "clip_gradients", crash_at_step_9)
    with pytest.raises(KeyboardInterrupt):  # state saved at step 6, steps 1-8 already logged
        fit(x, _cfg(tensorboard=True, save_every=6), out=out, heldout=held)
    monkeypatch.setattr(T, "clip_gradients", clip)
    fit(x, _cfg(tensorboard=True, save_every=6), out=out, heldout=held)  # resumes at 6, logs 7-12 again
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    events = [(e.step, tag, e.value) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
    got = {(step, tag): value for step, tag, value in events}
    assert len(events) == len(got)  # steps 7-8 appear once: the resume purged the first attempt's
    want = _expected(out)
    assert set(got) == set(want)
    assert got == pytest.approx(want, rel=1e-6)  # TensorBoard stores float32


def _wandb_records(path: Path):
    """The protobuf records of a W&B ``.wandb`` file: a 7-byte header (":W&B", magic, version),
    then LevelDB-log framing in 32 KiB blocks (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # block trailer padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += room
            continue
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield parts
            parts = b""


def test_offline_wandb_run_holds_the_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from wandb.proto import wandb_internal_pb2 as pb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    x, held = _data()
    out = tmp_path / "cc"
    fit(x, _cfg(wandb_project="crosstime-test"), out=out, heldout=held)
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    got = {}
    for raw in _wandb_records(run_file):
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            got.update({(items["_step"], k): v for k, v in items.items() if not k.startswith("_")})
    assert got == pytest.approx(_expected(out))
    assert (out / "state" / "wandb-run-id").read_text() in run_file.name
