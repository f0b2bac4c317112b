"""The one run reader: ``crosstime.open_run(RUN)``, each stage's output as typed objects.

>>> import crosstime
>>> run = crosstime.open_run("runs/demo")
>>> run.store                                   # ActivationStore of RUN/activations (or an imported run's --store)
>>> run.crosscoder                              # the trained crosscoder, checked against the store
>>> run.evaluation.summary.l0                   # evaluation.json (an Evaluation)
>>> run.evaluation.features[0]["trajectory"]    # rows of evaluation/features.csv
>>> run.attributions["simple_agreement"].summary.top_features
>>> run.read(EVALUATION)                        # any artifact, declared here or by a stage of your own

The artifacts every built-in stage reads or writes are declared here (:class:`~crosstime.stage.Artifact`:
place, marker, checksummed files, reader); a stage's declaration (:mod:`crosstime.stages`) names
them in its ``reads`` and ``writes``. Nothing is read when the run is opened; an artifact is read
(once) when first asked for, and only if a finished stage vouches for it — a record in
``RUN/config.yaml`` whose ``writes`` name it — with its recorded files as that stage wrote them
(their checksums). Otherwise the read is a :class:`StageNotRun` (or an
:class:`~crosstime.artifacts.ArtifactError` for a changed file) naming the command that makes it,
derived from the writer stage's declaration. Every stage, the report, import and export open a
run's outputs here.

The store is RUN/activations, or, for a run without one whose crosscoder was imported with
``--store``, the store the import recorded (:func:`external_store_record`): its absolute path and
the sha256 of its manifest, checked whenever the run is opened for it (:meth:`Run.store_root`,
the one place that decides where a run's store is).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from crosstime import stage
from crosstime.artifacts import (
    ATTRIBUTION_ABLATION,
    ATTRIBUTION_FEATURES,
    ATTRIBUTION_JOINT,
    ATTRIBUTION_SUMMARY,
    EVALUATION_FEATURES,
    INTERPRET_ANALYSIS,
    INTERPRET_EXPLANATIONS,
    REPORT_DATA,
    REPORT_HTML,
    SCAN_ACCURACY,
    SCAN_DYNAMICS,
    SCAN_PHASES,
    SCAN_SIMILARITY,
    SCAN_SUGGESTION,
    ArtifactError,
    AttributionSummary,
    CheckpointEvaluation,
    Evaluation,
    EvaluationSummary,
    InterpretAnalysis,
    Phases,
    ReportData,
    RunDir,
    Suggestion,
    read_model,
    read_report_data,
    read_similarity,
)
from crosstime.crosscoder import Crosscoder, check_against_store, load
from crosstime.crosscoder.model import WEIGHTS_FILE
from crosstime.errors import CrosstimeError
from crosstime.files import sha256_file
from crosstime.stage import Artifact
from crosstime.store import ActivationStore
from crosstime.store.layout import MANIFEST

T = TypeVar("T")


class StageNotRun(CrosstimeError):
    """A run's stage output was asked for, but no stage that writes it has finished in the run."""


# -- what the built-in artifacts read as -------------------------------------------------------

def _revisions(revisions: list[str]) -> str:
    """``7 checkpoints: step0 … step1000`` (a repr names the span, not every revision)."""
    span = ", ".join(revisions) if len(revisions) <= 3 else f"{revisions[0]} … {revisions[-1]}"
    return f"{len(revisions)} checkpoint{'s' * (len(revisions) != 1)}: {span}"


def _rows(rows: list | None) -> str:
    return "not written" if rows is None else f"{len(rows)} rows"


@dataclass(frozen=True, repr=False)  # the generated repr prints every number: megabytes for a real run
class EvaluationOutputs:
    """What ``crosstime evaluate`` wrote: ``evaluation.json`` and ``evaluation/features.csv``."""

    evaluation: Evaluation  # every number of evaluation.json
    features: list[dict[str, Any]] | None  # one row per feature, EVALUATION_FEATURES' columns (None: not written)

    @property
    def summary(self) -> EvaluationSummary:
        return self.evaluation.summary

    @property
    def checkpoints(self) -> list[CheckpointEvaluation]:
        return self.evaluation.checkpoints

    def __repr__(self) -> str:
        s = self.summary
        return (f"EvaluationOutputs({_revisions([c.revision for c in self.checkpoints])}; L0 {s.l0:.2f}, dead "
                f"{s.dead} ({s.dead_fraction:.1%}), explained variance {s.explained_variance_overall:.3f}; "
                f"features.csv {_rows(self.features)})\n  .summary .checkpoints .evaluation .features")


