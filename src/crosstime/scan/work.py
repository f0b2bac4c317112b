"""The scan stage's work (declared in :mod:`crosstime.stages.scan`): sweep every checkpoint of a series once to find where things change.

For each checkpoint (loaded once; everything for it done in one pass) the scan measures

1. **task accuracy** for every task (:mod:`crosstime.tasks`): pair metric
   ``m = log p(wrong) − log p(correct)``, accuracy = share with ``m < 0``, and optionally the
   lm-eval-harness whole-sentence comparison;
2. **site activations** at block ``layer`` on one fixed token set (task sentences or a corpus
   sample; position 0 and padding excluded), from which, after the sweep, per-token
   **cosine similarity** (mean over tokens) and **linear CKA** between every pair of
   checkpoints are computed (:mod:`crosstime.scan.similarity`);
3. **training dynamics**: held-out next-token loss on a corpus sample and the KL divergence
   from the model's next-token distribution to the corpus unigram and bigram
   (previous-token conditional) distributions, estimated from a training-corpus sample
   (:mod:`crosstime.scan.dynamics`).

Then it suggests checkpoints for a crosscoder (:func:`crosstime.scan.suggest.suggest_checkpoints`)
and writes ``RUN/scan/`` (names and columns: the ``scan/`` section of :mod:`crosstime.artifacts`):
``accuracy.csv`` (:data:`~crosstime.artifacts.SCAN_ACCURACY`), ``dynamics.csv``
(:data:`~crosstime.artifacts.SCAN_DYNAMICS`, when both corpora are there), ``similarity.npz``
(:data:`~crosstime.artifacts.SIMILARITY_ARRAYS`), ``tasks.json`` (each task's pairs kept and
dropped), ``fingerprints.json`` (each checkpoint's weight fingerprint; identical ones are warned
about: :class:`~crosstime.artifacts.Fingerprints`), the figures ``accuracy.png``, ``cosine.png``,
``cka.png``, ``dynamics.png``, and last
``suggestion.json`` (:class:`~crosstime.artifacts.Suggestion`). A file of an earlier scan that
this one does not write (dynamics without corpora, similarity figures without tokens) is
removed, so the folder never mixes two scans. The settings are recorded in ``RUN/config.yaml``
after success (:mod:`crosstime.stage`)::

    from crosstime.stages.scan import ScanConfig, scan   # the stage, declared
    result = scan(ScanConfig(run="runs/toy", series="path/to/toy", tasks=["toy"], layer=1))
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crosstime.artifacts import (
    SCAN_ACCURACY,
    SCAN_DYNAMICS,
    SCAN_FIGURES,
    SCAN_FINGERPRINTS,
    SCAN_PHASES,
    SCAN_SIMILARITY,
    SCAN_SUGGESTION,
    SCAN_TASKS,
    SIMILARITY_MATRICES,
    Fingerprints,
    Suggestion,
    write_model,
)
from crosstime.files import write_bytes, write_json
from crosstime.progress import Bar
from crosstime.scan.config import ScanConfig
from crosstime.scan.dynamics import next_token_dynamics
from crosstime.scan.inputs import ScanInputs
from crosstime.scan.phases import read_phases
from crosstime.scan.plots import (
    accuracy_title,
    plot_accuracy,
    plot_dynamics,
    plot_similarity,
    tick_labels,
)
from crosstime.scan.similarity import cosine_matrix, linear_cka_matrix, site_tokens
from crosstime.scan.suggest import suggest_checkpoints
from crosstime.series import Checkpoint
from crosstime.sites import weights_fingerprint
from crosstime.tasks import evaluate_task


@dataclass
class ScanResult:
    """What :func:`scan` produced (also written to ``RUN/scan/``)."""

    out: Path  # RUN/scan
    checkpoints: list[Checkpoint]
    accuracy: list[dict]  # rows of SCAN_ACCURACY, one per checkpoint and task
    cosine: np.ndarray  # [M, M]
    cka: np.ndarray  # [M, M]
    dynamics: list[dict]  # rows of SCAN_DYNAMICS, one per checkpoint (empty without corpora)
    suggestion: Suggestion
    tasks: dict[str, dict] = field(default_factory=dict)  # task name -> Task.summary()
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what was skipped and why


# -- the sweep ---------------------------------------------------------------------------------


@dataclass
class Sweep:
    """What the sweep measured: table rows and, per checkpoint, site activations ``[N, d]``."""

    accuracy: list[dict] = field(default_factory=list)
    dynamics: list[dict] = field(default_factory=list)
    acts: list[torch.Tensor] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)  # revision -> sites.weights_fingerprint
    correct: dict[str, list[np.ndarray]] = field(default_factory=dict)  # task -> per checkpoint [n] pair right

    def correct_pairs(self) -> dict[str, np.ndarray]:
        """Per task ``[M, n]``: whether each pair was right at each checkpoint (the phases' bootstrap)."""
        return {task: np.stack(rows) for task, rows in self.correct.items()}


def _measure(model, ckpt: Checkpoint, config: ScanConfig, inputs: ScanInputs, sweep: Sweep) -> None:
    """Everything for one loaded checkpoint: every task, the site activations, the dynamics."""
    base = {"revision": ckpt.revision, "step": ckpt.step, "tokens": ckpt.tokens}
    sweep.fingerprints[ckpt.revision] = weights_fingerprint(model)
    for task in inputs.tasks:
        res = evaluate_task(model, task, config.batch_size, sentence=config.sentence_metric)
        sweep.accuracy.append(base | res.as_row())
        sweep.correct.setdefault(task.name, []).append((res.m < 0).numpy())
    if inputs.sim_seqs:
        sweep.acts.append(site_tokens(model, inputs.sim_seqs, config.layer, config.similarity_tokens, config.batch_size))
    if inputs.ngram is not None:
        sweep.dynamics.append(base | next_token_dynamics(model, inputs.heldout_seqs, inputs.ngram, config.batch_size))


def _sweep(config: ScanConfig, inputs: ScanInputs) -> Sweep:
    """Load each checkpoint once and do everything for it: tasks, site activations, dynamics."""
    from transformers.utils import (
        logging as hf_logging,  # lazy: start-up time (transformers takes seconds to import; the CLI does not load it to start)
    )

    sweep = Sweep()
    hf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one bar across checkpoints, not one per weight load
    try:
        bar = Bar(inputs.checkpoints, desc="scan", unit="ckpt", disable=not config.progress)
        for ckpt in bar:
            bar.set_postfix_str(ckpt.revision)
            model = inputs.series.load_model(ckpt.revision, dtype=config.model_dtype, device=inputs.device)
            _measure(model, ckpt, config, inputs, sweep)
            del model
    finally:
        if hf_bars:
            hf_logging.enable_progress_bar()
    return sweep


def _threads(config: ScanConfig, inputs: ScanInputs) -> int | None:
    """Torch CPU threads for the sweep: the setting, else 1 for a small model on the CPU, else unchanged."""
    if config.threads is None and inputs.device.type == "cpu" and inputs.d_model is not None and inputs.d_model < 512:
        return 1  # ops this small gain nothing from threads and lose a lot on a busy machine
    return config.threads


def run_sweep(config: ScanConfig, inputs: ScanInputs) -> Sweep:
    """:func:`_sweep` under the scan's torch seed and thread count (restored afterwards)."""
    torch.manual_seed(config.seed)
    threads = torch.get_num_threads()
    want = _threads(config, inputs)
    if want:
        torch.set_num_threads(want)
    try:
        return _sweep(config, inputs)
    finally:
        torch.set_num_threads(threads)


# -- after the sweep ---------------------------------------------------------------------------


def similarity(acts: list[torch.Tensor], M: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``cosine [M, M]``, ``cka [M, M]`` and the token count N from per-checkpoint ``acts`` ([N, d] each);
    all-NaN matrices and N = 0 when no tokens were compared."""
    if not acts:
        empty = np.full((M, M), np.nan)
        return empty, empty, 0
    stacked = torch.stack(acts)  # [M, N, d]
    return cosine_matrix(stacked), linear_cka_matrix(stacked), stacked.shape[1]


def _task_curves(rows: list[dict], inputs: ScanInputs, column: str) -> dict[str, list]:
    """Task name -> ``column`` per checkpoint, in checkpoint order."""
    return {t.name: [r[column] for r in rows if r["task"] == t.name] for t in inputs.tasks}


def make_suggestion(config: ScanConfig, inputs: ScanInputs, sweep: Sweep, cka: np.ndarray) -> Suggestion:
    """:func:`suggest_checkpoints` on the per-task accuracy curves and CKA, with the scan's series, layer and tasks."""
    curves = _task_curves(sweep.accuracy, inputs, "accuracy")
    picks = suggest_checkpoints(inputs.checkpoints, curves, cka if sweep.acts else None, config.n_suggest,
                                config.min_jump)
    return Suggestion(**picks, series=inputs.series.source, layer=config.layer, tasks=inputs.task_names)


def _similarity_npz(inputs: ScanInputs, labels: list[str], cos: np.ndarray, cka: np.ndarray, layer: int,
                    n_tokens: int) -> bytes:
    """The bytes of ``similarity.npz`` (arrays: :data:`crosstime.artifacts.SIMILARITY_ARRAYS`)."""
    ckpts = inputs.checkpoints
    buf = io.BytesIO()
    np.savez(buf, revisions=np.array([c.revision for c in ckpts]),
             steps=np.array([c.step if c.step is not None else -1 for c in ckpts], dtype=np.int64),
             tokens=np.array([c.tokens if c.tokens is not None else -1 for c in ckpts], dtype=np.int64),
             labels=np.array(labels), cosine=cos, cka=cka, layer=layer, n_tokens=n_tokens)
    return buf.getvalue()


def _plot_axis(ckpts: list[Checkpoint]) -> list[int]:
    """x of the figures: tokens seen; without token counts, steps (or the checkpoint order)."""
    tokens = [c.tokens for c in ckpts]
    if any(t is None for t in tokens):
        return [c.step if c.step is not None else i for i, c in enumerate(ckpts)]
    return tokens


def _plot(folder: Path, config: ScanConfig, inputs: ScanInputs, sweep: Sweep, suggestion: Suggestion,
          matrices: dict[str, np.ndarray], labels: list[str], n_tokens: int) -> list[str]:
    """The figures (``labels``: the checkpoints' axis labels); returns the file names written."""

    ckpts = inputs.checkpoints
    x = _plot_axis(ckpts)
    at = {c.revision: x[i] for i, c in enumerate(ckpts)}
    marks = [(at[p.revision], f"{p.role}: {p.label}") for p in suggestion.checkpoints]
    title = accuracy_title(inputs.series.source, inputs.series.family, config.layer)
    sentence = _task_curves(sweep.accuracy, inputs, "sentence_accuracy") if config.sentence_metric else None
    plot_accuracy(x, _task_curves(sweep.accuracy, inputs, "accuracy"), folder / SCAN_FIGURES["accuracy"], marks,
                  title=title, sentence_curves=sentence)
    written = [SCAN_FIGURES["accuracy"]]
    titles = {"cosine": "Mean per-token cosine", "cka": "Linear CKA"}
    for name in SIMILARITY_MATRICES if sweep.acts else ():
        plot_similarity(matrices[name], labels, folder / SCAN_FIGURES[name],
                        f"{titles[name]}, block {config.layer} ({n_tokens} tokens)")
        written.append(SCAN_FIGURES[name])
    if sweep.dynamics:
        dyn = sweep.dynamics
        mean_acc = [float(np.mean([r["accuracy"] for r in sweep.accuracy if r["revision"] == c.revision])) for c in ckpts]
        plot_dynamics(x, [r["loss"] for r in dyn], [r["kl_unigram"] for r in dyn], [r["kl_bigram"] for r in dyn],
                      folder / SCAN_FIGURES["dynamics"], accuracy=mean_acc, unigram_loss=dyn[0]["unigram_loss"],
                      bigram_loss=dyn[0]["bigram_loss"])
        written.append(SCAN_FIGURES["dynamics"])
    return written


def _remove_stale(folder: Path, written: list[str]) -> None:
    """Delete the scan files an earlier scan wrote and this one did not (e.g. dynamics without corpora)."""
    every = [SCAN_ACCURACY.file, SCAN_DYNAMICS.file, SCAN_SIMILARITY, SCAN_SUGGESTION, SCAN_TASKS, SCAN_PHASES,
             *SCAN_FIGURES.values()]
    for name in every:
        if name not in written:
            (folder / name).unlink(missing_ok=True)


def write_outputs(config: ScanConfig, inputs: ScanInputs, sweep: Sweep, suggestion: Suggestion,
                  matrices: dict[str, np.ndarray], n_tokens: int) -> None:
    """Every file of ``RUN/scan/``; ``suggestion.json`` (the stage's output marker) last."""

    folder = config.rundir.scan
    revisions = [c.revision for c in inputs.checkpoints]
    SCAN_ACCURACY.write(folder, sweep.accuracy, revisions)
    written = [SCAN_ACCURACY.file]
    if sweep.dynamics:
        SCAN_DYNAMICS.write(folder, sweep.dynamics, revisions)
        written.append(SCAN_DYNAMICS.file)
    labels = tick_labels([c.tokens for c in inputs.checkpoints], revisions)
    write_bytes(folder / SCAN_SIMILARITY, _similarity_npz(inputs, labels, matrices["cosine"], matrices["cka"],
                                                          config.layer, n_tokens))
    write_json(folder / SCAN_TASKS, {t.name: t.summary() for t in inputs.tasks})
    written += [SCAN_SIMILARITY, SCAN_TASKS]
    written += _plot(folder, config, inputs, sweep, suggestion, matrices, labels, n_tokens)
    write_model(identical_weights(sweep.fingerprints), folder / SCAN_FINGERPRINTS)
    written.append(SCAN_FINGERPRINTS)
    write_model(read_phases(sweep.accuracy, sweep.dynamics, accuracy=config.phase_accuracy,
                            ngram_fraction=config.ngram_fraction, correct=sweep.correct_pairs(),
                            seed=config.seed), folder / SCAN_PHASES)
    written.append(SCAN_PHASES)
    write_model(suggestion, folder / SCAN_SUGGESTION)
    _remove_stale(folder, [*written, SCAN_SUGGESTION])


def identical_weights(fingerprints: dict[str, str]) -> Fingerprints:
    """The fingerprints and the groups of revisions that share one; each group is warned about:
    a series that serves one checkpoint's weights under two names (reported of Pythia's branches)
    would make the scan's curves flat there and a crosscoder compare a checkpoint with itself."""
    groups: dict[str, list[str]] = {}
    for rev, fp in fingerprints.items():
        groups.setdefault(fp, []).append(rev)
    identical = [revs for revs in groups.values() if len(revs) > 1]
    for revs in identical:
        warnings.warn(f"checkpoints {', '.join(revs)} have identical weights (fingerprint "
                      f"{fingerprints[revs[0]]}): the series may serve one checkpoint's weights under several names",
                      stacklevel=2)
    return Fingerprints(revisions=fingerprints, identical=identical)


def _notes(sweep: Sweep, inputs: ScanInputs) -> list[str]:
    """What the scan skipped or dropped, and why (printed with the summary)."""
    notes = []
    if not sweep.dynamics:
        notes.append("training dynamics skipped: needs a held-out corpus (--corpus) and a training corpus "
                     "(--train-corpus); a series folder with corpus/heldout.txt and corpus/train.txt provides both")
    for t in inputs.tasks:
        for s in t.stats:
            if s.dropped:
                notes.append(f"{s.source}: kept {s.kept}/{s.total} pairs, dropped "
                             + ", ".join(f"{v} ({k})" for k, v in s.dropped.items()))
    return notes


def work(config: ScanConfig, inputs: ScanInputs, started: float) -> ScanResult:
    """The stage's work, inside the run's lock (:mod:`crosstime.stages.scan` checks the inputs first):
    the sweep, similarity, the suggestion and every file written."""
    sweep = run_sweep(config, inputs)
    cos, cka, n_tokens = similarity(sweep.acts, len(inputs.checkpoints))
    matrices = {"cosine": cos, "cka": cka}
    suggestion = make_suggestion(config, inputs, sweep, cka)
    write_outputs(config, inputs, sweep, suggestion, matrices, n_tokens)
    return ScanResult(config.rundir.scan, inputs.checkpoints, sweep.accuracy, cos, cka, sweep.dynamics, suggestion,
                      {t.name: t.summary() for t in inputs.tasks}, time.perf_counter() - started,
                      _notes(sweep, inputs))
