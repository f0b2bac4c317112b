"""Training metrics: ``metrics.jsonl`` (one line per step; validation lines carry
``"split": "heldout"``), and optionally the same rows in Weights & Biases and TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosstime.files import write_text

if TYPE_CHECKING:
    from crosstime.crosscoder.settings import TrainSettings

METRICS_FILE = "metrics.jsonl"
WANDB_ID_FILE = "wandb-run-id"  # in out/state/: a resumed training continues its W&B run


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut short by a kill
        return None


class MetricsLog:
    """Writes rows to ``out/metrics.jsonl`` (lines past ``start_step`` from a killed run are
    dropped: they will be recomputed) and to the optional loggers, imported only when asked for."""

    def __init__(self, settings: TrainSettings, out: Path | None, start_step: int, enabled: bool):
        self.file = self.wandb = self.tb = None
        self.enabled = enabled
        if not enabled:
            return
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / METRICS_FILE
            if path.exists():
                kept = [ln for ln in path.read_text().splitlines() if (s := _step_of(ln)) is not None and s <= start_step]
                write_text(path, "".join(ln + "\n" for ln in kept))
            self.file = open(path, "a", buffering=1)
        if settings.wandb_project:
            self.wandb = _wandb_run(settings, out)
        if settings.tensorboard:
            self.tb = _tensorboard(out, start_step)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
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
        import wandb
    except ImportError as err:  # a third-party, optional package
        raise ImportError("wandb_project is set but wandb is not installed (pip install wandb)") from err
    id_file = out / "state" / WANDB_ID_FILE if out is not None else None
    run_id = id_file.read_text().strip() if id_file is not None and id_file.exists() else None
    run = wandb.init(project=settings.wandb_project, config=settings.model_dump(mode="json"), id=run_id,
                     resume="allow" if run_id else None, dir=str(out) if out is not None else None)
    if id_file is not None and run_id is None:
        write_text(id_file, run.id)
    return run


def _tensorboard(out: Path | None, start_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # a third-party, optional package
        raise ImportError("tensorboard logging asked for but tensorboard is not installed "
                          "(pip install tensorboard)") from err
    # purge_step: on resume, TensorBoard hides the events logged past the resumed state
    return SummaryWriter(str((out or Path(".")) / "tensorboard"), purge_step=start_step + 1 if start_step else None)