@dataclass(frozen=True, repr=False)  # the generated repr prints every row
class TaskAttribution:
    """What ``crosstime attribute --task TASK`` wrote: ``summary.json``, ``features.csv`` and, when
    computed, ``joint.csv`` and ``ablation.csv`` (None when not)."""

    task: str
    folder: Path
    summary: AttributionSummary
    features: list[dict[str, Any]]  # one row per reported feature, ATTRIBUTION_FEATURES' columns
    joint: list[dict[str, Any]] | None  # ATTRIBUTION_JOINT's rows (attribute --joint)
    ablation: list[dict[str, Any]] | None  # ATTRIBUTION_ABLATION's rows (attribute --ablate)

    def __repr__(self) -> str:
        s = self.summary
        return (f"TaskAttribution({self.task!r}, {_revisions(s.revisions)}; {s.n_pairs} pairs ({s.pairs_kept} "
                f"kept); features {_rows(self.features)}, joint {_rows(self.joint)}, ablation {_rows(self.ablation)})"
                f"\n  .summary .features .joint .ablation .folder")


def _read_store(run: Run, key: str | None) -> ActivationStore:
    return ActivationStore(run.store_root())


def _read_crosscoder(run: Run, key: str | None) -> Crosscoder:
    """The crosscoder on the run's device, in normalised space, eval mode; checked against the run's
    store when the run has one (an imported crosscoder may come without: then it is read unchecked)."""
    model = load(run.dir.crosscoder, device=run.device).unfold_scales()
    if run.has(ACTIVATIONS):
        check_against_store(model, run.store, where=f"the crosscoder at {run.dir.crosscoder}")
    return model.eval()


def _read_evaluation(run: Run, key: str | None) -> EvaluationOutputs:
    numbers = read_model(Evaluation, run.dir.evaluation_file)
    revisions = [c.revision for c in numbers.checkpoints]
    there = (run.dir.evaluation / EVALUATION_FEATURES.file).is_file()  # an evaluation that stopped before it: None
    return EvaluationOutputs(numbers, EVALUATION_FEATURES.read(run.dir.evaluation, revisions) if there else None)


def _read_attribution(run: Run, task: str | None) -> TaskAttribution:
    assert task is not None  # a keyed artifact is always read with its key (Artifact.ident checks it)
    folder = run.dir.attribution(task)
    summary = read_model(AttributionSummary, folder / ATTRIBUTION_SUMMARY)
    optional = {t: t.read(folder, summary.revisions) if (folder / t.file).is_file() else None
                for t in (ATTRIBUTION_JOINT, ATTRIBUTION_ABLATION)}
    return TaskAttribution(task, folder, summary, ATTRIBUTION_FEATURES.read(folder, summary.revisions),
                           optional[ATTRIBUTION_JOINT], optional[ATTRIBUTION_ABLATION])


@dataclass(frozen=True, repr=False)  # the generated repr prints every row and matrix
class ScanOutputs:
    """What ``crosstime scan`` wrote in ``folder``, each file read by its schema (:mod:`crosstime.artifacts`,
    ``SCAN_*``); None where the scan did not write it (dynamics without corpora, similarity without tokens,
    phases before the scan wrote them). The figures stay in ``folder``."""

    folder: Path
    suggestion: Suggestion | None
    phases: Phases | None
    accuracy: list[dict[str, Any]] | None  # SCAN_ACCURACY's rows
    dynamics: list[dict[str, Any]] | None  # SCAN_DYNAMICS' rows
    similarity: dict[str, np.ndarray] | None  # similarity.npz: labels [M] and SIMILARITY_MATRICES [M, M]

    def __repr__(self) -> str:
        picked = ", ".join(self.suggestion.revisions) if self.suggestion is not None else "not written"
        matrices = ("not written" if self.similarity is None
                    else ", ".join(k for k, v in sorted(self.similarity.items()) if np.ndim(v) == 2))
        return (f"ScanOutputs({str(self.folder)!r}; suggestion {picked}; phases "
                f"{'not written' if self.phases is None else ', '.join(self.phases.order) or 'none learned'}; "
                f"accuracy {_rows(self.accuracy)}, dynamics {_rows(self.dynamics)}, similarity {matrices})"
                f"\n  .suggestion .phases .accuracy .dynamics .similarity .folder")


