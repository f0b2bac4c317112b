"""The run directory and every file a stage writes into it: names, columns, fields.

Writers and readers import their schema from here, so a column is named in one place and
a reader never guesses::

    runs/NAME/
      config.yaml            settings of every finished stage (crosstime.stage)
      scan/                  accuracy.csv, dynamics.csv, similarity.npz, suggestion.json, tasks.json, *.png
      activations/           the activation store (its own layout: crosstime.store.layout)
      crosscoder/            config.json, model.safetensors, metrics.jsonl, state/ (crosstime.crosscoder)
      evaluation.json        + evaluation/features.csv and *.png
      attribution/TASK/      effects.safetensors, features.csv, ablation.csv, confusion.csv, summary.json
      report/                index.html, data.json, annotations.json

Tables (CSV) are :class:`Table` objects: a list of :class:`Column` s, some of them one cell
per checkpoint (``reldec_step512``), per pair of checkpoints (``relie_pair_step64_vs_step512``)
or per interval between consecutive checkpoints (``cos_step64_to_step512``). The header is a
function of the revisions, so a reader checks it exactly and reads every cell by type.
JSON files are pydantic models (:class:`Suggestion`, :class:`Evaluation`,
:class:`AttributionSummary`, :class:`ReportData`, …; :data:`JSON_ARTIFACTS`): built by their
writers, written with ``model_dump_json`` and validated when read; :func:`json_schemas` gives their
JSON Schemas (committed under ``docs/schema/``). A field's ``title`` is how the dashboard heads it
(a :class:`Column`'s ``title`` for a table's column); without one, its name with spaces for "_".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    create_model,
    model_serializer,
)
from pydantic.fields import FieldInfo

from crosstime.errors import CrosstimeError
from crosstime.files import write_text


class ArtifactError(CrosstimeError):
    """A stage output that is missing or not in the shape its stage writes; names the file and the fix."""


# -- the run directory ---------------------------------------------------------------------

CONFIG_FILE = "config.yaml"
RUN_LOCK = ".crosstime.lock"  # held by the one process writing the run (crosstime.stage.lock)
RUN_LOCK_HOLDER = ".crosstime.lock.json"  # who holds it: stage, pid, host, since
SCAN = "scan"
ACTIVATIONS = "activations"
CROSSCODER = "crosscoder"
EVALUATION_FILE = "evaluation.json"
EVALUATION = "evaluation"
ATTRIBUTION = "attribution"
REPORT = "report"
INTERPRET = "interpret"


class RunDir:
    """Paths of one run directory (nothing is created or read here)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def scan(self) -> Path:
        return self.root / SCAN

    @property
    def activations(self) -> Path:
        return self.root / ACTIVATIONS

    @property
    def crosscoder(self) -> Path:
        return self.root / CROSSCODER

    @property
    def evaluation_file(self) -> Path:
        return self.root / EVALUATION_FILE

    @property
    def evaluation(self) -> Path:
        return self.root / EVALUATION

    def attribution(self, task: str) -> Path:
        return self.root / ATTRIBUTION / task

    def attribution_tasks(self) -> list[str]:
        """Tasks with a finished attribution (their features.csv exists), sorted by name."""
        root = self.root / ATTRIBUTION
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / ATTRIBUTION_FEATURES.file).is_file())

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def interpret(self) -> Path:
        return self.root / INTERPRET


# -- tables ----------------------------------------------------------------------------------

Kind = Literal["one", "checkpoint", "pair", "interval"]
CellType = type[int] | type[float] | type[str] | type[bool]


@dataclass(frozen=True)
class Column:
    """One logical column; ``kind`` says how many CSV columns it spans (see the module docstring).

    ``max_checkpoints``: a ``pair`` column is written only up to this many checkpoints
    (M(M−1)/2 columns grow fast). ``digits``: significant digits of a float cell. ``title``: the
    column in words, as the dashboard heads it (None: its name with spaces for "_").
    """

    name: str
    type: CellType
    description: str
    kind: Kind = "one"
    max_checkpoints: int | None = None
    title: str | None = None

    def headers(self, revisions: list[str]) -> list[str]:
        M = len(revisions)
        if self.kind == "one":
            return [self.name]
        if self.kind == "checkpoint":
            return [f"{self.name}_{r}" for r in revisions]
        if self.kind == "interval":
            return [f"{self.name}_{a}_to_{b}" for a, b in zip(revisions[:-1], revisions[1:])]
        if self.omitted(M):
            return []
        return [f"{self.name}_{revisions[a]}_vs_{revisions[b]}" for a, b in pairs(M)]

    def omitted(self, M: int) -> bool:
        """A pair column past ``max_checkpoints``: not written, read back as None."""
        return self.kind == "pair" and self.max_checkpoints is not None and M > self.max_checkpoints

    def width(self, M: int) -> int:
        return len(self.headers([str(m) for m in range(M)]))


def pairs(M: int) -> list[tuple[int, int]]:
    """Checkpoint index pairs ``(a, b)``, ``a < b``, in the order pair columns are written."""
    return [(a, b) for a in range(M) for b in range(a + 1, M)]


def _format(value: Any, typ: CellType, digits: int | None) -> str:
    if value is None:
        return ""
    if typ is bool:
        return "1" if value else "0"
    if typ is float:
        value = float(value)
        if math.isnan(value):
            return "nan"
        return repr(value) if digits is None else format(value, f".{digits}g")
    if typ is int:
        return str(int(value))
    return str(value)


def _parse(text: str, typ: CellType) -> Any:
    if text == "":
        return None
    if typ is bool:
        if text not in ("0", "1"):
            raise ValueError(f"{text!r} is not 0 or 1")
        return text == "1"
    if typ is float:
        return float(text)
    if typ is int:
        return int(text)
    return text


@dataclass(frozen=True)
class Table:
    """A CSV file a stage writes: ``rows`` are dicts with one entry per :class:`Column`
    (a list of values for the multi-cell kinds). Floats are written with ``digits``
    significant digits, or exactly (the shortest text that reads back the same) when None."""

    file: str
    columns: tuple[Column, ...]
    digits: int | None = 6

    def header(self, revisions: list[str]) -> list[str]:
        return [h for c in self.columns for h in c.headers(revisions)]

    def fields(self, names: Sequence[str], over_revisions: bool = False) -> dict[str, tuple[Any, FieldInfo]]:
        """Pydantic field definitions (for ``create_model``) of the columns ``names``, in that order, typed as
        :meth:`read` returns their values: a cell ``type | None``, a multi-cell column a list of them (None where
        omitted); ``over_revisions``: every column as a list over the checkpoints (a one-cell column gathered from
        one row per checkpoint). Title and description are the column's; each defaults to None."""
        by_name = {c.name: c for c in self.columns}
        out: dict[str, tuple[Any, FieldInfo]] = {}
        for name in names:
            c = by_name[name]
            cell = c.type | None
            annotation = list[cell] | None if over_revisions or c.kind != "one" else cell
            out[name] = (annotation, Field(None, title=c.title, description=c.description))
        return out

    def text(self, rows: list[dict[str, Any]], revisions: list[str]) -> str:
        """The CSV text of ``rows`` (a missing or extra key is a bug in the writer: KeyError)."""
        names = {c.name for c in self.columns}
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.header(revisions))
        for row in rows:
            extra = set(row) - names
            if extra:
                raise KeyError(f"{self.file}: no column {sorted(extra)}")
            cells: list[str] = []
            for c in self.columns:
                n = c.width(len(revisions))
                values = [row[c.name]] if c.kind == "one" else (
                    list(row[c.name]) if row[c.name] is not None and not c.omitted(len(revisions)) else [None] * n)
                if len(values) != n:
                    raise ValueError(f"{self.file}: column {c.name} needs {n} values, got {len(values)}")
                cells += [_format(v, c.type, self.digits) for v in values]
            writer.writerow(cells)
        return buf.getvalue()

    def write(self, folder: Path, rows: list[dict[str, Any]], revisions: list[str]) -> Path:
        return write_text(Path(folder) / self.file, self.text(rows, revisions))

    def read(self, folder: Path, revisions: list[str]) -> list[dict[str, Any]]:
        """Rows as written (multi-cell columns as lists); a header or cell that is not this
        table's raises :class:`ArtifactError` naming the file, the line and the fix."""
        path = Path(folder) / self.file
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle, strict=True)
                header = next(reader, None)
                want = self.header(revisions)
                if header != want:
                    raise ArtifactError(
                        f"{path}: its columns are not those this version of crosstime writes for checkpoints "
                        f"{revisions} (expected {want[:6]}…, found {(header or [])[:6]}…); re-run the stage that "
                        "wrote it")
                rows = [self._row(cells, revisions, path, reader.line_num) for cells in reader if cells]
        except csv.Error as err:
            raise ArtifactError(f"{path}: malformed CSV ({err}); re-run the stage that wrote it") from err
        except UnicodeDecodeError as err:
            raise ArtifactError(f"{path} is not UTF-8 text; re-run the stage that wrote it") from err
        return rows

    def _row(self, cells: list[str], revisions: list[str], path: Path, line: int) -> dict[str, Any]:
        width = len(self.header(revisions))
        if len(cells) != width:
            raise ArtifactError(f"{path}, line {line}: {len(cells)} cells for {width} columns; re-run the stage "
                                "that wrote it")
        row: dict[str, Any] = {}
        at = 0
        for c in self.columns:
            n = c.width(len(revisions))
            try:
                values = [_parse(t, c.type) for t in cells[at : at + n]]
            except ValueError as err:
                raise ArtifactError(f"{path}, line {line}, column {c.name}: {err}; re-run the stage that "
                                    "wrote it") from err
            at += n
            if c.kind == "one":
                row[c.name] = values[0]
            else:
                row[c.name] = None if c.omitted(len(revisions)) else values
        return row


