"""Training dynamics: corpus n-gram statistics and how far a model's next-token distribution is from them.

The second paper's statistical-learning phase: early in pretraining a model's next-token
distribution approaches the corpus unigram, then the bigram (previous-token conditional)
distribution. :class:`NgramModel` estimates both from a training-corpus sample;
:func:`next_token_dynamics` measures held-out loss and KL(model ‖ unigram / bigram).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crosstime.scan.config import ScanError
from crosstime.tasks import forward_logits, right_pad


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
        """log(c(v) + β) per previous token: [n] → [n]."""
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


DYNAMICS_SUMS = ("loss", "kl_unigram", "kl_bigram", "unigram_loss", "bigram_loss")


def _batch_sums(model, chunk: Sequence[Sequence[int]], ngram: NgramModel) -> tuple[dict[str, float], int]:
    """Sums over one batch's predicted positions of each of :data:`DYNAMICS_SUMS`, and their count."""
    ids, mask = right_pad(chunk)  # real positions are 0..len-1 as in training
    logits = forward_logits(model, ids, mask).cpu()
    sel = (mask[:, 1:] * mask[:, :-1]).bool()
    logp = logits[:, :-1][sel].double().log_softmax(-1)  # [n, V_model]
    vocab = min(logp.shape[-1], ngram.log_unigram.shape[0])
    target, prev = ids[:, 1:][sel], ids[:, :-1][sel]
    p = logp.exp()
    neg_entropy = (p * logp).sum(-1)
    sums = {
        "loss": float(-logp.gather(-1, target[:, None]).sum()),
        "kl_unigram": float((neg_entropy - p[:, :vocab] @ ngram.log_unigram[:vocab]).sum()),
        "kl_bigram": float((neg_entropy - ngram.expected_log_bigram(p[:, :vocab], prev)).sum()),
        "unigram_loss": float(-ngram.log_unigram[target].sum()),
        "bigram_loss": float(-ngram.bigram_logprob(prev, target).sum()),
    }
    return sums, len(target)


@torch.no_grad()
def next_token_dynamics(model, seqs: Sequence[Sequence[int]], ngram: NgramModel, batch_size: int = 32) -> dict:
    """Held-out loss and KL(model ‖ unigram), KL(model ‖ bigram), each a mean over predicted tokens.

    Every position t < len−1 of every sequence predicts token t+1; the bigram conditions on
    token t. KL(p ‖ q) = Σ_w p(w) (log p(w) − log q(w)) with p the model's next-token
    distribution. Also returns the corpus unigram / bigram losses on the same targets (the
    n-gram floors the model's loss passes through in its statistical-learning phase), and
    ``n_tokens``, the number of predictions.
    """
    totals = dict.fromkeys(DYNAMICS_SUMS, 0.0)
    count = 0
    for start in range(0, len(seqs), batch_size):
        chunk = [s for s in seqs[start:start + batch_size] if len(s) >= 2]
        if not chunk:
            continue
        sums, n = _batch_sums(model, chunk, ngram)
        for key in DYNAMICS_SUMS:
            totals[key] += sums[key]
        count += n
    if count == 0:
        raise ScanError("the held-out corpus sample has no sequence of two or more tokens")
    return {k: v / count for k, v in totals.items()} | {"n_tokens": count}