def read_scan_folder(folder: Path) -> ScanOutputs:
    """Every file of a scan folder that is there, read and checked by its schema."""
    def there(name: str) -> bool:
        return (folder / name).is_file()

    return ScanOutputs(
        folder,
        read_model(Suggestion, folder / SCAN_SUGGESTION) if there(SCAN_SUGGESTION) else None,
        read_model(Phases, folder / SCAN_PHASES) if there(SCAN_PHASES) else None,
        SCAN_ACCURACY.read(folder, []) if there(SCAN_ACCURACY.file) else None,
        SCAN_DYNAMICS.read(folder, []) if there(SCAN_DYNAMICS.file) else None,
        read_similarity(folder / SCAN_SIMILARITY) if there(SCAN_SIMILARITY) else None,
    )


def _read_scan(run: Run, key: str | None) -> ScanOutputs:
    return read_scan_folder(run.dir.scan)


def _read_report(run: Run, key: str | None) -> ReportData:
    return read_report_data(run.dir.report)


@dataclass(frozen=True, repr=False)
class Interpretation:
    """What ``crosstime interpret`` wrote: ``analysis`` (interpret/analysis.json) and ``explanations``
    (INTERPRET_EXPLANATIONS' rows: one per feature and view, ``view`` 'all' = the joint one)."""

    analysis: InterpretAnalysis
    explanations: list[dict[str, Any]]

    def of(self, feature: int, view: str = "all") -> dict[str, Any] | None:
        """The row of ``feature`` in ``view`` (explanation, complexity, scores), None when not interpreted."""
        return next((r for r in self.explanations if r["feature"] == feature and r["view"] == view), None)

    def __repr__(self) -> str:
        return (f"Interpretation({self.analysis.explainer}; {self.analysis.n_explained} of {self.analysis.n_features} "
                f"features explained; {len(self.explanations)} rows)\n  {self.analysis.reading}\n  .analysis "
                ".explanations .of(feature, view)")


def _read_interpretation(run: Run, key: str | None) -> Interpretation:
    folder = run.dir.interpret
    return Interpretation(read_model(InterpretAnalysis, folder / INTERPRET_ANALYSIS),
                          INTERPRET_EXPLANATIONS.read(folder, []))


SCAN = Artifact("scan", "scan", f"scan/{SCAN_SUGGESTION}", _read_scan, "scan",
                "the scan: accuracy curves, similarity, dynamics, phases, suggested checkpoints",
                checksummed=("scan/*",))
ACTIVATIONS = Artifact("activations", "activations", f"activations/{MANIFEST}", _read_store, "harvest",
                       "the activation store", self_verifying=True)
CROSSCODER = Artifact("crosscoder", "crosscoder", f"crosscoder/{WEIGHTS_FILE}", _read_crosscoder, "train",
                      "the crosscoder", self_verifying=True)
EVALUATION = Artifact("evaluation", "evaluation.json", "evaluation.json", _read_evaluation, "evaluate",
                      "the evaluation",
                      checksummed=("evaluation.json", "evaluation/*"))
ATTRIBUTION = Artifact("attribution", "attribution/{key}", f"attribution/{{key}}/{ATTRIBUTION_FEATURES.file}",
                       _read_attribution, "attribute", "the task's attribution",
                       checksummed=("attribution/{key}/*",))
REPORT = Artifact("report", "report", f"report/{REPORT_HTML}", _read_report, "report",
                  "the report", checksummed=(f"report/{REPORT_DATA}",))
INTERPRETATION = Artifact("interpretation", "interpret", f"interpret/{INTERPRET_ANALYSIS}", _read_interpretation,
                          "interpret", "the features' explanations, scores and complexity analysis",
                          checksummed=("interpret/*",))


# -- where the store is -------------------------------------------------------------------------

EXTERNAL_STORE = "external_store"  # the import record's {path, manifest_sha256} of a store outside the run