def read_model(model: type[BaseModel], path: Path) -> Any:
    """A JSON artifact validated against its model; a missing or malformed file names itself."""
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; run the stage that writes it")
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path} is not a {model.__name__} as crosstime writes it ({str(err).splitlines()[0]}); "
                            "re-run the stage that wrote it") from err


def write_model(obj: BaseModel, path: Path) -> Path:
    return write_text(path, obj.model_dump_json(indent=2) + "\n")


class _Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sparse(_Artifact):
    """A model some of whose fields its writer leaves out (absent, which is not None): written with the
    fields that were set only, so a file reads back and writes again as it was. The fields that may be
    absent say so in their descriptions."""

    @model_serializer(mode="wrap")
    def _set_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


# One value of a dashboard table cell: a setting or a number, as its field holds it (bool before int: a
# smart union keeps each value's own type, so 1 stays 1 and 1.0 stays 1.0 when written again).
Scalar = bool | int | float | str | None


# -- scan/ -------------------------------------------------------------------------------------

SCAN_ACCURACY = Table("accuracy.csv", (
    Column("revision", str, "checkpoint"),
    Column("step", int, "training step"),
    Column("tokens", int, "tokens seen"),
    Column("task", str, "task name"),
    Column("n", int, "pairs scored"),
    Column("accuracy", float, "share of pairs with log p(wrong) − log p(correct) < 0"),
    Column("mean_m", float, "mean of log p(wrong) − log p(correct)"),
    Column("n_sentence", int, "pairs scored as whole sentences"),
    Column("sentence_accuracy", float, "share with log p(good sentence) > log p(bad sentence) (lm-eval style)"),
), digits=None)

SCAN_DYNAMICS = Table("dynamics.csv", (
    Column("revision", str, "checkpoint"),
    Column("step", int, "training step"),
    Column("tokens", int, "tokens seen"),
    Column("loss", float, "held-out next-token loss (nats)"),
    Column("kl_unigram", float, "KL(model ‖ corpus unigram), nats"),
    Column("kl_bigram", float, "KL(model ‖ corpus bigram), nats"),
    Column("unigram_loss", float, "loss of the corpus unigram model"),
    Column("bigram_loss", float, "loss of the corpus bigram model"),
    Column("n_tokens", int, "held-out predictions scored"),
), digits=None)

SCAN_SIMILARITY = "similarity.npz"  # numpy .npz with the arrays of SIMILARITY_ARRAYS
SIMILARITY_MATRICES = ("cosine", "cka")
SIMILARITY_ARRAYS = {
    "revisions": "[M] checkpoint revisions, in series order",
    "steps": "[M] int64 training steps (-1 where unknown)",
    "tokens": "[M] int64 tokens seen (-1 where unknown)",
    "labels": "[M] axis labels: tokens seen ('128M'), the revision where unknown or ambiguous",
    "cosine": "[M, M] mean per-token cosine of the site activations (all NaN when no tokens were compared)",
    "cka": "[M, M] linear CKA of the site activations (all NaN when no tokens were compared)",
    "layer": "scalar: the decoder block whose output is the site",
    "n_tokens": "scalar: token positions compared (0 when none)",
}
def read_similarity(path: Path) -> dict[str, np.ndarray]:
    """``scan/similarity.npz``: ``revisions [M]``, ``labels [M]`` and the ``SIMILARITY_MATRICES`` ``[M, M]``."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ArtifactError(f"{path} is not a readable .npz file ({err}); re-run `crosstime scan`") from err
    missing = [k for k in ("revisions", "labels", *SIMILARITY_MATRICES) if k not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks the arrays {missing} the scan writes (found {sorted(arrays)}); "
                            "re-run `crosstime scan`")
    n = len(arrays["labels"])
    bad = [k for k in SIMILARITY_MATRICES if arrays[k].shape != (n, n)]
    if bad:
        raise ArtifactError(f"{path}: {bad} are not [{n}, {n}] like its labels; re-run `crosstime scan`")
    return arrays


SCAN_FIGURES = {  # what each figure shows -> its file; the similarity ones are named by SIMILARITY_MATRICES
    "accuracy": "accuracy.png",
    "cosine": "cosine.png",
    "cka": "cka.png",
    "dynamics": "dynamics.png",
}
SCAN_SUGGESTION = "suggestion.json"
SCAN_TASKS = "tasks.json"


SCAN_FINGERPRINTS = "fingerprints.json"
SCAN_PHASES = "phases.json"


class Phase(_Artifact):
    """One phase of learning and the checkpoint where it happens (None: not by the last checkpoint)."""

    name: str = Field(description="'n-gram statistics' or a task name")
    revision: str | None
    step: int | None
    tokens: int | None
    value: float | None = Field(description="the KL (nats) or the accuracy at that checkpoint")
    reading: str = Field(description="how the onset was read, in words")
    censored: bool = Field(False, description="learned only at the last checkpoint: whether it stays learned "
                                              "cannot be seen, so the onset is a bound, not a reading")
    onset_interval: list[str | None] | None = Field(
        None, description="tasks: the 5th and 95th percentile of the onset checkpoint over bootstrap resamples "
                          "of the task's pairs (None inside: not learned by the last checkpoint in that resample)")


class Phases(_Artifact):
    """``scan/phases.json``: when the n-gram statistics converge and when each task is learned
    (:mod:`crosstime.scan.phases`)."""

    accuracy: float = Field(description="a task is learned from the first checkpoint whose accuracy stays >= this")
    ngram_fraction: float = Field(description="n-gram statistics converged: KL(model ‖ bigram) this far down "
                                              "from the first checkpoint to its minimum")
    phases: list[Phase]
    order: list[str] = Field(description="phase names by onset step (learned ones only)")
    never: list[str] = Field(description="phases not reached by the last checkpoint")
    threshold_interval: list[float] | None = Field(
        None, description="(low, high]: every accuracy threshold in it gives the same order (ties and "
                          "unlearned tasks included) as `accuracy`; None when the scan has no task")
    bootstrap: int = Field(0, description="resamples of each task's pairs (0: per-pair results not given)")
    order_support: float | None = Field(
        None, description="share of bootstrap resamples whose order (ties included) is this order")

    def trust(self) -> str:
        """How far the order holds, in words after "the order" (empty without tasks): the threshold
        interval, the bootstrap support, and whether an onset is censored."""
        if self.threshold_interval is None:
            return ""
        lo, hi = self.threshold_interval
        words = f"holds for accuracy thresholds in ({lo:.2f}, {hi:.2f}]"
        if self.order_support is not None:
            words += f", in {self.order_support:.0%} of {self.bootstrap:,} bootstrap resamples of the pairs"
        censored = [p.name for p in self.phases if p.censored]
        if censored:
            words += (f" ({', '.join(censored)}: reached only at the last checkpoint, so the onset is a bound, "
                      "censored)")
        return words


class Fingerprints(_Artifact):
    """``scan/fingerprints.json``: each scanned checkpoint's weight fingerprint (``sites.weights_fingerprint``)."""

    revisions: dict[str, str] = Field(description="revision -> fingerprint")
    identical: list[list[str]] = Field(description="groups of revisions whose weights are identical")


class SuggestionNumbers(_Sparse):
    """The numbers behind one suggested checkpoint (:mod:`crosstime.scan.suggest`); each pick writes only
    those its role uses (the others are absent). Declared in the order the picks write them (an extra
    pick's distance first)."""

    min_cka_distance: float | None = Field(None, description="extra: its 1 − CKA to the nearest other pick")
    accuracy: float | None = Field(None, description="mean accuracy over the tasks (absent without accuracy curves)")
    task_accuracy: dict[str, float] | None = Field(None, description="task -> accuracy (with more than one task)")
    cka_with_after: float | None = Field(None, description="before: CKA with the 'after' pick; late: CKA with "
                                                           "'after' (None without a similarity matrix)")
    cka_with_before: float | None = Field(None, description="after: CKA with the 'before' pick (None without a "
                                                            "similarity matrix)")
    min_cka_with_after: float | None = Field(None, description="late: the lowest CKA with 'after' of the later checkpoints")
    cka_block: int | None = Field(None, description="late: its contiguous CKA block (an index of blocks)")


class SuggestedCheckpoint(_Artifact):
    revision: str
    step: int | None
    tokens: int | None
    label: str
    role: str = Field(description="before / after / late / last / extra")
    reason: str
    numbers: SuggestionNumbers


class TaskRamp(_Artifact):
    """One task's fitted flat-ramp-flat accuracy curve (:func:`crosstime.scan.suggest.fit_ramp`)."""

    starts: str = Field(description="the checkpoint where the ramp starts")
    ends: str = Field(description="the checkpoint where it ends")
    low: float = Field(description="the low plateau, clipped to [0, 1]")
    high: float = Field(description="the high plateau, clipped to [0, 1]")
    rise: float = Field(description="high − low")


