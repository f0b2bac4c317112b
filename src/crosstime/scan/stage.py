"""The scan stage: sweep every checkpoint of a series once to find where things change.

For each checkpoint (loaded once; everything for it done in one pass) the scan measures

1. **task accuracy** for every task (:mod:`crosstime.tasks`): pair metric
   ``m = log p(wrong) − log p(correct)``, accuracy = share with ``m < 0``, and optionally the
   lm-eval-harness whole-sentence comparison;
2. **site activations** at block ``layer`` on one fixed token set (task sentences or a corpus
   sample; position 0 and padding excluded), from which, after the sweep, per-token
   **cosine similarity** (mean over tokens) and **linear CKA** between every pair of
   checkpoints are computed;
3. **training dynamics**: held-out next-token loss on a corpus sample and the KL divergence
   from the model's next-token distribution to the corpus unigram and bigram
   (previous-token conditional) distributions, estimated from a training-corpus sample.

Then it suggests checkpoints for a crosscoder (:func:`suggest_checkpoints`) and writes
``RUN/scan/``: ``accuracy.csv``, ``similarity.npz``, ``dynamics.csv``, ``suggestion.json``,
``accuracy.png``, ``cosine.png``, ``cka.png``, ``dynamics.png``, ``tasks.json``.

    from crosstime.scan import ScanConfig, scan
    result = scan(ScanConfig(series="path/to/toy", tasks=["toy"], layer=1, out="runs/toy"))
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from crosstime.files import write_json, write_text
from crosstime.series import Checkpoint, CheckpointSeries, SeriesError, open_series
from crosstime.tasks import Task, evaluate_task, expand_task_names, load_task, special_prefix

# -- configuration ---------------------------------------------------------------------------


class ScanError(ValueError):
    """A scan that cannot run as configured."""


class ScanConfig(BaseModel):
    """Settings of the scan stage (shared by ``crosstime scan`` and :func:`scan`)."""

    series: str = Field(description="local series folder or hub id")
    out: Path = Field(description="run directory; results go to OUT/scan/")
    layer: int = Field(description="decoder block whose output is the site for similarity")
    tasks: list[str] | None = Field(
        default=None, description="task names or .jsonl paths; default: the toy tasks for a series with pairs/, else subjectverb")
    revisions: list[str] | None = Field(default=None, description="scan only these revisions (default: all)")
    batch_size: int = 64
    sentence_metric: bool = Field(default=True, description="also the whole-sentence log-likelihood accuracy")
    similarity_source: Literal["tasks", "corpus"] = "tasks"
    similarity_tokens: int = Field(default=2048, description="token positions compared across checkpoints")
    corpus: Path | None = Field(default=None, description="held-out text (one document per line); default <series>/corpus/heldout.txt")
    train_corpus: Path | None = Field(default=None, description="training text for n-gram statistics; default <series>/corpus/train.txt")
    corpus_sequences: int = Field(default=256, description="held-out documents for loss and KL")
    max_length: int = Field(default=128, description="tokens per held-out document (truncated)")
    ngram_tokens: int = Field(default=500_000, description="training tokens used to estimate unigram/bigram statistics")
    n_suggest: int = Field(default=3, ge=1)
    min_jump: float = Field(default=0.1, description="smallest accuracy rise counted as a jump")
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = Field(
        default=None, description="torch CPU threads during the scan; default: 1 for small models (d_model < 512) "
        "on CPU, whose ops are too small to gain from threads but lose a lot on a busy machine; else torch's own")
    seed: int = 0
    progress: bool = True


# -- similarity ------------------------------------------------------------------------------


def cosine_matrix(acts: torch.Tensor) -> np.ndarray:
    """Mean per-token cosine similarity between checkpoints.

    acts: [M, N, d], the same N token positions in M checkpoints.
    Returns [M, M] with entry (a, b) = mean_t cos(acts[a, t], acts[b, t]).
    """
    unit = torch.nn.functional.normalize(acts.float(), dim=-1)
    m, n, _ = unit.shape
    out = torch.einsum("and,bnd->ab", unit, unit) / n
    return out.double().numpy()


def linear_cka_matrix(acts: torch.Tensor) -> np.ndarray:
    """Linear CKA (Kornblith et al., 2019) between checkpoints on the same positions.

    acts: [M, N, d]. CKA(X, Y) = ‖XᶜᵀYᶜ‖²_F / (‖XᶜᵀXᶜ‖_F ‖YᶜᵀYᶜ‖_F), with Xᶜ the
    column-centred X. With d ≤ N the d × d cross-products are formed pair by pair (N d² each);
    with N < d the centred Gram matrices K = XᶜXᶜᵀ [N, N] are, since ‖XᶜᵀYᶜ‖²_F = ⟨K_X, K_Y⟩.
    Float64. Returns [M, M].
    """
    x = acts.double()
    x = x - x.mean(dim=1, keepdim=True)
    m, n, d = x.shape
    if d <= n:
        inner = torch.empty(m, m, dtype=torch.float64)
        for i in range(m):
            for j in range(i, m):
                inner[i, j] = inner[j, i] = (x[i].T @ x[j]).square().sum()
    else:
        grams = (x @ x.transpose(1, 2)).reshape(m, -1)  # [M, N*N]
        inner = grams @ grams.T
    norms = inner.diagonal().sqrt()
    cka = inner / (norms[:, None] * norms[None, :]).clamp_min(1e-300)
    return cka.numpy()


# -- n-gram statistics and dynamics ----------------------------------------------------------


@dataclass
class NgramModel:
    """Corpus unigram and bigram next-token distributions over a vocabulary of size V.

    unigram: P(w) = (c(w) + α) / (N + αV)                (add-α, α = ``alpha``)
    bigram:  P(w | v) = (c(v, w) + β P(w)) / (c(v) + β)   (Dirichlet smoothing toward the unigram)

    Bigram rows are never materialised ([V, V] is 2.5e9 entries for Pythia): for each previous
    token v only its observed successors are stored, as log(c(v,w) + βP(w)) − log(βP(w)).
    """

    log_unigram: torch.Tensor  # [V]
    successors: dict[int, tuple[torch.Tensor, torch.Tensor]]  # v -> (w ids [k], log ratio [k])
    prev_counts: torch.Tensor  # [V] c(v) as a previous token
    beta: float

    @classmethod
    def fit(cls, seqs: Sequence[Sequence[int]], vocab_size: int, alpha: float = 0.1, beta: float = 1.0) -> NgramModel:
        seqs = [np.asarray(s, dtype=np.int64) for s in seqs if len(s)]
        flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        uni = torch.from_numpy(np.bincount(flat, minlength=vocab_size)[:vocab_size].astype(np.float64))
        log_p = ((uni + alpha) / (uni.sum() + alpha * vocab_size)).log()
        prev_ids = np.concatenate([s[:-1] for s in seqs]) if seqs else flat
        next_ids = np.concatenate([s[1:] for s in seqs]) if seqs else flat
        keys, counts = np.unique(prev_ids * vocab_size + next_ids, return_counts=True)
        prev_counts = torch.from_numpy(np.bincount(prev_ids, minlength=vocab_size)[:vocab_size].astype(np.float64))
        successors = {}
        vs, ws = keys // vocab_size, keys % vocab_size
        bounds = np.flatnonzero(np.diff(vs)) + 1
        for v_run, w_run, c_run in zip(np.split(vs, bounds), np.split(ws, bounds), np.split(counts, bounds)):
            if len(v_run):
                w = torch.from_numpy(w_run)
                prior = beta * log_p[w].exp()
                successors[int(v_run[0])] = (w, (torch.from_numpy(c_run.astype(np.float64)) + prior).log() - prior.log())
        return cls(log_p, successors, prev_counts, beta)

    def log_norm(self, prev_ids: torch.Tensor) -> torch.Tensor:
        return (self.prev_counts[prev_ids] + self.beta).log()

    def log_bigram(self, prev_ids: torch.Tensor) -> torch.Tensor:
        """Dense log P(· | v) for each previous token: [n] → [n, V] (small vocabularies and tests)."""
        rows = (math.log(self.beta) + self.log_unigram).repeat(len(prev_ids), 1)
        for r, v in enumerate(prev_ids.tolist()):
            if v in self.successors:
                w, ratio = self.successors[v]
                rows[r, w] += ratio
        return rows - self.log_norm(prev_ids)[:, None]

    def expected_log_bigram(self, probs: torch.Tensor, prev_ids: torch.Tensor) -> torch.Tensor:
        """Σ_w probs[i, w] log P(w | prev_ids[i]): [n, V], [n] → [n], without dense bigram rows."""
        vocab = probs.shape[-1]
        base = probs @ (math.log(self.beta) + self.log_unigram[:vocab])
        corr = torch.zeros_like(base)
        for v in prev_ids.unique().tolist():
            if v not in self.successors:
                continue
            w, ratio = self.successors[v]
            keep = w < vocab
            rows = (prev_ids == v).nonzero().squeeze(-1)
            corr[rows] = probs[rows][:, w[keep]] @ ratio[keep]
        return base + corr - self.log_norm(prev_ids)

    def bigram_logprob(self, prev_ids: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
        """log P(next | prev) per position: [n], [n] → [n]."""
        out = math.log(self.beta) + self.log_unigram[next_ids] - self.log_norm(prev_ids)
        for i, (v, t) in enumerate(zip(prev_ids.tolist(), next_ids.tolist())):
            if v in self.successors:
                w, ratio = self.successors[v]
                hit = (w == t).nonzero()
                if len(hit):
                    out[i] += ratio[hit[0, 0]]
        return out


@torch.no_grad()
def next_token_dynamics(model, seqs: Sequence[Sequence[int]], ngram: NgramModel, batch_size: int = 32) -> dict:
    """Held-out loss and KL(model ‖ unigram), KL(model ‖ bigram), each a mean over predicted tokens.

    Every position t < len−1 of every sequence predicts token t+1; the bigram conditions on
    token t. KL(p ‖ q) = Σ_w p(w) (log p(w) − log q(w)) with p the model's next-token
    distribution. Also returns the corpus unigram / bigram losses on the same targets (the
    n-gram floors the model's loss passes through in its statistical-learning phase).
    """
    from crosstime.tasks import forward_logits

    totals = {"loss": 0.0, "kl_unigram": 0.0, "kl_bigram": 0.0, "unigram_loss": 0.0, "bigram_loss": 0.0}
    count = 0
    for start in range(0, len(seqs), batch_size):
        chunk = [s for s in seqs[start:start + batch_size] if len(s) >= 2]
        if not chunk:
            continue
        width = max(len(s) for s in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(chunk):  # right padding: real positions are 0..len-1 as in training
            ids[r, :len(s)] = torch.as_tensor(list(s))
            mask[r, :len(s)] = 1
        logits = forward_logits(model, ids, mask).cpu()
        sel = (mask[:, 1:] * mask[:, :-1]).bool()
        logp = logits[:, :-1][sel].double().log_softmax(-1)  # [n, V_model]
        vocab = min(logp.shape[-1], ngram.log_unigram.shape[0])
        target, prev = ids[:, 1:][sel], ids[:, :-1][sel]
        p = logp.exp()
        neg_entropy = (p * logp).sum(-1)
        totals["loss"] += float(-logp.gather(-1, target[:, None]).sum())
        totals["kl_unigram"] += float((neg_entropy - p[:, :vocab] @ ngram.log_unigram[:vocab]).sum())
        totals["kl_bigram"] += float((neg_entropy - ngram.expected_log_bigram(p[:, :vocab], prev)).sum())
        totals["unigram_loss"] += float(-ngram.log_unigram[target].sum())
        totals["bigram_loss"] += float(-ngram.bigram_logprob(prev, target).sum())
        count += len(target)
    if count == 0:
        raise ScanError("the held-out corpus sample has no sequence of two or more tokens")
    return {k: v / count for k, v in totals.items()} | {"n_tokens": count}


# -- checkpoint suggestion ---------------------------------------------------------------------


def fit_ramp(x: Sequence[float], y: Sequence[float]) -> dict | None:
    """Least-squares flat–ramp–flat fit of ``y`` over ``x``: low until x[a], linear to x[b], high after.

    Tries every pair a < b of points as ramp ends; for each, ``lo`` and ``hi`` are the least-squares
    levels. Returns the best rising fit {a, b, lo, hi, sse} (ties: the narrower ramp), or None.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    best = None
    for a in range(len(x) - 1):
        for b in range(a + 1, len(x)):
            f = np.clip((x - x[a]) / max(x[b] - x[a], 1e-12), 0.0, 1.0)
            design = np.stack([1 - f, f], axis=1)
            (lo, hi), *_ = np.linalg.lstsq(design, y, rcond=None)
            if hi <= lo:
                continue
            sse = float(((design @ [lo, hi] - y) ** 2).sum())
            key = (round(sse, 9), b - a)
            if best is None or key < best["key"]:
                best = {"a": a, "b": b, "lo": float(lo), "hi": float(hi), "sse": sse, "key": key}
    if best is not None:
        best.pop("key")
    return best


def cka_blocks(sim: np.ndarray, max_blocks: int = 4, keep: float = 0.3) -> list[list[int]]:
    """Split the ordered checkpoints into contiguous blocks of mutually similar representations.

    Exact dynamic programming over split points minimising Σ_blocks Σ_{i,j in block} (1 − sim)
    / |block|; the number of blocks is the smallest k whose cost is at most ``keep`` × the
    one-block cost (or ``max_blocks``).
    """
    n = len(sim)
    dis = 1.0 - np.asarray(sim, float)

    def cost(i: int, j: int) -> float:  # block i..j-1
        return float(dis[i:j, i:j].sum()) / (j - i)

    total = cost(0, n)
    best_split: list[list[int]] = [list(range(n))]
    table = {(0, j): (cost(0, j), [0]) for j in range(1, n + 1)}
    for k in range(2, min(max_blocks, n) + 1):
        new = {}
        for j in range(k, n + 1):
            options = [(table[(0, i)][0] + cost(i, j), table[(0, i)][1] + [i]) for i in range(k - 1, j) if (0, i) in table]
            new[(0, j)] = min(options, key=lambda o: o[0])
        table = new
        value, starts = table[(0, n)]
        best_split = [list(range(s, e)) for s, e in zip(starts, starts[1:] + [n])]
        if total <= 1e-12 or value <= keep * total:
            break
    return best_split


SUGGESTION_METHOD = (
    "Accuracy jump: each task's accuracy against log tokens is fitted by least squares with a flat-ramp-flat "
    "curve (low level, linear rise between two checkpoints, high level); tasks whose fitted rise is at least "
    "min_jump have a jump. 'before' = the earliest ramp start over those tasks (no task has started rising), "
    "'after' = the latest ramp end (every task has finished rising). Late: among checkpoints after 'after', the "
    "first whose CKA distance (1 - CKA) from 'after' reaches 90% of the largest such distance, i.e. where "
    "representations have moved on once accuracy has settled. Further picks (n > 3) are farthest-point choices "
    "in CKA distance. Without any jump, picks span representation change (farthest points in CKA distance, "
    "starting from the last checkpoint)."
)


def suggest_checkpoints(
    checkpoints: Sequence[Checkpoint],
    accuracy: Sequence[float] | dict[str, Sequence[float]] | None,
    cka: np.ndarray | None,
    n: int = 3,
    min_jump: float = 0.1,
) -> dict:
    """Suggest ``n`` checkpoints for a crosscoder: before the accuracy jump, after it, and late.

    ``accuracy`` is one curve or a dict task → curve (one value per checkpoint, in order);
    ``cka`` the [M, M] linear-CKA matrix. Method (also :data:`SUGGESTION_METHOD`):

    1. x = log10 tokens (step 0 at half the smallest positive count). For each task,
       :func:`fit_ramp` finds the best flat–ramp–flat curve; a fitted rise ≥ ``min_jump`` is a
       jump. *before* = the earliest ramp start over tasks with a jump (the last checkpoint
       where no task has started to rise: a per-task choice, so one task dipping below
       chance while another rises cannot hide the onset in a mean), *after* = the latest
       ramp end (every task on its high plateau).
    2. *late*: d(c) = 1 − CKA(after, c) for checkpoints c after *after*; the first c with
       d(c) ≥ 0.9 · max d — representations have (mostly) finished moving on there. If they
       barely move (max d < 0.01), the last checkpoint, with the reason saying so.
    3. n > 3: add the checkpoint farthest (in 1 − CKA) from all chosen ones, repeatedly.
       n = 2: before, after; n = 1: after. Without any jump: the last checkpoint, then
       farthest points.

    Returns {"method", "jump", "blocks" (contiguous CKA blocks, :func:`cka_blocks`),
    "checkpoints": [{revision, step, tokens, label, role, reason, numbers}], "revisions"},
    checkpoints ordered by tokens.
    """
    ckpts = list(checkpoints)
    count = len(ckpts)
    tokens = [c.tokens for c in ckpts]
    positive = [t for t in tokens if t]
    floor = min(positive) / 2 if positive else 1.0
    x = np.log10([t if t else floor for t in tokens]) if positive and None not in tokens else np.arange(count, dtype=float)
    curves = {} if accuracy is None else (
        {k: np.asarray(v, float) for k, v in accuracy.items()} if isinstance(accuracy, dict)
        else {"accuracy": np.asarray(accuracy, float)})
    mean = np.mean(list(curves.values()), axis=0) if curves else None
    dist = None if cka is None else 1.0 - np.asarray(cka, float)
    blocks = cka_blocks(cka) if cka is not None and count > 1 else [list(range(count))]
    block_of = {i: bi for bi, block in enumerate(blocks) for i in block}

    def entry(i: int, role: str, reason: str, numbers: dict) -> dict:
        c = ckpts[i]
        return {"revision": c.revision, "step": c.step, "tokens": c.tokens, "label": c.label, "role": role,
                "reason": reason, "numbers": numbers}

    def acc_numbers(i: int) -> dict:
        if mean is None:
            return {}
        out = {"accuracy": float(mean[i])}
        if len(curves) > 1:
            out["task_accuracy"] = {k: float(v[i]) for k, v in curves.items()}
        return out

    def acc_text(i: int) -> str:
        return "" if mean is None else f"mean accuracy {mean[i]:.2f}"

    def level(v: float) -> float:  # fitted plateaus can overshoot [0, 1] slightly
        return float(min(max(v, 0.0), 1.0))

    ramps = {k: fit_ramp(x, v) for k, v in curves.items()} if count >= 2 else {}
    jumps = {k: r for k, r in ramps.items() if r is not None and r["hi"] - r["lo"] >= min_jump}
    chosen: dict[int, dict] = {}
    jump = None
    if jumps:
        a = min(r["a"] for r in jumps.values())
        b = max(r["b"] for r in jumps.values())
        first = min(jumps, key=lambda k: jumps[k]["a"])
        last = max(jumps, key=lambda k: jumps[k]["b"])
        jump = {"before": ckpts[a].revision, "after": ckpts[b].revision,
                "tasks": {k: {"starts": ckpts[r["a"]].revision, "ends": ckpts[r["b"]].revision, "low": level(r["lo"]),
                              "high": level(r["hi"]), "rise": level(r["hi"]) - level(r["lo"])} for k, r in jumps.items()},
                "no_jump": sorted(set(curves) - set(jumps))}
        cka_ab = None if cka is None else float(cka[a, b])
        chosen[a] = entry(a, "before", (
            f"last checkpoint before the accuracy jump: {acc_text(a)}; {first} starts rising after it "
            f"(fitted {level(jumps[first]['lo']):.2f} → {level(jumps[first]['hi']):.2f})"),
            acc_numbers(a) | {"cka_with_after": cka_ab})
        if n >= 2:
            chosen[b] = entry(b, "after", (
                f"first checkpoint after the jump: {acc_text(b)}; {last} reaches its high plateau here "
                f"(fitted {level(jumps[last]['hi']):.2f})"),
                acc_numbers(b) | {"cka_with_before": cka_ab})
        if n >= 3 and b + 1 < count:
            later = list(range(b + 1, count))
            if dist is not None:
                d = np.array([dist[b, c] for c in later])
                if d.max() < 0.01:
                    late = later[-1]
                    why = (f"last checkpoint; representations barely move after the jump (1 - CKA with "
                           f"{ckpts[b].label} at most {d.max():.3f}), so a late checkpoint adds little")
                else:
                    late = later[int(np.argmax(d >= 0.9 * d.max()))]
                    why = (f"late checkpoint where representations have moved on: CKA with the 'after' checkpoint "
                           f"({ckpts[b].label}) is {cka[b, late]:.2f} (lowest after the jump: {1 - d.max():.2f}); "
                           f"{acc_text(late)}")
                numbers = acc_numbers(late) | {"cka_with_after": float(cka[b, late]),
                                               "min_cka_with_after": float(1 - d.max()), "cka_block": block_of.get(late)}
            else:
                late = later[-1]
                why = f"last checkpoint (no similarity matrix to locate representation change); {acc_text(late)}"
                numbers = acc_numbers(late)
            chosen[late] = entry(late, "late", why, numbers)
    elif n >= 1 and count:
        start = count - 1
        rises = [r["hi"] - r["lo"] for r in ramps.values() if r is not None]
        chosen[start] = entry(start, "last", (
            "no accuracy jump" + (f" (largest fitted rise {max(rises):.2f} < {min_jump})" if rises else "")
            + "; last checkpoint, others chosen to span representation change"), acc_numbers(start))
    # Extra picks: farthest point in CKA distance from everything chosen so far.
    while len(chosen) < min(n, count):
        rest = [i for i in range(count) if i not in chosen]
        if dist is not None:
            gaps = [min(dist[i, j] for j in chosen) for i in rest]
            pick = rest[int(np.argmax(gaps))]
            why = f"farthest from the other picks in representation space (min 1 - CKA = {max(gaps):.2f})"
            nums = {"min_cka_distance": float(max(gaps))}
        else:
            pick = rest[len(rest) // 2]
            why = "spacing (no similarity matrix)"
            nums = {}
        chosen[pick] = entry(pick, "extra", why, nums | acc_numbers(pick))
    picks = [chosen[i] for i in sorted(chosen)]
    return {"method": SUGGESTION_METHOD, "jump": jump,
            "blocks": [[ckpts[i].revision for i in block] for block in blocks],
            "checkpoints": picks, "revisions": [p["revision"] for p in picks]}


# -- inputs ------------------------------------------------------------------------------------


def _read_lines(path: Path, limit: int | None = None) -> list[str]:
    lines = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                lines.append(line)
                if limit is not None and len(lines) >= limit:
                    break
    return lines


def _encode_docs(tokenizer, docs: list[str], max_length: int | None = None) -> list[list[int]]:
    lead = special_prefix(tokenizer)
    enc = tokenizer(docs, add_special_tokens=False)["input_ids"] if docs else []
    out = [lead + list(ids) for ids in enc]
    return [s[:max_length] for s in out] if max_length else out


def _similarity_sequences(tasks: list[Task], budget: int, seed: int) -> list[list[int]]:
    """Task sentences (good ones; prefix + correct answer where a sentence is unusable) until ``budget``
    tokens at positions ≥ 1, drawn round-robin across tasks in a seeded order."""
    rng = random.Random(seed)
    pools = []
    for task in tasks:
        seqs = [task.good[i] if bool(task.sentence_ok[i]) else task.prefixes[i] + [int(task.correct[i])]
                for i in range(len(task))]
        rng.shuffle(seqs)
        pools.append(seqs)
    out, have = [], 0
    for i in range(max((len(p) for p in pools), default=0)):
        for pool in pools:
            if i < len(pool) and have < budget and len(pool[i]) > 1:
                out.append(pool[i])
                have += len(pool[i]) - 1
        if have >= budget:
            break
    return out


@torch.no_grad()
def site_tokens(model, seqs: Sequence[Sequence[int]], layer: int, budget: int, batch_size: int = 64) -> torch.Tensor:
    """Site activations ``[N, d]`` at all real positions ≥ 1 of ``seqs`` (in order), first ``budget`` kept.

    Right padding (so real tokens keep positions 0..len-1 with no position ids needed) and the
    attention mask; padding and position 0 are never included.
    """
    from crosstime.sites import read_site

    device = next(model.parameters()).device
    parts, have = [], 0
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(chunk):
            ids[r, :len(s)] = torch.as_tensor(list(s))
            mask[r, :len(s)] = 1
        h = read_site(model, ids.to(device), layer, attention_mask=mask.to(device)).float().cpu()
        keep = mask.bool().clone()
        keep[:, 0] = False
        parts.append(h[keep])
        have += int(keep.sum())
        if have >= budget:
            break
    return torch.cat(parts)[:budget]


# -- the stage -----------------------------------------------------------------------------------


@dataclass
class ScanResult:
    """What :func:`scan` produced (also written to ``RUN/scan/``)."""

    out: Path
    checkpoints: list[Checkpoint]
    accuracy: list[dict]  # tidy rows
    cosine: np.ndarray  # [M, M]
    cka: np.ndarray  # [M, M]
    dynamics: list[dict]
    suggestion: dict
    tasks: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what was skipped and why


def _default_tasks(series: CheckpointSeries) -> list[str]:
    pairs = series.local_root / "pairs" if series.is_local else None
    if pairs is not None and pairs.is_dir() and any(pairs.glob("*.jsonl")):
        return sorted(p.stem for p in pairs.glob("*.jsonl"))
    return ["subjectverb"]


def _corpus_paths(config: ScanConfig, series: CheckpointSeries) -> tuple[Path | None, Path | None]:
    root = series.local_root / "corpus" if series.is_local else None
    heldout = config.corpus or (root / "heldout.txt" if root is not None and (root / "heldout.txt").is_file() else None)
    train = config.train_corpus or (root / "train.txt" if root is not None and (root / "train.txt").is_file() else None)
    for name, path in (("corpus", heldout), ("train_corpus", train)):
        if path is not None and not Path(path).is_file():
            raise ScanError(f"{name} {path} does not exist (expected a text file, one document per line)")
    return heldout, train


def _csv_text(rows: list[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


ACCURACY_COLUMNS = ("revision", "step", "tokens", "task", "n", "accuracy", "mean_m", "n_sentence", "sentence_accuracy")
DYNAMICS_COLUMNS = ("revision", "step", "tokens", "loss", "kl_unigram", "kl_bigram", "unigram_loss", "bigram_loss", "n_tokens")


@dataclass
class _Inputs:
    """Everything fixed before the sweep: checked once, shared by every checkpoint."""

    series: CheckpointSeries
    checkpoints: list[Checkpoint]
    task_names: list[str]
    tasks: list[Task]
    sim_seqs: list[list[int]]  # token ids whose site activations are compared (positions ≥ 1)
    heldout_seqs: list[list[int]]  # held-out documents for loss and KL
    ngram: NgramModel | None
    d_model: int | None = None


def _train_sample(path: Path, tokenizer, budget: int) -> list[list[int]]:
    """The first documents of ``path`` until ``budget`` tokens (for n-gram statistics)."""
    seqs, have, batch = [], 0, []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                batch.append(line.strip())
            if len(batch) == 1024:
                enc = _encode_docs(tokenizer, batch)
                seqs, have, batch = seqs + enc, have + sum(map(len, enc)), []
                if have >= budget:
                    return seqs
    return seqs + _encode_docs(tokenizer, batch)


def prepare(config: ScanConfig) -> _Inputs:
    """Open the series, check the layer, load every task and corpus sample: all bad input fails here."""
    try:
        series = open_series(config.series, revisions=config.revisions)
    except SeriesError as err:
        raise ScanError(str(err)) from err
    ckpts = list(series.checkpoints)
    first_cfg = series.load_config(ckpts[0].revision)
    depth = getattr(first_cfg, "num_hidden_layers", None) or getattr(first_cfg, "n_layer", None)
    if depth is not None and not 0 <= config.layer < depth:
        raise ScanError(f"layer {config.layer} is out of range: {series.source} has {depth} decoder blocks, "
                        f"so --layer must be in 0..{depth - 1}")
    if series.is_local:
        series.check_compatible()
    tokenizer = series.load_tokenizer()
    search = [series.local_root / "pairs"] if series.is_local else []
    names = expand_task_names(config.tasks or _default_tasks(series))
    if not names:
        raise ScanError("no tasks given; pass --tasks (e.g. subjectverb, toy, or a .jsonl path)")
    tasks = [load_task(name, tokenizer, search_dirs=search) for name in names]  # TaskError before any work
    heldout, train = _corpus_paths(config, series)
    if config.similarity_source == "corpus" and heldout is None:
        raise ScanError("similarity_source='corpus' needs a held-out corpus: pass --corpus FILE")

    heldout_seqs: list[list[int]] = []
    if heldout is not None:
        docs = _read_lines(heldout)
        random.Random(config.seed).shuffle(docs)
        heldout_seqs = _encode_docs(tokenizer, docs[:config.corpus_sequences], config.max_length)
    if config.similarity_source == "corpus":
        sim_seqs = _cap_tokens(heldout_seqs, config.similarity_tokens)
    else:
        sim_seqs = _similarity_sequences(tasks, config.similarity_tokens, config.seed)
    ngram = None
    if heldout_seqs and train is not None:
        vocab = max(int(getattr(first_cfg, "vocab_size", 0) or 0), len(tokenizer))
        ngram = NgramModel.fit(_train_sample(train, tokenizer, config.ngram_tokens), vocab)
    d_model = getattr(first_cfg, "hidden_size", None) or getattr(first_cfg, "n_embd", None)
    return _Inputs(series, ckpts, names, tasks, sim_seqs, heldout_seqs, ngram, d_model)


def _cap_tokens(seqs: list[list[int]], budget: int) -> list[list[int]]:
    out, have = [], 0
    for s in seqs:
        if have >= budget:
            break
        if len(s) > 1:
            out.append(s)
            have += len(s) - 1
    return out


def _sweep(config: ScanConfig, inputs: _Inputs) -> tuple[list[dict], list[dict], list[torch.Tensor]]:
    """Load each checkpoint once and do everything for it: tasks, site activations, dynamics."""
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    acc_rows, dyn_rows, acts = [], [], []
    hf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one bar across checkpoints, not one per weight load
    try:
        bar = tqdm(inputs.checkpoints, desc="scan", unit="ckpt", disable=not config.progress)
        for ckpt in bar:
            bar.set_postfix_str(ckpt.revision)
            model = inputs.series.load_model(ckpt.revision, dtype=config.dtype, device=config.device)
            base = {"revision": ckpt.revision, "step": ckpt.step, "tokens": ckpt.tokens}
            for task in inputs.tasks:
                res = evaluate_task(model, task, config.batch_size, sentence=config.sentence_metric)
                acc_rows.append(base | res.as_row())
            if inputs.sim_seqs:
                acts.append(site_tokens(model, inputs.sim_seqs, config.layer, config.similarity_tokens, config.batch_size))
            if inputs.ngram is not None:
                dyn_rows.append(base | next_token_dynamics(model, inputs.heldout_seqs, inputs.ngram, config.batch_size))
            del model
    finally:
        if hf_bars:
            hf_logging.enable_progress_bar()
    return acc_rows, dyn_rows, acts


def scan(config: ScanConfig) -> ScanResult:
    """Run the scan stage; see the module docstring. Inputs are checked before any model is loaded."""
    from crosstime.files import write_bytes
    from crosstime.scan.plots import plot_accuracy, plot_dynamics, plot_similarity, tick_labels
    from crosstime.rundir import RunDir

    started = time.perf_counter()
    inputs = prepare(config)
    run = RunDir(config.out)
    run.save_stage_config("scan", config)
    torch.manual_seed(config.seed)
    threads = torch.get_num_threads()
    want = config.threads
    if want is None and str(config.device) == "cpu" and inputs.d_model is not None and inputs.d_model < 512:
        want = 1
    if want:
        torch.set_num_threads(want)
    try:
        acc_rows, dyn_rows, acts = _sweep(config, inputs)
    finally:
        torch.set_num_threads(threads)

    ckpts, tasks = inputs.checkpoints, inputs.tasks
    labels = tick_labels([c.tokens for c in ckpts], [c.revision for c in ckpts])
    empty = np.full((len(ckpts), len(ckpts)), np.nan)
    stacked = torch.stack(acts) if acts else torch.zeros(len(ckpts), 0, 0)
    cos = cosine_matrix(stacked) if acts else empty
    cka = linear_cka_matrix(stacked) if acts else empty
    mean_acc = [float(np.mean([r["accuracy"] for r in acc_rows if r["revision"] == c.revision])) for c in ckpts]
    per_task = {t.name: [r["accuracy"] for r in acc_rows if r["task"] == t.name] for t in tasks}
    suggestion = suggest_checkpoints(ckpts, per_task, cka if acts else None, config.n_suggest, config.min_jump)
    suggestion |= {"series": inputs.series.source, "layer": config.layer, "tasks": inputs.task_names}

    out = run.scan
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "accuracy.csv", _csv_text(acc_rows, ACCURACY_COLUMNS))
    if dyn_rows:
        write_text(out / "dynamics.csv", _csv_text(dyn_rows, DYNAMICS_COLUMNS))
    buf = io.BytesIO()
    np.savez(buf, revisions=np.array([c.revision for c in ckpts]),
             steps=np.array([c.step if c.step is not None else -1 for c in ckpts], dtype=np.int64),
             tokens=np.array([c.tokens if c.tokens is not None else -1 for c in ckpts], dtype=np.int64),
             labels=np.array(labels), cosine=cos, cka=cka, layer=config.layer, n_tokens=stacked.shape[1])
    write_bytes(out / "similarity.npz", buf.getvalue())
    write_json(out / "suggestion.json", suggestion)
    write_json(out / "tasks.json", {t.name: t.summary() for t in tasks})

    tokens = [c.tokens for c in ckpts]
    if any(t is None for t in tokens):  # no token counts: plot against steps (or order)
        tokens = [c.step if c.step is not None else i for i, c in enumerate(ckpts)]
    marks = [(tokens[ckpts.index(next(c for c in ckpts if c.revision == p["revision"]))], f"{p['role']}: {p['label']}")
             for p in suggestion["checkpoints"]]
    curves = {t.name: [r["accuracy"] for r in acc_rows if r["task"] == t.name] for t in tasks}
    sentence_curves = {t.name: [r["sentence_accuracy"] for r in acc_rows if r["task"] == t.name] for t in tasks}
    title = f"Task accuracy — {Path(inputs.series.source).name} ({inputs.series.family})"
    plot_accuracy(tokens, curves, out / "accuracy.png", marks, title=title,
                  sentence_curves=sentence_curves if config.sentence_metric else None)
    if acts:
        n_tok = stacked.shape[1]
        plot_similarity(cos, labels, out / "cosine.png", f"Mean per-token cosine, block {config.layer} ({n_tok} tokens)")
        plot_similarity(cka, labels, out / "cka.png", f"Linear CKA, block {config.layer} ({n_tok} tokens)")
    if dyn_rows:
        plot_dynamics(tokens, [r["loss"] for r in dyn_rows], [r["kl_unigram"] for r in dyn_rows],
                      [r["kl_bigram"] for r in dyn_rows], out / "dynamics.png", accuracy=mean_acc,
                      unigram_loss=dyn_rows[0]["unigram_loss"], bigram_loss=dyn_rows[0]["bigram_loss"])
    notes = []
    if not dyn_rows:
        notes.append("training dynamics skipped: needs a held-out corpus (--corpus) and a training corpus "
                     "(--train-corpus); a series folder with corpus/heldout.txt and corpus/train.txt provides both")
    for t in tasks:
        for s in t.stats:
            if s.dropped:
                notes.append(f"{s.source}: kept {s.kept}/{s.total} pairs, dropped "
                             + ", ".join(f"{v} ({k})" for k, v in s.dropped.items()))
    return ScanResult(out, ckpts, acc_rows, cos, cka, dyn_rows, suggestion,
                      {t.name: t.summary() for t in tasks}, time.perf_counter() - started, notes)


def format_number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def print_scan_summary(result: ScanResult, console=None) -> None:
    """A short rich summary: accuracy per checkpoint and task, dynamics, and the suggestion with reasons."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    tasks = list(dict.fromkeys(r["task"] for r in result.accuracy))
    acc = {(r["revision"], r["task"]): r for r in result.accuracy}
    has_sentence = any(r.get("sentence_accuracy") is not None for r in result.accuracy)
    from rich import box

    table = Table(title="scan: accuracy = share of pairs with m < 0", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 0), pad_edge=False)
    table.add_column("checkpoint", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    for i, t in enumerate(tasks):
        table.add_column(f"T{i + 1}", justify="right", no_wrap=True)
    table.add_column("mean", justify="right", no_wrap=True)
    if has_sentence:
        table.add_column("sent", justify="right", no_wrap=True)
    dyn = {r["revision"]: r for r in result.dynamics}
    if dyn:
        for name in ("loss", "KLuni", "KLbi"):
            table.add_column(name, justify="right", no_wrap=True)
    table.add_column("pick", no_wrap=True)
    chosen = {p["revision"]: p["role"] for p in result.suggestion["checkpoints"]}
    for c in result.checkpoints:
        rows = [acc[(c.revision, t)] for t in tasks]
        cells = [format_number(r["accuracy"], 2) for r in rows]
        cells.append(format_number(float(np.mean([r["accuracy"] for r in rows])), 2))
        if has_sentence:
            sent = [r["sentence_accuracy"] for r in rows if r.get("sentence_accuracy") is not None]
            cells.append(format_number(float(np.mean(sent)), 2) if sent else "—")
        if dyn:
            d = dyn.get(c.revision, {})
            cells += [format_number(d.get("loss"), 2), format_number(d.get("kl_unigram"), 2), format_number(d.get("kl_bigram"), 2)]
        table.add_row(c.revision, c.label, *cells, chosen.get(c.revision, ""))
    console.print(table)
    console.print("tasks: " + "; ".join(f"T{i + 1} = {t} ({result.tasks.get(t, {}).get('n', '?')} pairs)"
                                          for i, t in enumerate(tasks))
                  + (". sent = mean whole-sentence (lm-eval) accuracy" if has_sentence else "")
                  + (". KL = KL(model ‖ corpus unigram / bigram), nats" if dyn else ""))
    console.print("[bold]suggested checkpoints[/bold]: " + ", ".join(result.suggestion["revisions"]))
    for p in result.suggestion["checkpoints"]:
        console.print(f"  {p['revision']} ({p['label']} tokens, {p['role']}): {p['reason']}")
    for note in result.notes:
        console.print(f"[dim]note: {note}[/dim]")
    console.print(f"wrote {result.out} in {result.seconds:.1f}s")


__all__ = [
    "ScanConfig", "ScanError", "ScanResult", "scan", "prepare", "cosine_matrix", "linear_cka_matrix", "NgramModel",
    "next_token_dynamics", "fit_ramp", "cka_blocks", "suggest_checkpoints", "site_tokens", "print_scan_summary",
]
