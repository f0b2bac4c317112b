"""A run directory from Python: ``crosstime.open_run(RUN)``, each stage's output as objects.

>>> import crosstime
>>> run = crosstime.open_run("runs/demo")
>>> run.store                                   # ActivationStore of RUN/activations
>>> run.crosscoder                              # the trained crosscoder, checked against the store
>>> run.evaluation.summary.l0                   # evaluation.json (an Evaluation)
>>> run.evaluation.features[0]["trajectory"]    # rows of evaluation/features.csv
>>> run.attributions["simple_agreement"].summary.top_features
>>> run.attributions["simple_agreement"].features[0]["relie"]

Nothing is read when the run is opened; each stage's output is read (once) when first asked
for. A stage's output is read only if the stage finished — its record is in ``RUN/config.yaml``
— and its recorded files are as it wrote them (their checksums); otherwise the read is a
:class:`StageNotRun` (or an :class:`~crosstime.artifacts.ArtifactError` for a changed file)
naming the command that makes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from crosstime import stage
from crosstime.artifacts import (
    ATTRIBUTION_FEATURES,
    ATTRIBUTION_SUMMARY,
    EVALUATION_FEATURES,
    AttributionSummary,
    CheckpointEvaluation,
    Evaluation,
    EvaluationSummary,
    RunDir,
    read_model,
)
from crosstime.crosscoder import Crosscoder, load_for_store
from crosstime.errors import CrosstimeError
from crosstime.store import ActivationStore

ATTRIBUTE_PREFIX = "attribute/"  # the record key of task T's attribution is "attribute/T"


class StageNotRun(CrosstimeError):
    """A run's stage output was asked for, but that stage has not finished in the run."""


@dataclass(frozen=True)
class EvaluationOutputs:
    """What ``crosstime evaluate`` wrote: ``evaluation.json`` and ``evaluation/features.csv``."""

    evaluation: Evaluation  # every number of evaluation.json
    features: list[dict[str, Any]]  # one row per feature, EVALUATION_FEATURES' columns (lists over checkpoints)

    @property
    def summary(self) -> EvaluationSummary:
        return self.evaluation.summary

    @property
    def checkpoints(self) -> list[CheckpointEvaluation]:
        return self.evaluation.checkpoints


@dataclass(frozen=True)
class TaskAttribution:
    """What ``crosstime attribute --task TASK`` wrote: ``summary.json`` and ``features.csv``."""

    task: str
    summary: AttributionSummary
    features: list[dict[str, Any]]  # one row per reported feature, ATTRIBUTION_FEATURES' columns


class Run:
    """The outputs of one run directory, each read on first use (see the module docstring)."""

    def __init__(self, root: str | Path, device: str | torch.device = "cpu"):
        self.dir = RunDir(root)
        self.device = device
        if not self.dir.root.is_dir():
            raise StageNotRun(f"no run directory {self.dir.root}; pass the folder a stage wrote "
                              f"(e.g. `crosstime demo {root}` makes one)")

    @property
    def root(self) -> Path:
        return self.dir.root

    def finished(self) -> list[str]:
        """The stages recorded as finished in RUN/config.yaml (``attribute/TASK`` per task)."""
        return list(stage.read_records(self.dir))

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r}, finished: {', '.join(self.finished()) or 'nothing yet'})"

    def _require(self, key: str, command: str) -> None:
        """Stop unless stage ``key`` finished here and its recorded files are unchanged."""
        if not stage.verify_outputs(self.dir, key):
            raise StageNotRun(f"{self.root}: `crosstime {key.split('/')[0]}` has not finished in this run (no "
                              f"record in {self.dir.config_file}); run `{command}` first")

    @cached_property
    def store(self) -> ActivationStore:
        """RUN/activations (every read of it is verified against the harvest's checksums)."""
        self._require("harvest", f"crosstime harvest {self.root} SERIES --layer L")
        return ActivationStore(self.dir.activations)

    @cached_property
    def crosscoder(self) -> Crosscoder:
        """The trained crosscoder on ``device``, in normalised space, checked against the store."""
        self._require("train", f"crosstime train {self.root}")
        return load_for_store(self.dir.crosscoder, self.store, device=self.device)

    @cached_property
    def evaluation(self) -> EvaluationOutputs:
        self._require("evaluate", f"crosstime evaluate {self.root}")
        numbers = read_model(Evaluation, self.dir.evaluation_file)
        revisions = [c.revision for c in numbers.checkpoints]
        return EvaluationOutputs(numbers, EVALUATION_FEATURES.read(self.dir.evaluation, revisions))

    @property
    def tasks(self) -> list[str]:
        """The tasks whose attribution finished in this run, sorted."""
        return sorted(k[len(ATTRIBUTE_PREFIX):] for k in self.finished() if k.startswith(ATTRIBUTE_PREFIX))

    @cached_property
    def attributions(self) -> Attributions:
        """The finished tasks' attributions, by task name; each task is read when first looked up."""
        return Attributions(self)

    def read_attribution(self, task: str) -> TaskAttribution:
        """Task ``task``'s attribution, read now (:attr:`attributions` keeps what it read)."""
        if task not in self.tasks:
            done = f"attributed here: {', '.join(self.tasks)}" if self.tasks else "no task is attributed here yet"
            raise StageNotRun(f"{self.root}: task {task!r} has no finished attribution ({done}); run "
                              f"`crosstime attribute {self.root} --task {task}` first")
        self._require(ATTRIBUTE_PREFIX + task, f"crosstime attribute {self.root} --task {task}")
        folder = self.dir.attribution(task)
        summary = read_model(AttributionSummary, folder / ATTRIBUTION_SUMMARY)
        return TaskAttribution(task, summary, ATTRIBUTION_FEATURES.read(folder, summary.revisions))


class Attributions(Mapping[str, TaskAttribution]):
    """``{task: TaskAttribution}`` over a run's finished tasks; a task is read on first lookup."""

    def __init__(self, run: Run):
        self._run = run
        self._read: dict[str, TaskAttribution] = {}

    def __getitem__(self, task: str) -> TaskAttribution:
        if task not in self._read:
            self._read[task] = self._run.read_attribution(task)
        return self._read[task]

    def __contains__(self, task: object) -> bool:
        return task in self._run.tasks  # (a lookup of a task not attributed raises StageNotRun, not KeyError)

    def __iter__(self) -> Iterator[str]:
        return iter(self._run.tasks)

    def __len__(self) -> int:
        return len(self._run.tasks)

    def __repr__(self) -> str:
        return f"Attributions({self._run.tasks})"


def open_run(root: str | Path, device: str | torch.device = "cpu") -> Run:
    """The run directory ``root``; its store, crosscoder (on ``device``), evaluation and
    attributions are read when first used (:class:`Run`)."""
    return Run(root, device=device)