class AccuracyJump(_Artifact):
    """The accuracy jump the suggestion brackets: over the tasks whose fitted rise reaches min_jump."""

    before: str = Field(description="the earliest ramp start")
    after: str = Field(description="the latest ramp end")
    tasks: dict[str, TaskRamp] = Field(description="task -> its ramp (the tasks with a jump)")
    no_jump: list[str] = Field(description="tasks without a jump")


class Suggestion(_Artifact):
    """``scan/suggestion.json``: the checkpoints the scan suggests for a crosscoder, with reasons."""

    method: str
    jump: AccuracyJump | None = Field(description="None: no task has a jump")
    blocks: list[list[str]] = Field(description="contiguous blocks of similar checkpoints (CKA)")
    checkpoints: list[SuggestedCheckpoint]
    revisions: list[str]
    series: str
    layer: int
    tasks: list[str]


# -- evaluation.json and evaluation/ ---------------------------------------------------------

class CheckpointEvaluation(_Artifact):
    """One checkpoint's row of ``evaluation.json``."""

    revision: str
    step: int | None
    tokens_seen: int | None
    scale: float = Field(title="normalisation scale",
                         description="normalisation s_m = sqrt(d) / E‖x_m‖ the crosscoder was trained with")
    mse: float = Field(title="MSE per dimension", description="mean squared error per dimension (normalised space)")
    explained_variance: float = Field(title="explained variance",
                                      description="1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (normalised space)")
    fvu: float = Field(title="unexplained variance", description="fraction of variance unexplained = 1 − EV")
    reldec_mean: float = Field(title="mean RelDec share", description="mean RelDec share of this checkpoint over all "
                                                                      "features")
    ce_clean: float | None = Field(None, title="CE, clean (nats)", description="next-token CE of the model (nats)")
    ce_spliced: float | None = Field(None, title="CE, reconstruction spliced in",
                                     description="CE with the site replaced by the reconstruction")
    ce_zero: float | None = Field(None, title="CE, site zero-ablated", description="CE with the site zero-ablated")
    delta_ce: float | None = Field(None, title="ΔCE, spliced − clean", description="ΔCE = spliced − clean")
    zero_gap: float | None = Field(None, title="CE gap, zero − clean",
                                   description="zero − clean: CE recovered is unreliable where this is small")
    ce_recovered: float | None = Field(None, title="CE recovered", description="1 − ΔCE / (zero − clean)")
    kl: float | None = Field(None, title="KL(clean ‖ spliced)", description="KL(clean ‖ spliced) per prediction")
    kl_zero: float | None = Field(None, title="KL(clean ‖ zero-ablated)",
                                  description="KL(clean ‖ zero-ablated) per prediction")
    predictions: int | None = Field(None, title="predictions scored", description="next-token predictions scored")


class EvaluationSummary(_Artifact):
    l0: float = Field(title="active features per token (L0)", description="mean active features per token")
    dead: int = Field(title="dead features", description="features that never fired over the dead-latent window")
    dead_fraction: float = Field(title="dead share")
    dead_window_tokens: int = Field(title="tokens watched for dead features")
    explained_variance_overall: float = Field(title="explained variance")
    fvu_overall: float = Field(title="unexplained variance")
    mse_overall: float = Field(title="MSE per dimension")
    shrinkage_flagged: int | None = Field(None, title="features flagged for L1 shrinkage",
                                          description="features latent scaling flags for L1 shrinkage at some "
                                                      "checkpoint: the decoder weak or absent there while beta_error "
                                                      "says present (features.csv scaling_flag; None: not measured)")
    scaling_judged: int | None = Field(None, title="features judged by latent scaling",
                                       description="features latent scaling judged (fired on at least "
                                                   "scaling_min_tokens held-out rows)")
    delta_ce: list[float] | None = Field(None, title="ΔCE, spliced − clean")
    delta_ce_max: float | None = Field(None, title="largest ΔCE")
    ce_recovered: list[float | None] | None = Field(None, title="CE recovered")
    kl: list[float] | None = Field(None, title="KL(clean ‖ spliced)")


class EvaluationSettings(_Artifact):
    """``settings`` of evaluation.json: the evaluate stage's settings as used (``run`` to ``plots``: the fields
    of :class:`crosstime.evaluate.EvaluateConfig`, which documents them; it sits above this module, so they are
    listed again here, and tests/artifacts/test_schemas.py keeps the two lists equal) and what the run decided."""

    run: Path
    progress: bool
    tokens: int | None
    contexts: int | None
    batch_rows: int
    context_batch_size: int | None
    dead_tokens: int
    presence: float
    presence_absent: float
    turn_bound: float
    high: float
    low: float
    scaling_min_tokens: int
    scaling_margin: float
    device: str = Field(description="the device the work ran on (the setting, resolved)")
    model_dtype: Literal["float32", "bfloat16", "float16"]
    seed: int
    type_threshold: float
    type_margin: float
    type_min_rows: int
    type_min_labelled_share: float = Field(0.0, description="0 in evaluations written before labels needed it")
    type_min_label_tokens: int = Field(1, description="1 in evaluations written before labels needed it")
    induction_match: int
    plots: bool
    crosscoder_path: str
    store_path: str
    revisions: list[str] = Field(description="the crosscoder's checkpoints, in its order")
    layer: int
    variant: str = Field(description="the crosscoder's variant")
    inference_rule: str = Field(description="how the crosscoder decided which features fire")
    n_features: int
    n_checkpoints: int
    d_model: int
    first_position: int = Field(description="the store's first kept position")
    excluded_positions: list[int] = Field(description="positions neither evaluated nor replaced")
    reconstruction_space: str
    downstream_space: str
    reconstruction_tokens: int = Field(description="held-out rows of the reconstruction metrics")
    reconstruction_contexts: int
    downstream_contexts: int
    heldout_contexts: int = Field(description="held-out contexts in the store")
    context_len: int
    type_properties: list[str] = Field(description="properties typed emergence scored")


class FrequencyHistogram(_Artifact):
    """Histogram of log10 firing frequency of the latents that fired at least once
    (:func:`crosstime.evaluate.metrics.frequency_histogram`)."""

    edges_log10: list[float] = Field(description="[bins + 1] from log10(1 / tokens) to 0")
    counts: list[int] = Field(description="[bins]")
    dead: int = Field(description="latents that never fired")


class Reconstruction(_Artifact):
    """``reconstruction`` of evaluation.json: normalised-space metrics over the held-out rows, lists per
    checkpoint (:class:`crosstime.evaluate.metrics.ReconstructionStats`)."""

    tokens: int = Field(description="held-out activation rows evaluated")
    mse: list[float] = Field(description="mean squared error per dimension")
    mse_overall: float
    explained_variance: list[float] = Field(description="explained variance about the mean")
    explained_variance_overall: float
    fvu: list[float] = Field(description="1 − explained variance")
    fvu_overall: float
    l0: float = Field(description="mean active latents per row")
    dead: int = Field(description="latents that never fired over the dead-latent window")
    dead_fraction: float
    dead_window_tokens: int = Field(description="rows over which firing was counted (held-out, topped up with train)")
    dead_window_reliable: bool = Field(description="the window reached dead_tokens rows")
    frequency_histogram: FrequencyHistogram


class ClassThresholds(_Artifact):
    high: float = Field(description="a dominant checkpoint's RelDec share exceeds this")
    low: float = Field(description="a checkpoint with at least this share is shared")


class Emergence(_Artifact):
    """What ``evaluation/emergence.png`` draws: features by onset checkpoint."""

    revisions: list[str]
    tokens_seen: list[int | None]
    counts_live: list[int] = Field(description="[M] live features (fired in the dead-latent window) by onset")
    counts: list[int] = Field(description="[M] every feature by onset (all-zero decoders not counted)")
    meaning: str


class Rotation(_Artifact):
    """How decoder directions rotate over training (:func:`crosstime.evaluate.geometry.rotation`), over the live
    features *present* at both checkpoints compared (decoder norm >= presence_fraction × the feature's largest):
    the cosine between consecutive checkpoints (lists over the M − 1 intervals) and with the last checkpoint's
    direction (lists over the M checkpoints). A *turn* is an interval whose median consecutive cosine is below
    ``turn_bound``; ``turns`` empty: no turn, the directions rotate without one."""

    intervals: list[str] = Field(description="'a->b' per interval")
    n_features: list[int] = Field(description="[M − 1] live features present at both ends of the interval")
    median_cosine: list[float | None] = Field(description="None where no feature is present at both ends")
    q25_cosine: list[float | None]
    q75_cosine: list[float | None]
    median_angle_deg: list[float | None]
    final_n: list[int] = Field(description="[M] live features present at m and at the last checkpoint")
    final_median: list[float | None] = Field(description="[M] median cosine with the last checkpoint's direction")
    final_q25: list[float | None]
    final_q75: list[float | None]
    revisions: list[str]
    presence_fraction: float = Field(description="the feature filter: present = decoder norm >= this × its largest")
    turn_bound: float = Field(description="a turn: an interval whose median consecutive cosine is below this")
    turns: list[int] = Field(description="indices of the intervals that turn (empty: no turn)")


class Dimensionality(_Artifact):
    """Feature dimensionality over the live features (:mod:`crosstime.evaluate.geometry`), beside its baselines:
    the effective rank of the same checkpoints' activations (the held-out reconstruction rows, normalised space,
    centred covariance) and the count of present features (``decoder.presence.present``)."""

    total: list[float] = Field(description="[M] Σ_i D_i / d")
    live_features: int
    d: int
    block: int = Field(description="rows per Gram slice it was computed in")
    participation_ratio: list[float] | None = Field(
        None, description="[M] (Σ λ)² / Σ λ² of the activations' covariance eigenvalues λ (None: not measured)")
    pcs_90: list[int] | None = Field(None, description="[M] principal components for 90% of the activation variance")
    spectrum_rows: int | None = Field(None, description="held-out rows the activation spectrum was measured on")


