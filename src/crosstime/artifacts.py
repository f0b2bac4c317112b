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
:class:`AttributionSummary`): written with ``model_dump_json`` and validated when read.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


# -- tables ----------------------------------------------------------------------------------

Kind = Literal["one", "checkpoint", "pair", "interval"]
CellType = type[int] | type[float] | type[str] | type[bool]


@dataclass(frozen=True)
class Column:
    """One logical column; ``kind`` says how many CSV columns it spans (see the module docstring).

    ``max_checkpoints``: a ``pair`` column is written only up to this many checkpoints
    (M(M−1)/2 columns grow fast). ``digits``: significant digits of a float cell.
    """

    name: str
    type: CellType
    description: str
    kind: Kind = "one"
    max_checkpoints: int | None = None

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


class Phases(_Artifact):
    """``scan/phases.json``: when the n-gram statistics converge and when each task is learned
    (:mod:`crosstime.scan.phases`)."""

    accuracy: float = Field(description="a task is learned from the first checkpoint whose accuracy stays >= this")
    ngram_fraction: float = Field(description="n-gram statistics converged: KL(model ‖ bigram) this far down "
                                              "from the first checkpoint to its minimum")
    phases: list[Phase]
    order: list[str] = Field(description="phase names by onset step (learned ones only)")
    never: list[str] = Field(description="phases not reached by the last checkpoint")


class Fingerprints(_Artifact):
    """``scan/fingerprints.json``: each scanned checkpoint's weight fingerprint (``sites.weights_fingerprint``)."""

    revisions: dict[str, str] = Field(description="revision -> fingerprint")
    identical: list[list[str]] = Field(description="groups of revisions whose weights are identical")


class SuggestedCheckpoint(_Artifact):
    revision: str
    step: int | None
    tokens: int | None
    label: str
    role: str = Field(description="before / after / late / last / extra")
    reason: str
    numbers: dict[str, Any]


class Suggestion(_Artifact):
    """``scan/suggestion.json``: the checkpoints the scan suggests for a crosscoder, with reasons."""

    method: str
    jump: dict[str, Any] | None
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
    scale: float = Field(description="normalisation s_m = sqrt(d) / E‖x_m‖ the crosscoder was trained with")
    mse: float = Field(description="mean squared error per dimension (normalised space)")
    explained_variance: float = Field(description="1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (normalised space)")
    fvu: float = Field(description="fraction of variance unexplained = 1 − EV")
    reldec_mean: float = Field(description="mean RelDec share of this checkpoint over all features")
    ce_clean: float | None = Field(None, description="next-token CE of the model (nats)")
    ce_spliced: float | None = Field(None, description="CE with the site replaced by the reconstruction")
    ce_zero: float | None = Field(None, description="CE with the site zero-ablated")
    delta_ce: float | None = Field(None, description="ΔCE = spliced − clean")
    zero_gap: float | None = Field(None, description="zero − clean: CE recovered is unreliable where this is small")
    ce_recovered: float | None = Field(None, description="1 − ΔCE / (zero − clean)")
    kl: float | None = Field(None, description="KL(clean ‖ spliced) per prediction")
    kl_zero: float | None = Field(None, description="KL(clean ‖ zero-ablated) per prediction")
    predictions: int | None = Field(None, description="next-token predictions scored")


class EvaluationSummary(_Artifact):
    l0: float = Field(description="mean active features per token")
    dead: int = Field(description="features that never fired over the dead-latent window")
    dead_fraction: float
    dead_window_tokens: int
    explained_variance_overall: float
    fvu_overall: float
    mse_overall: float
    reldec_disputed: int | None = Field(None, description="features whose RelDec class latent scaling disputes at "
                                                          "some checkpoint (features.csv reldec_disputed; None: "
                                                          "written before latent scaling existed)")
    scaling_judged: int | None = Field(None, description="features latent scaling judged (fired on at least "
                                                         "scaling_min_tokens held-out rows)")
    delta_ce: list[float] | None = None
    delta_ce_max: float | None = None
    ce_recovered: list[float | None] | None = None
    kl: list[float] | None = None