def external_store_record(run: RunDir, store: ActivationStore | None) -> dict[str, str] | None:
    """What an import records of the store it checked the crosscoder against, for a run without a store of
    its own (RUN/activations, which it reads when there): the store's absolute path and the sha256 of its
    manifest (None: no store, or the run has its own)."""
    if store is None or ACTIVATIONS.marker_path(run).is_file():
        return None
    return {"path": str(store.root.resolve()), "manifest_sha256": sha256_file(store.root / MANIFEST)}


def _check_external_store(run: RunDir, record: dict[str, Any]) -> Path:
    """The store's folder an import ``record`` names, when it still holds the store recorded; else one line
    naming the recorded path and the two fixes (the import command again, with the store where it is now)."""
    recorded = record[EXTERNAL_STORE]
    root = Path(recorded["path"])
    manifest = root / MANIFEST
    if not manifest.is_file():
        problem = "is gone (no manifest.json there)"
    elif sha256_file(manifest) != recorded["manifest_sha256"]:
        problem = "has changed since (its manifest.json differs from the one recorded)"
    else:
        return root
    again = f"crosstime import {record['format']} {record['path']} --out {run.root}"
    raise ArtifactError(f"{run.root} has no activations/ of its own; its crosscoder was imported with --store {root}, "
                        f"which {problem}: import again with the store where it is now (`{again} --store NEW "
                        f"--force`), or copy the store into {run.activations}")


# -- the reader --------------------------------------------------------------------------------

class Run:
    """The outputs of one run directory, each read on first use (see the module docstring)."""

    def __init__(self, root: str | Path, device: str | torch.device = "cpu", must_exist: bool = True):
        self.dir = RunDir(root)
        self.device = device
        self._read: dict[str, Any] = {}
        if must_exist and not self.dir.root.is_dir():
            raise StageNotRun(f"no run directory {self.dir.root}: the folder is missing; pass the folder a stage "
                              f"wrote (e.g. `crosstime demo {root}` makes one)")

    @property
    def root(self) -> Path:
        return self.dir.root

    def finished(self) -> list[str]:
        """The stages recorded as finished in RUN/config.yaml (``attribute/TASK`` per task)."""
        return list(stage.read_records(self.dir))

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r}, finished: {', '.join(self.finished()) or 'nothing yet'})"

    def store_root(self) -> Path:
        """Where this run's activation store is: RUN/activations when it holds one; else the store the import
        of its crosscoder was checked against (``--store``), when its recorded manifest is unchanged (an
        :class:`ArtifactError` naming the recorded path when it moved or changed); else RUN/activations
        (not there: reading it names the command that makes it)."""
        record = self.record(CROSSCODER)
        if ACTIVATIONS.marker_path(self.dir).is_file() or record is None or EXTERNAL_STORE not in record:
            return self.dir.activations
        return _check_external_store(self.dir, record)  # a small file hashed on each look: it may move any time

    def _marker(self, artifact: Artifact, key: str | None) -> Path:
        """The file that marks ``artifact`` written; the store's may lie outside the run (:meth:`store_root`)."""
        return self.store_root() / MANIFEST if artifact is ACTIVATIONS else artifact.marker_path(self.dir, key)

    def has(self, artifact: Artifact, key: str | None = None) -> bool:
        """Whether ``artifact`` may be read here: a finished stage vouches for it (and, for an artifact without
        checksummed files, its marker is still there), or it vouches for itself and its marker exists (its
        files are not checked yet: :meth:`require` does)."""
        there = self._marker(artifact, key).is_file()
        if artifact.self_verifying:  # its own files say whether it is whole, a record or not
            return there
        vouched = stage.record_of(stage.read_records(self.dir), artifact.ident(key)) is not None
        # checksummed files that are gone are an error when read (verify_outputs); without checksums, the
        # marker is all that says the files are still there
        return vouched and (bool(artifact.checksummed) or there)

    def record(self, artifact: Artifact, key: str | None = None) -> dict[str, Any] | None:
        """The recorded settings of the finished stage that wrote ``artifact`` (None: none did)."""
        records = stage.read_records(self.dir)
        found = stage.record_of(records, artifact.ident(key))
        return None if found is None else records[found]

    def keys(self, artifact: Artifact) -> list[str]:
        """The keys of a keyed artifact that finished stages vouch for, sorted (the attributed tasks)."""
        prefix = artifact.name + "/"
        records = stage.read_records(self.dir)
        return sorted({i[len(prefix):] for k, r in records.items() for i in stage.writes_of(k, r)
                       if i.startswith(prefix)})

    def require(self, artifact: Artifact, key: str | None = None) -> None:
        """Stop unless ``artifact`` may be read: a finished stage vouches for it and its recorded files are
        unchanged, or it vouches for itself and is there."""
        if artifact.self_verifying and self._marker(artifact, key).is_file():
            return
        if not self.dir.root.is_dir():  # say the folder is missing, not only what is missing in it
            raise StageNotRun(f"no run directory {self.root}: the folder is missing; run "
                              f"`{hint(artifact, self.root, key)}` first")
        record = stage.record_of(stage.read_records(self.dir), artifact.ident(key))
        if record is None or not stage.verify_outputs(self.dir, record):
            raise StageNotRun(f"{artifact.where(self.dir, key)} ({artifact.description}) is not there: no finished "
                              f"stage wrote it (no record in {self.dir.config_file}); run "
                              f"`{hint(artifact, self.root, key)}` first")

    def read(self, artifact: Artifact[T], key: str | None = None) -> T:
        """``artifact`` (task ``key``'s, for a keyed one) as its reader returns it, read once."""
        ident = artifact.ident(key)
        if ident not in self._read:
            self.require(artifact, key)
            self._read[ident] = artifact.read(self, key)
        return self._read[ident]

    @property
    def store(self) -> ActivationStore:
        """The run's activation store, where :meth:`store_root` says (every read of it is verified against the
        harvest's checksums)."""
        return self.read(ACTIVATIONS)

    @property
    def crosscoder(self) -> Crosscoder:
        """The crosscoder on ``device``, in normalised space, checked against the store (when the run has one)."""
        return self.read(CROSSCODER)

    @property
    def evaluation(self) -> EvaluationOutputs:
        return self.read(EVALUATION)

    @property
    def tasks(self) -> list[str]:
        """The tasks whose attribution finished in this run, sorted."""
        return self.keys(ATTRIBUTION)

    @property
    def attributions(self) -> Attributions:
        """The finished tasks' attributions, by task name; each task is read when first looked up."""
        return Attributions(self)

    def read_attribution(self, task: str) -> TaskAttribution:
        """Task ``task``'s attribution (read once)."""
        if task not in self.tasks:
            done = f"attributed here: {', '.join(self.tasks)}" if self.tasks else "no task is attributed here yet"
            raise StageNotRun(f"{self.root}: task {task!r} has no finished attribution ({done}); run "
                              f"`{hint(ATTRIBUTION, self.root, task)}` first")
        return self.read(ATTRIBUTION, task)