class ReldecHistogram(_Artifact):
    """M = 2: the live features' RelDec share of the second checkpoint, in 20 bins."""

    edges: list[float]
    counts: list[int]


class ShrinkageNull(_Artifact):
    """The shrinkage flag with a random unit direction in place of each feature's decoder direction (same norms,
    same presence, same rows): what the flag gives by chance, and how far the real directions stand from it."""

    draws: int = Field(description="random directions per feature")
    flagged_cells_mean: float = Field(description="cells flagged per draw, mean over the draws")
    carried_mean: float = Field(description="mean error-carried scale / peak norm over the candidate cells, null")
    carried_sd: float = Field(description="its standard deviation over the candidate cells and draws")
    carried_mean_real: float = Field(description="the same mean with the decoder directions")
    effect_size: float | None = Field(description="(real mean − null mean) / null sd (None: no candidate cell)")


class LatentScaling(_Artifact):
    """Where latent scaling flags L1 shrinkage (:meth:`crosstime.evaluate.scaling.ScalingReading.summary`)."""

    shrinkage: int = Field(description="features flagged for shrinkage at some checkpoint")
    shrinkage_cells: int = Field(description="feature-checkpoint cells flagged for shrinkage")
    judged: int = Field(description="features fitted on at least min_tokens held-out rows")
    candidate_cells: int = Field(description="judged cells where the decoder is weak or absent (the flag's domain)")
    shrinkage_at: dict[str, int] = Field(description="revision -> features flagged there")
    decoupling: int = Field(description="features where only beta (not beta_error) passes the test")
    decoupling_at: dict[str, int] = Field(description="revision -> features where only beta passes it there")
    presence_fraction: float
    margin: float
    min_tokens: int
    null: ShrinkageNull | None = Field(None, description="the flag against random directions")
    rule: str


class TypedEmergence(_Artifact):
    """Per feature type, its count and when its features emerge (:func:`crosstime.evaluate.types.typed_emergence`)."""

    properties: list[str] = Field(description="the properties scored")
    threshold: float
    types: list[str] = Field(description="the types in order: the properties, other, unscored")
    counts: dict[str, int] = Field(description="type -> features")
    onset_counts: dict[str, list[int]] = Field(description="type -> [M] features by onset checkpoint")
    onset_median: dict[str, int | None] = Field(description="type -> the lower median onset (a checkpoint index; "
                                                            "None: no feature of the type has one)")
    revisions: list[str]


class Presence(_Artifact):
    """Presence of each feature relative to its own peak (:func:`crosstime.evaluate.decoder.presence_levels`):
    per checkpoint, live features present / weak / absent; the classes from the present checkpoints are
    ``trajectory_labels``."""

    present_fraction: float = Field(description="present at m: decoder norm >= this × the feature's largest")
    absent_fraction: float = Field(description="absent at m: decoder norm < this × the feature's largest")
    present: list[int] = Field(description="[M] live features present")
    weak: list[int] = Field(description="[M] live features weak (between the two fractions)")
    absent: list[int] = Field(description="[M] live features absent")
    rule: str


class Decoder(_Sparse):
    """``decoder`` of evaluation.json: the decoder-space readings (:func:`crosstime.evaluate.decoder.decoder_summary`,
    normalised space). "live": the features that fired in the dead-latent window."""

    reldec_mean: list[float] = Field(description="[M] mean RelDec share over all features")
    reldec_mean_live: list[float] | None = Field(description="[M] over the live features (None: none is live)")
    classes: dict[str, int] | None = Field(description="RelDec share class -> features: the first paper's view, "
                                                       "M <= 3 only (None beyond: the presence classes are the "
                                                       "classes at any M)")
    classes_live: dict[str, int] | None
    class_thresholds: ClassThresholds
    trajectory_labels_live: dict[str, int] = Field(description="presence class -> live features (presence.rule)")
    trajectory_labels: dict[str, int]
    presence_fraction: float = Field(description="present: decoder norm >= this × the feature's largest")
    presence: Presence | None = Field(None, description="absent when written before it existed")
    emergence: Emergence
    rotation: Rotation | None = Field(None, description="absent when written before it existed")
    dimensionality: Dimensionality | None = Field(None, description="absent when written before it existed")
    mean_cosine_live: list[list[float]] | None = Field(
        None, description="[M, M] mean decoder cosine over the live features; absent beyond 64 checkpoints")
    reldec_histogram_live: ReldecHistogram | None = Field(None, description="M = 2 only (absent otherwise)")
    latent_scaling: LatentScaling | None = Field(None, description="absent when written before it existed")
    typed_emergence: TypedEmergence | None = Field(None, description="absent when written before it existed")


class Evaluation(_Artifact):
    """``evaluation.json``: every number of the evaluate stage."""

    settings: EvaluationSettings
    summary: EvaluationSummary
    checkpoints: list[CheckpointEvaluation]
    reconstruction: Reconstruction
    decoder: Decoder
    timing: dict[str, float] = Field(description="part -> seconds")
    plots: list[str] = Field(default_factory=list, description="files under evaluation/")


EVALUATION_FEATURES = Table("features.csv", (
    Column("feature", int, "feature id"),
    Column("frequency", float, "share of tokens on which the feature fires (dead-latent window)"),
    Column("alive", bool, "fired at least once"),
    Column("reldec_class", str, "class from the RelDec shares: the first paper's view, M <= 3 only (empty beyond)"),
    Column("trajectory", str, "presence class: persistent (present at every checkpoint) / emerging (not at the "
                              "first, present from onset through the last) / fading (present from the first through "
                              "offset, not at the last) / transient (one interior span) / intermittent (several "
                              "spans) / empty"),
    Column("presence", str, "present (decoder norm >= presence × the feature's largest) / weak / absent (< "
                            "presence_absent × its largest)", "checkpoint"),
    Column("onset", int, "first checkpoint index where the decoder norm is present"),
    Column("peak", int, "checkpoint index of the largest decoder norm"),
    Column("offset", int, "last checkpoint index where the decoder norm is present"),
    Column("max_norm", float, "largest decoder norm (normalised space)"),
    Column("reldec", float, "RelDec share ‖W_dec[i, m]‖ / Σ_k ‖W_dec[i, k]‖", "checkpoint"),
    Column("norm", float, "decoder norm ‖W_dec[i, m]‖ (normalised space)", "checkpoint"),
    Column("reldec_pair", float, "pairwise RelDec ‖W_b‖ / (‖W_a‖ + ‖W_b‖)", "pair", max_checkpoints=4),
    Column("cos", float, "cosine between consecutive checkpoints' decoder directions", "interval"),
    Column("dimensionality", float, "feature dimensionality D_i = ‖W_i‖⁴ / Σ_j (W_i · W_j)² over the live features "
                                    "j at checkpoint m (Elhage et al. 2022; 0 for a zero decoder); empty for a "
                                    "feature that is not alive", "checkpoint"),
    Column("cos_final", float, "cosine of the decoder direction at checkpoint m with the last checkpoint's; empty "
                               "where either decoder is zero", "checkpoint"),
    # latent scaling (crosstime.evaluate.scaling; Minder et al. 2025): u = unit W_dec[i, peak], normalised
    # space, sums over the held-out rows where the feature fires; empty where it never fired there
    Column("beta", float, "latent scaling β_m = Σ f ⟨u, x_m − b_dec,m⟩ / Σ f²: how much of the peak decoder "
                          "direction u checkpoint m's activation carries when the feature fires", "checkpoint"),
    Column("beta_error", float, "β_error_m = Σ f ⟨u, e_m + f W_dec[i, m]⟩ / Σ f², e_m = x_m − x̂_m: the same fit "
                                "to the reconstruction error with the feature's own term added back (credits a "
                                "decoder shrunk to zero where the error carries u)", "checkpoint"),
    Column("beta_share", float, "β⁺_m / Σ_k β⁺_k (β⁺ = max(β, 0)), comparable with the RelDec share", "checkpoint"),
    Column("beta_error_share", float, "β_error⁺_m / Σ_k β_error⁺_k", "checkpoint"),
    Column("beta_tokens", int, "held-out rows on which the feature fired (the rows of the β fits)"),
    Column("scaling_flag", str, "shrinkage: at some checkpoint the decoder is weak or absent (norm < presence × "
                                "its largest) while beta_error >= presence × its largest norm and exceeds the norm by "
                                ">= scaling_margin × it (the error carries u: decoder shrunk by the L1 penalty); "
                                "decoupling: only beta passes that test; none; empty when the feature fired on fewer "
                                "than scaling_min_tokens held-out rows"),
    Column("shrinkage_at", str, "checkpoints flagged for shrinkage (;-separated)"),
    Column("decoupling_at", str, "checkpoints where only beta passes the shrinkage test (candidate latent "
                                 "decoupling; weaker: co-active latents overlapping u count too)"),
    # typed emergence (crosstime.evaluate.types): scores of the feature's activation against each property over
    # the held-out reconstruction rows — η² (variance explained) for the token ids, specificity (activation mass
    # inside the label above its share of rows) for the flags; empty where not scored (toy labels off the toy world)
    Column("feature_type", str, "the simplest property whose score is within type_margin of the best and >= "
                                "type_threshold, else other; unscored when the feature fired on fewer than "
                                "type_min_rows held-out rows"),
    Column("type_score", float, "the score of feature_type (of the best property for other)"),
    Column("score_current_token", float, "η² by the token at the position"),
    Column("score_previous_token", float, "η² by the token at the position before"),
    Column("score_induction", float, "specificity to the flag: the last tokens ending here occurred earlier in the "
                                     "context"),
    Column("score_subject_number", float, "toy world: specificity to a subject number the next finite verb needs "
                                          "(singular or plural; the better one)"),
    Column("score_attractor", float, "toy world: specificity to the flag: inside a PP or relative clause of a subject"),
    Column("score_subject_end", float, "toy world: specificity to the flag: the word right before a finite verb"),
    Column("labelled_share", float, "share of the feature's activation mass on rows the series' labeller labels "
                                    "(toy world: complete grammar lines); a label's type needs type_min_labelled_share"),
    Column("labelled_rows", int, "labelled rows the feature fired on; a label's type needs type_min_rows"),
    Column("label_tokens", int, "distinct current tokens inside the feature's best-scoring label where it fired; "
                                "a label's type needs type_min_label_tokens"),
))