class Evaluation(_Artifact):
    """``evaluation.json``: every number of the evaluate stage."""

    settings: dict[str, Any]
    summary: EvaluationSummary
    checkpoints: list[CheckpointEvaluation]
    reconstruction: dict[str, Any]
    decoder: dict[str, Any]
    timing: dict[str, float]
    plots: list[str] = Field(default_factory=list, description="files under evaluation/")


EVALUATION_FEATURES = Table("features.csv", (
    Column("feature", int, "feature id"),
    Column("frequency", float, "share of tokens on which the feature fires (dead-latent window)"),
    Column("alive", bool, "fired at least once"),
    Column("reldec_class", str, "class from the RelDec shares"),
    Column("trajectory", str, "initial / persistent / emerging / transient / empty"),
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
    Column("reldec_disputed", bool, "1 where at some checkpoint the RelDec share is < low (RelDec: absent) while "
                                    "the beta_error share is >= low and >= the RelDec share + scaling_margin "
                                    "(the error carries u: decoder shrunk by the L1 penalty); empty when the "
                                    "feature fired on fewer than scaling_min_tokens held-out rows"),
    Column("disputed_at", str, "checkpoints where RelDec is disputed (;-separated)"),
    Column("activation_disputed_at", str, "checkpoints where only the beta share passes the same test (candidate "
                                          "latent decoupling; weaker: co-active latents overlapping u count too)"),
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
))


# -- attribution/TASK/ -------------------------------------------------------------------------

ATTRIBUTION_EFFECTS = "effects.safetensors"
ATTRIBUTION_SUMMARY = "summary.json"

ATTRIBUTION_FEATURES = Table("features.csv", (
    Column("feature", int, "feature id"),
    Column("selected_in", str, "checkpoints whose top-k by |IE| include it (;-separated)"),
    Column("ie", float, "signed IE, mean over pairs (positive: supports the correct answer)", "checkpoint"),
    Column("ie_lo", float, "bootstrap CI lower bound of IE", "checkpoint"),
    Column("ie_hi", float, "bootstrap CI upper bound of IE", "checkpoint"),
    Column("relie", float, "RelIE share |IE_m| / Σ_k |IE_k|", "checkpoint"),
    Column("relie_lo", float, "bootstrap CI lower bound of RelIE", "checkpoint"),
    Column("relie_hi", float, "bootstrap CI upper bound of RelIE", "checkpoint"),
    Column("relie_class", str, "class from the RelIE shares"),
    Column("relie_pair", float, "pairwise RelIE |IE_b| / (|IE_a| + |IE_b|)", "pair", max_checkpoints=4),
    Column("reldec", float, "RelDec share", "checkpoint"),
    Column("reldec_class", str, "class from the RelDec shares"),
    Column("task_frequency", float, "share of attributed task tokens where the feature is active"),
    Column("ie_abs", float, "mean over pairs of |per-pair IE|", "checkpoint"),
    Column("exact", float, "exact single-feature ablation: mean change of the metric", "checkpoint"),
))

ATTRIBUTION_ABLATION = Table("ablation.csv", (
    Column("feature", int, "feature id"),
    Column("checkpoint", str, "revision"),
    Column("acc_clean", float, "accuracy, clean"),
    Column("acc_ablated", float, "accuracy with the feature zero-ablated (error kept)"),
    Column("delta_acc_pp", float, "accuracy drop, percentage points"),
    Column("lpd_clean", float, "mean log p(correct) − log p(wrong), clean"),
    Column("lpd_ablated", float, "the same with the feature ablated"),
    Column("delta_lpd", float, "ΔLPD = clean − ablated"),
    Column("ablation_share", float, "|ΔLPD_m| / Σ_k |ΔLPD_k|"),
))

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
    spearman: float | None = Field(description="Spearman ρ of the signed values (None: fewer than 3, or constant)")
    spearman_abs: float | None = Field(description="Spearman ρ of the magnitudes")
    sign_agreement: float | None = Field(
        description="share of the features whose estimate and exact effect have the same sign (None: no feature)")


