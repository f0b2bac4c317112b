"""A hand check of typed features (issue #24, acceptance): what each sampled feature fires on.

For up to ``--per-type`` features of each type in ``RUN/evaluation/features.csv`` (seeded sample),
this prints what a reader needs to say whether the type is right, computed here without
crosstime's typing code: the feature's activations f = ReLU(Σ_m x_m W_enc[m] + b_enc) over the
store's held-out rows (plain torch on the saved weights and the stored, normalised rows), then

- the share of its activation mass on its top-3 current tokens and on its top-3 previous tokens,
- the share of its firing rows on a repeated 3-gram (induction),
- its activation mass inside complete grammar lines and, of that, inside the toy parser's
  attractor spans and subject-number spans (crosstime.toy.labels: the parser, not the typing),
- three of its top contexts with the firing token in [brackets].

The verdict (right / wrong) is the reader's; ``--out`` keeps the printout.

    python benchmarks/check_feature_types.py RUN [--per-type 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from crosstime.store import ActivationStore
from crosstime.series import open_series


def activations(run: Path) -> tuple[torch.Tensor, np.ndarray, int]:
    """f [rows, F] over the held-out rows, the held-out contexts' tokens [n, T], the first stored position."""
    store = ActivationStore(run / "activations")
    w = load_file(str(run / "crosscoder" / "model.safetensors"))
    lo, hi = store.context_range("heldout")
    idx = np.arange(lo * store.rows_per_context, hi * store.rows_per_context)
    scales = torch.tensor([store.scales[r] for r in store.revisions], dtype=torch.float32)
    x = torch.stack([store.read_rows(r, idx) for r in store.revisions], 1) * scales[None, :, None]
    f = torch.relu(torch.einsum("nmd,mdf->nf", x, w["W_enc"]) + w["b_enc"])
    return f, np.asarray(store.tokens[lo:hi]), store.first_position


def repeated(tokens: np.ndarray, n: int = 3) -> np.ndarray:
    """[contexts, T] bool: the n tokens ending here occurred earlier in the context."""
    out = np.zeros(tokens.shape, dtype=bool)
    for c, row in enumerate(tokens):
        seen = set()
        for t in range(n - 1, len(row)):
            key = tuple(row[t - n + 1:t + 1])
            out[c, t] = key in seen
            seen.add(key)
    return out


def describe(i: int, f: torch.Tensor, tokens: np.ndarray, first: int, vocab: list[str], labels: dict) -> list[str]:
    T = tokens.shape[1] - first
    col = f[:, i].numpy()
    fired = np.flatnonzero(col > 0)
    cur = tokens[:, first:].reshape(-1)
    prev = tokens[:, first - 1:-1].reshape(-1)
    mass = col[fired].sum()

    def top(ids: np.ndarray) -> str:
        by = Counter()
        for r in fired:
            by[int(ids[r])] += float(col[r])
        return ", ".join(f"'{vocab[t]}' {v / mass:.0%}" for t, v in by.most_common(3))

    rep = labels["repeated"][:, first:].reshape(-1)
    inside = labels["subject_number"].reshape(-1) >= 0
    lines = [f"  fires on {len(fired)} rows; current: {top(cur)}; previous: {top(prev)}",
             f"  on a repeated 3-gram: {rep[fired].mean():.0%} of firing rows; mass in grammar lines "
             f"{col[fired][inside[fired]].sum() / mass:.0%}, in attractor spans "
             f"{col[fired][labels['attractor'].reshape(-1)[fired] == 1].sum() / mass:.0%}, in subject-number spans "
             f"{col[fired][labels['subject_number'].reshape(-1)[fired] >= 1].sum() / mass:.0%}"]
    for r in fired[np.argsort(-col[fired])][:3]:
        c, t = divmod(int(r), T)
        row = tokens[c]
        pos = first + t
        words = [vocab[k] for k in row[max(0, pos - 10):pos]] + [f"[{vocab[row[pos]]}]"]
        lines.append(f"  {col[r]:.2f}: " + " ".join(words))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--per-type", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = list(csv.DictReader(open(args.run / "evaluation" / "features.csv", encoding="utf-8")))
    f, tokens, first = activations(args.run)
    store = ActivationStore(args.run / "activations")
    labeller = open_series(store.manifest["series"]["source"]).labeller()  # the toy world's parser
    vocab = list(labeller.id_to_word)
    per = [labeller.label(row) for row in tokens]
    labels = {p: np.stack([c[p] for c in per])[:, first:] for p in ("subject_number", "attractor")}
    labels["repeated"] = repeated(tokens)  # whole contexts: describe() drops the unstored positions
    rng = random.Random(args.seed)
    for kind in sorted({r["feature_type"] for r in rows} - {"unscored", "other", ""}):
        ids = [int(r["feature"]) for r in rows if r["feature_type"] == kind]
        for i in sorted(rng.sample(ids, min(args.per_type, len(ids)))):
            r = rows[i]
            print(f"#{i} typed {kind} (score {float(r['type_score']):.2f}; labelled share {r['labelled_share'] or '-'}, "
                  f"label tokens {r['label_tokens'] or '-'})")
            print("\n".join(describe(i, f, tokens, first, vocab, labels)))


if __name__ == "__main__":
    main()