# -- attribution/TASK/ -------------------------------------------------------------------------

ATTRIBUTION_EFFECTS = "effects.safetensors"
ATTRIBUTION_SUMMARY = "summary.json"

ATTRIBUTION_FEATURES = Table("features.csv", (
    Column("feature", int, "feature id"),
    Column("selected_in", str, "checkpoints whose top-k by |IE| include it (;-separated)"),
    Column("ie", float, "signed IE by the stage's method (summary.json 'method'), mean over pairs (positive: supports "
                        "the correct answer). ig: the feature's share of the joint effect of moving every feature to "
                        "its baseline together (the shares sum to it), not the effect of ablating it alone; atp: the "
                        "first-order estimate of ablating it alone (gradient · Δactivation); exact: ablating it alone",
           "checkpoint"),
    Column("ie_lo", float, "bootstrap CI lower bound of IE", "checkpoint"),
    Column("ie_hi", float, "bootstrap CI upper bound of IE", "checkpoint"),
    Column("relie", float, "RelIE share |IE_m| / Σ_k |IE_k| (of the method's IE: with ig, shares of joint-effect "
                           "shares)", "checkpoint"),
    Column("relie_lo", float, "bootstrap CI lower bound of RelIE", "checkpoint"),
    Column("relie_hi", float, "bootstrap CI upper bound of RelIE", "checkpoint"),
    Column("relie_class", str, "class from the RelIE shares ('no effect' below the effect floor)"),
    Column("relie_class_on", str, "the comparison of the class rule nearest its cut-off over the bootstrap: "
                                  "'effect share' (Σ_m |IE_m| / Σ_m |joint_m| vs the effect floor), 'share_REV' (a "
                                  "checkpoint's share vs 0.7 for a dominant class, vs 0.3 for present/absent), 'max "
                                  "share' (vs 0.7: not dominant); empty without a bootstrap"),
    Column("relie_class_lo", float, "bootstrap CI lower bound of that quantity (pairs resampled)"),
    Column("relie_class_hi", float, "bootstrap CI upper bound of that quantity"),
    Column("relie_class_cutoff", float, "the cut-off it is compared with"),
    Column("relie_class_uncertain", bool, "1 where some comparison's CI reaches its cut-off (the class can change "
                                          "when the pairs are resampled); empty without a bootstrap"),
    Column("relie_pair", float, "pairwise RelIE |IE_b| / (|IE_a| + |IE_b|)", "pair", max_checkpoints=4),
    Column("reldec", float, "RelDec share", "checkpoint"),
    Column("reldec_class", str, "class from the RelDec shares"),
    Column("task_frequency", float, "share of attributed task tokens where the feature is active"),
    Column("ie_abs", float, "mean over pairs of |per-pair IE|", "checkpoint"),
    Column("exact", float, "exact single-feature ablation (this feature alone to its baseline, the rest clean): mean "
                           "effect, signed as IE", "checkpoint"),
))

ATTRIBUTION_ABLATION = Table("ablation.csv", (
    Column("feature", int, "feature id"),
    Column("checkpoint", str, "revision"),
    Column("acc_clean", float, "accuracy, clean", title="accuracy, clean"),
    Column("acc_ablated", float, "accuracy with the feature zero-ablated (error kept)",
           title="accuracy, feature ablated"),
    Column("delta_acc_pp", float, "accuracy drop, percentage points", title="accuracy drop (points)"),
    Column("lpd_clean", float, "mean log p(correct) − log p(wrong), clean", title="log-prob difference, clean"),
    Column("lpd_ablated", float, "the same with the feature ablated", title="log-prob difference, ablated"),
    Column("delta_lpd", float, "ΔLPD = clean − ablated", title="ΔLPD"),
    Column("ablation_share", float, "|ΔLPD_m| / Σ_k |ΔLPD_k|", title="ablation share"),
))
# ablation.csv's numbers: one row per feature and checkpoint (the report gathers each into a list over checkpoints)
ABLATION_METRICS = tuple(c.name for c in ATTRIBUTION_ABLATION.columns if c.name not in ("feature", "checkpoint"))

ATTRIBUTION_CONFUSION = Table("confusion.csv", (
    Column("relie_class", str, "class from the RelIE shares ('no effect' below the effect floor)"),
    Column("reldec_class", str, "class from the RelDec shares"),
    Column("count", int, "reported features with both classes"),
))

ATTRIBUTION_JOINT = Table("joint.csv", (
    Column("checkpoint", str, "revision"),
    Column("mode", str, "ablate: the k features to their baseline, the rest clean; restore: from every feature "
                        "at its baseline, the k features back to their clean values (error kept in both)"),
    Column("ranking", str, "signed_ie: the k active features with the largest signed IE at this checkpoint "
                           "(most supportive of the correct answer first); random: k active features drawn at random"),
    Column("k", int, "number of features moved together"),
    Column("lpd", float, "mean log p(correct) − log p(wrong) (random: mean over draws)"),
    Column("lpd_lo", float, "random: lower end of the central --ci interval over draws (2.5th percentile at 0.95; empty for signed_ie)"),
    Column("lpd_hi", float, "random: upper end of that interval (empty for signed_ie)"),
    Column("accuracy", float, "share of pairs with log p(correct) > log p(wrong) (random: mean over draws)"),
    Column("accuracy_lo", float, "random: lower end of the central --ci interval over draws (2.5th percentile at 0.95; empty for signed_ie)"),
    Column("accuracy_hi", float, "random: upper end of that interval (empty for signed_ie)"),
    Column("joint_share", float, "(lpd − LPD with every feature at its baseline) / (clean LPD − that): share of "
                                 "the features' joint effect still present (ablate) or brought back (restore)"),
    Column("draws", int, "random feature sets averaged (1 for signed_ie)"),
))
ATTRIBUTION_JOINT_PLOT = "joint.png"  # ATTRIBUTION_JOINT's curves per checkpoint: top-k vs the random band


class Faithfulness(_Artifact):
    """An IE estimate against the exact single-feature ablation of the reported features, in one checkpoint."""

    n_features: int
    spearman: float | None = Field(title="Spearman (signed)",
                                   description="Spearman ρ of the signed values (None: fewer than 3, or constant)")
    spearman_abs: float | None = Field(title="Spearman (|·|)", description="Spearman ρ of the magnitudes")
    sign_agreement: float | None = Field(
        title="same sign",
        description="share of the features whose estimate and exact effect have the same sign (None: no feature)")


class AblationSpearman(_Artifact):
    """Spearman ρ across the reported features of the ablation share |ΔLPD_m| / Σ_k |ΔLPD_k| with RelDec_m and
    RelIE_m (:func:`crosstime.attribution.tables.ablation_spearman`; None where undefined)."""

    ratio_vs_reldec: dict[str, float | None] = Field(title="Spearman, ablation share vs RelDec")
    ratio_vs_relie: dict[str, float | None] = Field(title="Spearman, ablation share vs RelIE")
    ratio_vs_reldec_mean: float | None = Field(title="Spearman, ablation share vs RelDec (mean)")
    ratio_vs_relie_mean: float | None = Field(title="Spearman, ablation share vs RelIE (mean)")
    note: str