def hint(artifact: Artifact, run: str | Path, key: str | None = None) -> str:
    """The command that makes ``artifact`` in ``run``, from its writer stage's declaration."""
    writer = stage.STAGES.get(artifact.writer)
    if writer is None:  # the stages are registered by importing crosstime.stages (the CLI and open_run do)
        return f"crosstime {artifact.writer} {run}"
    return writer.hint(run, key)


class Attributions(Mapping[str, TaskAttribution]):
    """``{task: TaskAttribution}`` over a run's finished tasks; a task is read on first lookup."""

    def __init__(self, run: Run):
        self._run = run

    def __getitem__(self, task: str) -> TaskAttribution:
        return self._run.read_attribution(task)

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


def open_inputs(config: stage.StageConfig, device: str | torch.device = "cpu") -> Run:
    """The run of a stage about to work: every artifact its declaration ``reads`` is checked to be
    there (vouched for by a finished stage, files unchanged) before any work; the rest is read
    through the returned :class:`Run` as the stage needs it. A stage that reads nothing from the
    run may start before its folder exists (it is made when the stage writes)."""
    declared = stage.declaration(config)
    if declared.reads and not config.rundir.root.is_dir():
        raise StageNotRun(f"no run directory {config.rundir.root}: the folder is missing; run "
                          f"`{hint(declared.reads[0], config.rundir.root)}` first")
    run = Run(config.run, device=device, must_exist=False)
    for artifact in declared.reads:
        run.require(artifact)
    return run
