"""Settings of the scan stage (shared by ``crosstime scan`` and :func:`crosstime.scan.scan`), and its error."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from crosstime.errors import CrosstimeError
from crosstime.stage import DEVICE_HELP, Count, Device, StageConfig


class ScanError(CrosstimeError):
    """A scan that cannot run as configured."""


class ScanConfig(StageConfig):
    """Settings of the scan stage: RUN/scan/ (shared by ``crosstime scan`` and :func:`crosstime.scan.scan`)."""

    stage: ClassVar[str] = "scan"
    execution: ClassVar[frozenset[str]] = frozenset({"batch_size", "device", "threads"})

    series: str = Field(description="checkpoint series: a local series folder or a hub id")
    layer: int = Field(description="site for similarity: the output of decoder block L (= hidden_states[L+1])")
    tasks: list[str] | None = Field(
        None, description="task names or .jsonl paths (default: the tasks in the series folder's pairs/, "
        "else subjectverb)")
    revisions: list[str] | None = Field(None, description="scan only these revisions (default: all)")
    batch_size: int = Field(64, gt=0, description="sequences per forward pass")
    sentence_metric: bool = Field(True, description="also the whole-sentence log-likelihood accuracy")
    similarity_source: Literal["tasks", "corpus"] = Field(
        "tasks", description="token set whose site activations are compared across checkpoints: task sentences or "
        "held-out corpus documents")
    similarity_tokens: Count = Field(2048, ge=0, description="token positions compared across checkpoints (0: none)")
    corpus: Path | None = Field(
        None, description="held-out text, one document per line (default: the series folder's corpus/heldout.txt)")
    train_corpus: Path | None = Field(
        None, description="training text for n-gram statistics (default: the series folder's corpus/train.txt)")
    corpus_sequences: int = Field(256, gt=0, description="held-out documents for loss and KL")
    max_length: int = Field(128, ge=2, description="tokens per held-out document (truncated)")
    ngram_tokens: Count = Field(500_000, gt=0, description="training tokens used to estimate unigram/bigram statistics")
    n_suggest: int = Field(3, ge=1, description="checkpoints to suggest for a crosscoder")
    min_jump: float = Field(0.1, gt=0, le=1, description="smallest fitted accuracy rise counted as a jump")
    phase_accuracy: float = Field(0.9, gt=0, le=1, description="scan/phases.json: a task is learned from the first "
                                                              "checkpoint whose accuracy stays at or above this")
    ngram_fraction: float = Field(0.9, gt=0, le=1, description="scan/phases.json: the n-gram statistics have "
                                                              "converged where KL(model ‖ bigram) has come this "
                                                              "share of the way down to its minimum")
    model_dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="dtype the models run in")
    device: Device = Field("auto", description=DEVICE_HELP)
    threads: int | None = Field(
        None, gt=0, description="torch CPU threads during the scan (default: every core on the command line; called "
        "from Python, 1 for small models, d_model < 512, on the CPU, else torch's own)")
    seed: int = Field(0, description="seed of the held-out document sample, the similarity token order and the phases' bootstrap")