class AttributionSummary(_Artifact):
    """``attribution/TASK/summary.json``: the settings and the numbers about one task's attribution."""

    task: str
    revisions: list[str]
    layer: int = Field(title="layer")
    method: str = Field(title="attribution method", description="what IE is: ig, each feature's share of the joint "
                        "effect (integrated gradients along the path moving every feature together); atp, the "
                        "first-order estimate of ablating the feature alone; exact, ablating the feature alone")
    steps: int = Field(title="integration steps")  # not the training steps (TrainSettings.steps)
    quadrature: str | None = Field(title="quadrature")
    baseline: str = Field(title="baseline")
    threshold: float | None = Field(title="threshold")
    position_0_attributed: bool = Field(title="position 0 attributed")
    n_pairs: int = Field(title="pairs")
    pairs_kept: int = Field(title="pairs kept")
    pairs_dropped: dict[str, dict[str, int]]
    accuracy_clean: dict[str, float] = Field(title="accuracy")
    metric_clean_mean: dict[str, float] = Field(title="mean metric m = log p(wrong) − log p(correct)")
    error_effect: dict[str, float] = Field(title="effect of the reconstruction error",
                                           description="effect of removing the reconstruction error, per checkpoint")
    joint_effect_exact: dict[str, float] = Field(title="joint effect of all features (exact)",
                                                 description="effect of all features to their baseline at once")
    sum_of_feature_ie: dict[str, float] = Field(title="sum of the features' IE")
    top_features: dict[str, list[int]]
    n_reported: int = Field(title="features reported")
    inference_rule: str = Field(title="features fire by", description="how the crosscoder decided which features fire")
    accuracy_all_ablated: dict[str, float] = Field(
        title="accuracy, every feature ablated",
        description="accuracy with every feature at its baseline at once (error kept), per checkpoint")
    effect_floor: float = Field(title="effect floor (share of joint effect)",
                                description="RelIE classes need Σ_m |IE_m| >= effect_floor · Σ_m |joint effect_m|")
    effect_floor_value: float = Field(title="effect floor (metric units)", description="that floor in units of the metric")
    relie_class_counts: dict[str, int] = Field(description="reported features per RelIE class ('no effect' included)")
    relie_class_uncertain: dict[str, int] | None = Field(
        None, description="reported features per RelIE class whose bootstrap interval reaches a cut-off of the class "
                          "rule (features.csv relie_class_uncertain); None without a bootstrap")
    estimators: list[str] = Field(default_factory=list, description="IE estimators computed: the method first, then "
                                  "those computed alongside it (of ig, atp) for the faithfulness figure")
    faithfulness: dict[str, dict[str, Faithfulness]] | None = Field(
        None, description="per estimator (ig and atp, whichever were computed), per checkpoint: the estimate against "
                          "exact single-feature ablation of the reported features")
    faithfulness_best: dict[str, str | None] | None = Field(
        None, description="per checkpoint, the estimator whose signed Spearman with exact ablation is highest "
                          "(None where none is defined)")
    ablation_spearman: AblationSpearman | None = None
    seconds: dict[str, float]


# -- report/ -----------------------------------------------------------------------------------

REPORT_HTML = "index.html"
REPORT_DATA = "data.json"
REPORT_ANNOTATIONS = "annotations.json"
REPORT_SHARDS = "features"  # a large report's features, beside index.html (FeatureShards)
FEATURE_SHARD_CALL = "crosstimeShard"  # what a shard script calls on the page (report/js/shards.js)


class ReportCheckpoint(_Artifact):
    """One of the report's checkpoints (the crosscoder's revisions, in order)."""

    revision: str
    step: int | None
    tokens: int | None = Field(description="tokens seen")
    label: str = Field(description="tokens seen as text; the revision where two checkpoints would share a label")


class Heading(_Artifact):
    """A field as the dashboard heads it: ``label`` its title (or its name with spaces for "_"), ``name``
    and ``description`` for the tooltip."""

    name: str
    label: str
    description: str


class ValueRow(Heading):
    """One number or setting of a table."""

    value: Scalar


class ValuesRow(Heading):
    """One number per checkpoint (None where there is none)."""

    values: list[int | float | None]


class CrosscoderSetting(Heading):
    """One setting of the crosscoder (:func:`crosstime.report.dashboard.crosscoder_settings`)."""

    group: Literal["architecture", "training"]
    value: Scalar | list[Scalar]


class ReportCrosscoderConfig(_Artifact):
    """The crosscoder's architecture: the fields of :class:`crosstime.crosscoder.CrosscoderConfig`, which
    documents them (it sits above this module, so they are listed again; the tests keep the lists equal)."""

    variant: str
    variant_config: dict[str, int | float | str | bool | list[int] | None] = Field(
        description="the variant's own architecture settings (its registered config: k for topk, the thresholds' "
                    "start for jumprelu, …)")
    n_checkpoints: int
    d_model: int
    n_features: int
    dec_init_norm: float
    seed: int
    l1_norm: Literal["sum", "concat"]
    revisions: list[str] | None
    scales: list[float] | None
    normalised: bool


class ReportCrosscoder(_Artifact):
    """The crosscoder the evidence was gathered with."""

    config: ReportCrosscoderConfig = Field(description="its CrosscoderConfig")
    inference_rule: str = Field(description="how it decided which features fire (Crosscoder.inference_rule)")
    inference_depends_on_batch: bool = Field(description="a token's features depend on the other tokens of its batch")
    settings: list[CrosscoderSetting] = Field(default_factory=list, description="the settings that apply to its "
                                              "variant (crosstime.report.dashboard.crosscoder_settings)")


# - the overview panels (crosstime.report.dashboard.collect) -

class AccuracyPoint(_Artifact):
    """A task's accuracy at one scanned checkpoint (scan/accuracy.csv)."""

    revision: str
    step: int | None
    tokens: int | None
    label: str = Field(description="tokens seen as text (the revision without them)")
    accuracy: float | None
    n: int | None = Field(description="pairs scored")
    mean_m: float | None


class SimilarityMatrix(_Artifact):
    """One of scan/similarity.npz's matrices over the scanned checkpoints."""

    name: str = Field(description="cosine or cka")
    labels: list[str]
    matrix: list[list[float | None]] = Field(description="[M, M] (None where not finite)")


class DynamicsSeries(_Artifact):
    name: str = Field(description="a float column of scan/dynamics.csv")
    label: str = Field(description="its description")
    points: list[tuple[int | None, float, str]] = Field(description="[tokens seen, value, revision], finite values")


class DynamicsPanel(_Artifact):
    """scan/dynamics.csv against tokens seen."""

    series: list[DynamicsSeries]
    ticks: list[tuple[int | None, str]] = Field(description="[tokens seen, as text] per scanned checkpoint")
    xlabel: str


class Figure(_Sparse):
    """A PNG a stage drew, embedded."""

    name: str = Field(description="GROUP/FILE")
    group: str = Field(description="scan, evaluation, attribution/TASK or report")
    src: str = Field(description="a data: URI")
    evolution: bool | None = Field(None, description="shown in the Evolution section (absent for the others)")
    caption: str | None = Field(None, description="its one-line reading (absent without one)")


class EvaluationTable(_Artifact):
    """evaluation.json as tables: the per-checkpoint numbers with a value somewhere, the summary's scalars."""

    checkpoints: list[str]
    rows: list[ValuesRow] = Field(description="one per CheckpointEvaluation field")
    overall: list[ValueRow] = Field(description="one per EvaluationSummary scalar with a value")


class ReportEmergence(Emergence):
    """What evaluation/emergence.png draws, and the presence fraction of an onset."""

    presence_fraction: float


class AblationTable(_Artifact):
    """attribution/TASK/ablation.csv as a table."""

    columns: list[Heading]
    rows: list[list[Scalar]]


class Confusion(_Artifact):
    """attribution/TASK/confusion.csv as a matrix: relie_classes × reldec_classes."""

    relie_classes: list[str]
    reldec_classes: list[str]
    counts: list[list[int]]


JointRow = create_model("JointRow", __base__=_Artifact, __doc__="One row of attribution/TASK/joint.csv.",
                        **ATTRIBUTION_JOINT.fields([c.name for c in ATTRIBUTION_JOINT.columns]))


class AttributionOverview(_Sparse):
    """One task's attribution (:func:`crosstime.report.dashboard.attribution_overview`)."""

    revisions: list[str] = Field(description="the checkpoints it covers")
    summary: list[ValueRow] = Field(description="summary.json's settings and scalars")
    per_checkpoint: list[ValuesRow] = Field(description="its numbers per checkpoint, faithfulness and ablation "
                                                        "correlations among them")
    agreement: list[ValueRow] = Field(description="the ablation correlations pooled over checkpoints")
    confusion: Confusion | None = Field(None, description="absent without confusion.csv")
    joint: list[JointRow] | None = Field(None, description="joint.csv (absent when not written: --no-joint)")


class Distributions(_Artifact):
    """Share histograms (SHARE_BINS bins of [0, 1] per checkpoint) over every feature of the tables."""

    reldec: list[list[int]] | None = Field(description="[M, bins] (None without RelDec shares)")
    n_reldec: int
    relie: dict[str, list[list[int]]] = Field(description="task -> [M, bins]")
    n_relie: dict[str, int]


class EvolutionCheckpoint(_Artifact):
    revision: str
    step: int | None
    tokens: int | None


# the scanned checkpoints' rows of scan/dynamics.csv the two-phase figure draws
EVOLUTION_DYNAMICS = ("revision", "step", "tokens", "loss", "kl_unigram", "kl_bigram", "bigram_loss")
EvolutionDynamics = create_model("EvolutionDynamics", __base__=_Artifact, __doc__="A scanned checkpoint's dynamics.",
                                 **SCAN_DYNAMICS.fields(EVOLUTION_DYNAMICS))


class Evolution(_Artifact):
    """What the Evolution panel and the two-phase figure read (:mod:`crosstime.report.evolution`); each part
    None where the run lacks it."""

    checkpoints: list[EvolutionCheckpoint] = Field(description="the crosscoder's (empty without an evaluation)")
    dynamics: list[EvolutionDynamics] | None = Field(description="every scanned checkpoint")
    phases: Phases | None
    dimensionality: Dimensionality | None
    presence: Presence | None = Field(description="present / weak / absent features per checkpoint (the count "
                                                  "beside dimensionality)")
    rotation: Rotation | None
    typed_emergence: TypedEmergence | None


