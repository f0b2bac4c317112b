"""The run directory: one folder per run that every stage reads and writes.

    runs/NAME/
      config.yaml        the resolved configuration of every stage
      scan/              accuracy.csv, similarity.npz, *.png, suggestion.json
      activations/       manifest.json, tokens.npy, <checkpoint>.bin
      crosscoder/        config.json, model.safetensors, state/, metrics.jsonl
      evaluation.json    (+ evaluation/ for tables and plots)
      attribution/TASK/  effects.safetensors, features.csv, ablation.csv
      report/index.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from crosstime.files import write_text


class RunDir:
    """Paths of one run directory, and its ``config.yaml`` (one section per stage)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def scan(self) -> Path:
        return self.root / "scan"

    @property
    def activations(self) -> Path:
        return self.root / "activations"

    @property
    def crosscoder(self) -> Path:
        return self.root / "crosscoder"

    @property
    def evaluation_file(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    def attribution(self, task: str) -> Path:
        return self.root / "attribution" / task

    @property
    def report(self) -> Path:
        return self.root / "report"

    def read_config(self) -> dict[str, Any]:
        if not self.config_file.exists():
            return {}
        return yaml.safe_load(self.config_file.read_text()) or {}

    def save_stage_config(self, stage: str, config: BaseModel | dict[str, Any]) -> None:
        """Record one stage's resolved settings in ``config.yaml`` (other stages kept)."""
        data = self.read_config()
        data[stage] = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
        self.root.mkdir(parents=True, exist_ok=True)
        write_text(self.config_file, yaml.safe_dump(data, sort_keys=False))
