"""Training metrics: ``metrics.jsonl`` (one line per step; validation lines carry
``"split": "heldout"``; a training stopped for divergence ends with a line carrying
``"event": "diverged"``), and optionally the same rows in Weights & Biases and TensorBoard.

On resume the file is repaired to what the resume state had logged: lines past the state's
step (a killed run's, recomputed now) and unreadable lines are dropped. The state records how
many rows it had logged; when fewer (or more) readable rows remain, the file was damaged or
edited, and a warning says so (those rows cannot be recomputed short of training again).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosstime.files import write_text

if TYPE_CHECKING:
    from crosstime.crosscoder.settings import TrainSettings

METRICS_FILE = "metrics.jsonl"
WANDB_ID_FILE = "wandb-run-id"  # in out/state/: a resumed training continues its W&B run


def _step_of(line: bytes) -> int | None:
    """The step of one line, or None for a line that is not a metrics row (cut short by a kill, damaged)."""
    try:
        row = json.loads(line.decode("utf-8"))
        return int(row["step"]) if isinstance(row, dict) and not isinstance(row["step"], bool) else None
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, OverflowError):
        return None


def _repair(path: Path, start_step: int, logged: int | None) -> int:
    """Keep the readable rows of ``path`` up to ``start_step`` (rewritten atomically); warn when they
    are not the ``logged`` rows the resume state counted. Returns the rows kept."""
    lines = path.read_bytes().splitlines() if path.exists() else []
    kept = [ln for ln in lines if (s := _step_of(ln)) is not None and s <= start_step]
    if path.exists():
        write_text(path, "".join(ln.decode("utf-8") + "\n" for ln in kept))
    damaged = logged is not None and len(kept) != logged
    unreadable = sum(_step_of(ln) is None for ln in lines[:-1])  # the last line may be cut short by a kill
    if start_step > 0 and (damaged or (logged is None and unreadable)):
        found = f"{len(kept)} readable rows up to step {start_step}" + (f" where {logged} were logged" if damaged else
                                                                          f" and {unreadable} unreadable lines")
        warnings.warn(f"{path}: {found}; it was deleted, damaged or edited. Training resumes and the log continues "
                      "from the readable rows; the lost rows cannot be recomputed short of training again "
                      f"(delete {path.parent / 'state'} to start over)", stacklevel=3)
    return len(kept)


def heldout_summary(out: str | Path, revisions: list[str]) -> str | None:
    """The last held-out line of ``out/metrics.jsonl`` in words (None without one): step, EV per
    checkpoint (``revisions``, in the crosscoder's order) and L0."""
    path = Path(out) / METRICS_FILE
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.is_file() else []
    held = [r for r in rows if r.get("split") == "heldout"]
    if not held:
        return None
    last = held[-1]
    ev = ", ".join(f"{rev} {v:.3f}" for rev, v in zip(revisions, last["ev"]))
    return (f"held-out at step {last['step']:,} ({last['rows']:,} rows): EV {ev} (mean {last['ev_mean']:.3f}), "
            f"L0 {last['l0']:.1f}")


class MetricsLog:
    """Writes rows to ``out/metrics.jsonl`` (repaired on resume, see the module docstring) and to
    the optional loggers, imported only when asked for. ``rows``: lines the file holds.

    ``logged``: the rows the resume state counted (None for a fresh start or an older state)."""

    def __init__(self, settings: TrainSettings, out: Path | None, start_step: int, enabled: bool,
                 logged: int | None = None):
        self.file = self.wandb = self.tb = None
        self.enabled, self.rows = enabled, 0
        self.path = out / METRICS_FILE if out is not None else None
        if not enabled:
            return
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.rows = _repair(self.path, start_step, logged)
            self.file = open(self.path, "a", buffering=1, encoding="utf-8")
        if settings.wandb_project:
            self.wandb = _wandb_run(settings, out)
        if settings.tensorboard:
            self.tb = _tensorboard(out, start_step)

    def note(self, row: dict[str, Any]) -> None:
        """A line for metrics.jsonl only (an event, not metrics for the loggers)."""
        if self.enabled and self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.rows += 1

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.rows += 1
        prefix = "val/" if row.get("split") == "heldout" else "train/"
        flat = {}
        for k, v in row.items():
            if isinstance(v, list):  # ev per checkpoint; None (not finite) is left out
                flat.update({f"{prefix}{k}_{i}": x for i, x in enumerate(v) if x is not None})
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                flat[prefix + k] = v
        if self.wandb is not None:
            self.wandb.log(flat, step=row["step"])
        if self.tb is not None:
            for k, v in flat.items():
                self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.tb is not None:
            self.tb.close()


def _wandb_run(settings: TrainSettings, out: Path | None):
    try:
        import wandb  # lazy: optional extra (wandb)
    except ImportError as err:  # a third-party, optional package
        raise ImportError("wandb_project is set but wandb is not installed (pip install wandb)") from err
    id_file = out / "state" / WANDB_ID_FILE if out is not None else None
    run_id = id_file.read_bytes().decode("ascii", "replace").strip() if id_file is not None and id_file.exists() else None
    if run_id is not None and not run_id.replace("-", "").replace("_", "").isalnum():  # W&B ids: letters, digits
        warnings.warn(f"{id_file} holds no W&B run id ({run_id[:40]!r}): the metrics go to a new W&B run, whose id "
                      "replaces it", stacklevel=3)
        run_id = None
    run = wandb.init(project=settings.wandb_project, config=settings.model_dump(mode="json"), id=run_id,
                     resume="allow" if run_id else None, dir=str(out) if out is not None else None)
    if id_file is not None and run_id is None:
        write_text(id_file, run.id)
    return run


def _tensorboard(out: Path | None, start_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: optional extra (tensorboard)
    except ImportError as err:  # a third-party, optional package
        raise ImportError("tensorboard logging asked for but tensorboard is not installed "
                          "(pip install tensorboard)") from err
    # purge_step: on resume, TensorBoard hides the events logged past the resumed state
    return SummaryWriter(str((out or Path(".")) / "tensorboard"), purge_step=start_step + 1 if start_step else None)