# -- interpret/ ----------------------------------------------------------------------------------

INTERPRET_EXPLANATIONS = Table("explanations.csv", (
    Column("feature", int, "feature id"),
    Column("view", str, "the evidence's view: 'all' (the joint activation) or a checkpoint alone"),
    Column("feature_type", str, "evaluation/features.csv feature_type (typed emergence), empty without one"),
    Column("explanation", str, "what the feature fires on, in words (empty: the explainer gave none)"),
    Column("complexity", int, "1-5 (docs/interpret.md); empty where the explainer gave none"),
    Column("source", str, "what wrote the explanation: 'rules' or the LLM's model id"),
    Column("detection", float, "detection balanced accuracy on held-out contexts (delphi's definition)"),
    Column("fuzzing", float, "fuzzing balanced accuracy on held-out contexts (delphi's definition)"),
    Column("detection_shuffled", float, "detection balanced accuracy of another feature's explanation of the same "
                                        "view (the chance baseline)"),
    Column("fuzzing_shuffled", float, "fuzzing balanced accuracy of that shuffled explanation"),
    Column("n_positive", int, "held-out activating contexts scored"),
    Column("n_negative", int, "held-out non-activating contexts scored"),
    Column("n_unanswered", int, "judge answers that were unusable (left out of the scores)"),
), digits=4)
INTERPRET_ANALYSIS = "analysis.json"
INTERPRET_FIGURE = "complexity.png"  # complexity against onset and RelIE peak; scores per checkpoint
INTERPRET_LLM_CACHE = "llm-cache"  # every LLM prompt and reply, one file per request hash (interpret/cache.py)


class Correlation(_Artifact):
    """Complexity against a checkpoint index over the features that have both (joint view)."""

    against: str = Field(description="'onset' (features.csv) or 'relie_peak' (the attribution checkpoint where the "
                                     "feature's RelIE is largest, in the task where its Σ|IE| is largest)")
    n: int = Field(description="features in the correlation")
    pearson_r: float | None = Field(description="Pearson r (None: fewer than 3 features, or a constant)")
    pearson_p: float | None = Field(description="two-sided p-value (scipy.stats.pearsonr)")
    pearson_ci: list[float] | None = Field(description="bootstrap 95% interval of r (features resampled)")
    spearman_rho: float | None = Field(description="Spearman ρ")
    spearman_p: float | None = Field(description="two-sided p-value (scipy.stats.spearmanr)")
    spearman_ci: list[float] | None = Field(description="bootstrap 95% interval of ρ")


class ComplexityRow(_Artifact):
    """One complexity level (joint view): its features' onsets, RelIE peaks and scores."""

    complexity: int
    n: int
    onset_mean: float | None = Field(description="mean onset checkpoint index")
    onset_median: float | None
    relie_peak_mean: float | None = Field(description="mean RelIE peak checkpoint index (features with one)")
    detection_mean: float | None
    detection_shuffled_mean: float | None


class ViewScores(_Artifact):
    """Mean scores of the explanations of one view (the joint one or a checkpoint alone)."""

    view: str
    n: int = Field(description="explanations scored in this view")
    detection_mean: float | None
    fuzzing_mean: float | None
    detection_shuffled_mean: float | None
    fuzzing_shuffled_mean: float | None


class LLMIssue(_Artifact):
    """One LLM reply that did not parse as asked (recorded; the run goes on)."""

    feature: int
    checkpoint: str | None = Field(description="the view (None: the joint one)")
    task: str = Field(description="'explain', 'detect' or 'fuzz'")
    issue: str = Field(description="what was wrong with the reply")
    contexts: list[int] | None = Field(None, description="the judged contexts the reply was about (judge replies)")


class LLMUsage(_Artifact):
    """What the LLM explainer and judge used: every reply in RUN/interpret/llm-cache/, with its cost."""

    url: str | None = Field(description="the OpenAI-compatible endpoint (None: a local transformers model)")
    model: str = Field(description="the model asked for (--llm-model: a name at the endpoint, or a local folder)")
    served_by: list[str] = Field(description="the model names the endpoint's replies gave")
    replies: int = Field(description="this model's replies in the cache (this run's and earlier runs'; another "
                                     "model's replies in the same cache are not counted)")
    prompt_tokens: int
    completion_tokens: int
    replies_without_usage: int = Field(description="replies whose endpoint reported no token counts (counted as 0)")
    cost_usd: float = Field(description="prompt and completion tokens at the given prices (0 when not given)")
    cost_known: bool = Field(description="false when --llm-price-prompt/--llm-price-completion were not given")
    sent: int = Field(description="requests sent by this run (the rest came from the cache)")
    cached: int = Field(description="replies this run read from the cache")
    retries: int = Field(description="requests this run retried (429, 5xx, timeouts)")
    corrupt_entries: list[dict[str, str]] = Field(description="cache entries found damaged, moved aside and fetched "
                                                              "again: key, reason, moved_to")
    issues: list[LLMIssue] = Field(description="replies that did not parse (an explanation without a complexity, "
                                               "a judge reply that is not a list of 0/1)")


class InterpretAnalysis(_Artifact):
    """interpret/analysis.json: complexity against emergence, and the explanations' scores."""

    explainer: str = Field(description="'rules' or 'llm'")
    revisions: list[str] = Field(description="the crosscoder's checkpoints (onset and peak index these)")
    n_features: int = Field(description="features interpreted")
    n_explained: int = Field(description="of them with an explanation and a complexity (joint view)")
    onset: Correlation
    relie_peak: Correlation | None = Field(description="None without an attribution")
    table: list[ComplexityRow]
    views: list[ViewScores]
    reading: str = Field(description="the result in one line")
    llm: LLMUsage | None = Field(None, description="--explainer llm: tokens, cost and unparsed replies (None: rules)")


# what a report carries of interpret's output: per feature and view its explanations.csv row (less the keys)
INTERPRET_REPORTED = tuple(c.name for c in INTERPRET_EXPLANATIONS.columns if c.name not in ("feature", "view",
                                                                                            "feature_type"))
FeatureExplanation = create_model(
    "FeatureExplanation", __base__=_Artifact,
    __doc__="A feature's explanation in one view and its scores (interpret/explanations.csv; crosstime interpret).",
    **INTERPRET_EXPLANATIONS.fields(INTERPRET_REPORTED))


class ReportInterpretation(_Artifact):
    """What the report's overview shows of ``crosstime interpret``: its analysis and its figure."""

    analysis: InterpretAnalysis
    figure: Figure | None = Field(description="interpret/complexity.png embedded (None: too large to embed)")


class Overview(_Sparse):
    """The panels above the feature list (:func:`crosstime.report.dashboard.collect`)."""

    accuracy: dict[str, list[AccuracyPoint]] = Field(description="task -> its accuracy by tokens seen")
    similarity: list[SimilarityMatrix]
    suggestion: Suggestion | None
    dynamics: DynamicsPanel | None
    figures: list[Figure]
    evaluation: EvaluationTable | None = Field(None, description="absent without an evaluation")
    emergence: ReportEmergence | None = Field(None, description="absent without an evaluation")
    ablation: dict[str, AblationTable] = Field(description="task -> its ablation.csv")
    attribution: dict[str, AttributionOverview] = Field(description="task -> its attribution")
    distributions: Distributions
    class_counts: dict[str, dict[str, int]] = Field(description="what is counted -> class -> features")
    evolution: Evolution
    interpret: ReportInterpretation | None = Field(None, description="absent without interpret/ (crosstime "
                                                                     "interpret)")


# - the features -

# evaluation/features.csv columns a listed feature carries (all but the pairwise RelDec, which the dashboard does
# not use); per task, attribution/TASK/features.csv values over the report's checkpoints, and scalars
EVALUATION_COLUMNS = tuple(c.name for c in EVALUATION_FEATURES.columns if c.kind != "pair" and c.name != "feature")
TASK_CHECKPOINT_COLUMNS = ("ie", "ie_lo", "ie_hi", "relie", "relie_lo", "relie_hi", "ie_abs", "exact")
TASK_SCALAR_COLUMNS = ("relie_class", "relie_class_uncertain", "task_frequency", "selected_in")

FeatureAblation = create_model(
    "FeatureAblation", __base__=_Artifact,
    __doc__="A feature's ablation.csv numbers in one task, each a list over the report's checkpoints.",
    **ATTRIBUTION_ABLATION.fields(ABLATION_METRICS, over_revisions=True))

TaskEntry = create_model(
    "TaskEntry", __base__=_Sparse,
    __doc__="A feature's attribution in one task (attribution/TASK/features.csv; lists over the report's "
            "checkpoints, None where the attribution does not cover one); a value the task lacks is absent.",
    **ATTRIBUTION_FEATURES.fields(TASK_CHECKPOINT_COLUMNS + TASK_SCALAR_COLUMNS),
    ablation=(FeatureAblation | None, Field(None, description="absent without ablation.csv")))

FeatureTables = create_model(
    "FeatureTables", __base__=_Sparse,
    __doc__="A feature as the stage tables give it: evaluation/features.csv's columns (absent without an "
            "evaluation; ``norm`` and the RelDec readings are then the crosscoder's, for reported features) and its "
            "attribution per task.",
    id=(int, Field(description="feature id")),
    **EVALUATION_FEATURES.fields(EVALUATION_COLUMNS),
    tasks=(dict[str, TaskEntry], Field(description="task -> its attribution (tasks that report the feature)")))