class AttributionSummary(_Artifact):
    """``attribution/TASK/summary.json``: the settings and the numbers about one task's attribution."""

    task: str
    revisions: list[str]
    layer: int
    method: str
    steps: int
    quadrature: str | None
    baseline: str
    threshold: float | None
    position_0_attributed: bool
    n_pairs: int
    pairs_kept: int
    pairs_dropped: dict[str, dict[str, int]]
    accuracy_clean: dict[str, float]
    metric_clean_mean: dict[str, float]
    error_effect: dict[str, float] = Field(description="effect of removing the reconstruction error, per checkpoint")
    joint_effect_exact: dict[str, float] = Field(description="effect of all features to their baseline at once")
    sum_of_feature_ie: dict[str, float]
    top_features: dict[str, list[int]]
    n_reported: int
    inference_rule: str = Field(description="how the crosscoder decided which features fire")
    accuracy_all_ablated: dict[str, float] = Field(
        description="accuracy with every feature at its baseline at once (error kept), per checkpoint")
    effect_floor: float = Field(description="RelIE classes need Σ_m |IE_m| >= effect_floor · Σ_m |joint effect_m|")
    effect_floor_value: float = Field(description="that floor in units of the metric")
    relie_class_counts: dict[str, int] = Field(description="reported features per RelIE class ('no effect' included)")
    faithfulness: dict[str, dict[str, Faithfulness]] | None = Field(
        None, description="per estimator (the method's, and atp when computed alongside), per checkpoint: the "
                          "estimate against exact single-feature ablation of the reported features")
    ablation_spearman: dict[str, Any] | None = None
    seconds: dict[str, float]


# -- report/ -----------------------------------------------------------------------------------

REPORT_HTML = "index.html"
REPORT_DATA = "data.json"
REPORT_ANNOTATIONS = "annotations.json"


class ReportCheckpoint(_Artifact):
    """One of the report's checkpoints (the crosscoder's revisions, in order)."""

    revision: str
    step: int | None
    tokens: int | None = Field(description="tokens seen")
    label: str = Field(description="tokens seen as text; the revision where two checkpoints would share a label")


class ReportCrosscoder(_Artifact):
    """The crosscoder the evidence was gathered with."""

    config: dict[str, Any] = Field(description="its CrosscoderConfig")
    inference_rule: str = Field(description="how it decided which features fire (Crosscoder.inference_rule)")
    inference_depends_on_batch: bool = Field(description="a token's features depend on the other tokens of its batch")
    settings: list[dict[str, Any]] = Field(default_factory=list, description="the settings that apply to its variant "
                                           "(crosstime.report.dashboard.crosscoder_settings): label, name, "
                                           "description, group, value")


class ReportData(_Artifact):
    """``report/data.json``: everything the dashboard shows (embedded in index.html; re-rendered by
    ``crosstime annotate --import``). The per-feature entries are documented in crosstime.report.stage."""

    title: str
    generated: str
    run: str
    checkpoints: list[ReportCheckpoint]
    tasks: list[str] = Field(description="tasks with an attribution")
    main_task: str | None = Field(description="the task with the largest total |IE| over the reported features")
    missing: list[str] = Field(description="stages and inputs the run lacks, each with what it costs the report")
    overview: dict[str, Any]
    crosscoder: ReportCrosscoder | None
    features: list[dict[str, Any]] = Field(description="the reported features, best first")
    n_features_total: int | None = Field(description="F of the crosscoder (None without one)")
    views: list[str] = Field(description="evidence views: 'all' (joint), then each checkpoint alone")
    vocab: dict[str, str] = Field(description="token id -> text; empty when tokens are shown as ids")
    evidence_meta: dict[str, Any] | None
    findings: list[str]


class Annotations(_Artifact):
    """``report/annotations.json``: human descriptions of features (``crosstime annotate --import``)."""

    source: str = Field(description="the CSV file last imported")
    features: dict[int, dict[str, str]] = Field(description="feature id -> {description, extra columns}")


def read_json(path: Path) -> Any:
    """A plain JSON file (no schema of ours); a malformed one names itself."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path} is not valid JSON ({err}); re-run the stage that wrote it") from err