class Window(_Artifact):
    """Tokens around a place a feature fired, with its activation at each (crosstime.evidence.windows)."""

    context: int
    position: int
    value: float = Field(description="the activation at the position")
    start: int = Field(description="the window's first position")
    tokens: list[int]
    acts: list[float | None] = Field(description="per token (None where the store excludes the position)")


class QuantileWindow(Window):
    quantile: float


class Histogram(_Artifact):
    """Counts of the non-zero activations in n_bins equal bins of [0, upper), trailing empty bins cut."""

    upper: float
    n_bins: int
    counts: list[int]


class LogitLens(_Artifact):
    """The tokens a decoder direction promotes and suppresses at one checkpoint."""

    promoted: list[tuple[int, float]] = Field(description="[token id, Δlogit], most promoted first")
    suppressed: list[tuple[int, float]]


class FeatureEvidence(_Artifact):
    """What a feature fires on and writes (:func:`crosstime.evidence.feature_evidence`); dicts by view
    ('all' and each checkpoint alone) or by revision."""

    density: dict[str, float] = Field(description="view -> share of the rows where it fires")
    histogram: dict[str, Histogram]
    top: dict[str, list[Window]] = Field(description="view -> top contexts")
    quantiles: list[QuantileWindow] = Field(description="examples at evenly spaced quantiles (joint view)")
    logit_lens: dict[str, LogitLens] = Field(description="revision -> logit lens (empty without one)")


class ReportFeature(FeatureTables):
    """A listed feature, best first (crosstime.report.work.feature_rows)."""

    rank: int
    evidence: FeatureEvidence | None = Field(None, description="absent without the store and the crosscoder")
    description: str | None = Field(description="its annotation (crosstime annotate)")
    annotation: dict[str, str] | None = Field(description="the annotation's extra columns")
    interpret: dict[str, FeatureExplanation] | None = Field(
        None, description="view ('all': the joint one, then each checkpoint where it was explained) -> its "
                          "explanation and scores (crosstime interpret); absent where the feature was not interpreted")


class EvidenceSettings(_Artifact):
    """What evidence was gathered: the fields of :class:`crosstime.report.EvidenceConfig`, which documents them
    (it sits above this module, so they are listed again; the tests keep the lists equal)."""

    n_top: int
    window_before: int
    window_after: int
    n_quantiles: int
    sample_size: int
    n_bins: int
    split: Literal["train", "heldout", "all"]
    max_contexts: int | None
    per_checkpoint: bool
    logit_lens: Literal["mean_activation", "norm_weight", "none"]
    n_logit_tokens: int
    seed: int


class EvidenceMeta(_Artifact):
    """How the evidence was gathered."""

    n_rows: int = Field(description="store rows streamed over")
    n_contexts: int
    contexts: tuple[int, int] = Field(description="the store contexts [first, last + 1)")
    logit_lens_method: Literal["mean_activation", "norm_weight", "none"]
    config: EvidenceSettings
    token_text: bool = Field(description="tokens are shown as text (else as ids)")
    excluded_tokens: list[int] = Field(description="token ids the logit lens leaves out (the special tokens)")


class FeatureShards(_Artifact):
    """Where a large report's features are: not in ``data.json`` but once, in the page's shard scripts
    ``report/features/shard-KKKKK.js`` (:func:`feature_shard_text`), each the whole features of a run of
    consecutive ids. :func:`read_report_data` reads them back, each file checked against its sha256 here."""

    path: str = Field(description="the shards' folder, relative to report/")
    starts: list[int] = Field(description="the first feature id of each shard (ids ascend within and across them)")
    count: int = Field(description="features in all the shards")
    sha256: list[str] = Field(description="per shard, the sha256 of its file")


class ReportData(_Artifact):
    """``report/data.json``: everything the dashboard shows (embedded in index.html; re-rendered by
    ``crosstime annotate --import``). Read it with :func:`read_report_data`: above the page's one-file size
    (``crosstime.report.dashboard.EMBED_MAX_FEATURES``) its ``features`` are in shards (``feature_shards``)."""

    title: str
    generated: str
    run: str
    checkpoints: list[ReportCheckpoint]
    tasks: list[str] = Field(description="tasks with an attribution")
    main_task: str | None = Field(description="the task with the largest total |IE| over the reported features")
    missing: list[str] = Field(description="stages and inputs the run lacks, each with what it costs the report")
    overview: Overview
    crosscoder: ReportCrosscoder | None
    features: list[ReportFeature] = Field(description="the listed features, best first")
    n_features_total: int | None = Field(description="F of the crosscoder (None without one)")
    views: list[str] = Field(description="evidence views: 'all' (joint), then each checkpoint alone")
    vocab: dict[str, str] = Field(description="token id -> text; empty when tokens are shown as ids")
    evidence_meta: EvidenceMeta | None
    findings: list[str]
    feature_shards: FeatureShards | None = Field(
        None, description="set when the features are in shards, not here (``features`` is then empty in the file)")


_FEATURE_LIST = TypeAdapter(list[ReportFeature])


def feature_shard_name(k: int) -> str:
    return f"shard-{k:05d}.js"


def feature_shard_text(k: int, entries: Sequence[str]) -> str:
    """Shard ``k``'s file: a script calling ``crosstimeShard(K, [entry, …])`` (loaded by the page with a
    ``<script src>``, which works from ``file://`` where ``fetch`` does not); ``entries``: features as JSON texts
    (JSON that is also safe inside a script: ``</`` written ``<\\/``)."""
    return f"{FEATURE_SHARD_CALL}({k},[{','.join(entries)}]);\n"


def _read_feature_shard(path: Path, k: int, sha256: str) -> list[ReportFeature]:
    """The features of shard ``k`` at ``path``, after checking the file's bytes against ``sha256``."""
    fix = "re-run `crosstime report`"
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: data.json names it as a shard of its features; {fix}")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise ArtifactError(f"{path} changed after the report wrote it (its sha256 in data.json differs); {fix}")
    head, tail = f"{FEATURE_SHARD_CALL}({k},".encode(), b");\n"
    if not (raw.startswith(head) and raw.endswith(tail)):
        raise ArtifactError(f"{path} is not shard {k} as crosstime writes it; {fix}")
    try:
        return _FEATURE_LIST.validate_json(raw[len(head):-len(tail)])
    except ValidationError as err:
        raise ArtifactError(f"{path} does not hold ReportFeatures ({str(err).splitlines()[0]}); {fix}") from err


def read_report_data(folder: Path) -> ReportData:
    """``folder/data.json`` (a run's ``report/``) with all its features, as if written whole: those of a large
    report read from its shards (:class:`FeatureShards`), each file checked against its recorded sha256, and put
    back in rank order. Every reader of the report's data reads it here."""
    data = read_model(ReportData, folder / REPORT_DATA)
    shards = data.feature_shards
    if shards is None:
        return data
    if len(shards.starts) != len(shards.sha256):
        raise ArtifactError(f"{folder / REPORT_DATA}: {len(shards.starts)} shard starts but {len(shards.sha256)} "
                            "checksums; re-run `crosstime report`")
    features: list[ReportFeature] = []
    for k, (start, sha256) in enumerate(zip(shards.starts, shards.sha256)):
        found = _read_feature_shard(folder / shards.path / feature_shard_name(k), k, sha256)
        if not found or found[0].id != start:
            raise ArtifactError(f"{folder / shards.path / feature_shard_name(k)} does not start at feature {start} as "
                                "data.json says; re-run `crosstime report`")
        features += found
    features.sort(key=lambda f: f.rank)
    if [f.rank for f in features] != list(range(1, shards.count + 1)):
        raise ArtifactError(f"the shards of {folder / REPORT_DATA} hold {len(features)} features, not ranks 1.."
                            f"{shards.count}; re-run `crosstime report`")
    return data.model_copy(update={"features": features, "feature_shards": None})


class Annotations(_Artifact):
    """``report/annotations.json``: human descriptions of features (``crosstime annotate --import``)."""

    source: str = Field(description="the CSV file last imported")
    features: dict[int, dict[str, str]] = Field(description="feature id -> {description, extra columns}")


# -- the schemas ---------------------------------------------------------------------------------

# every JSON file a stage writes into the run directory (path in it, TASK for the task) -> its model
JSON_ARTIFACTS: dict[str, type[_Artifact]] = {
    f"{SCAN}/{SCAN_SUGGESTION}": Suggestion,
    f"{SCAN}/{SCAN_PHASES}": Phases,
    f"{SCAN}/{SCAN_FINGERPRINTS}": Fingerprints,
    EVALUATION_FILE: Evaluation,
    f"{ATTRIBUTION}/TASK/{ATTRIBUTION_SUMMARY}": AttributionSummary,
    f"{REPORT}/{REPORT_DATA}": ReportData,
    f"{REPORT}/{REPORT_ANNOTATIONS}": Annotations,
    f"{INTERPRET}/{INTERPRET_ANALYSIS}": InterpretAnalysis,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every JSON artifact, by its path in the run directory (:data:`JSON_ARTIFACTS`)."""
    return {path: model.model_json_schema() for path, model in JSON_ARTIFACTS.items()}


def read_json(path: Path) -> Any:
    """A plain JSON file (no schema of ours); a malformed one names itself."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path} is not valid JSON ({err}); re-run the stage that wrote it") from err
