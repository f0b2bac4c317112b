"""Figures of the evaluate stage (PNG, matplotlib Agg).

- `plot_reldec`: RelDec histogram (M = 2), ternary view of the shares (M = 3), or a heatmap of
  the shares (M > 3: no share classes);
- `plot_trajectories`: decoder-norm trajectories of sample features per presence class;
- `plot_emergence`: features emerging per checkpoint interval, over log tokens;
- `plot_delta_ce`: ΔCE (and KL) by checkpoint;
- `plot_frequency`: histogram of latent firing frequencies.

Token axes are logarithmic; step 0 (0 tokens) cannot sit on a log axis, so it is drawn at
half the smallest non-zero token count and labelled "0".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from crosstime.artifacts import CheckpointEvaluation, FrequencyHistogram
from crosstime.checkpoints import format_tokens
from crosstime.files import atomic_path
from crosstime.shares import TRAJECTORY_LABELS, class_order

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def token_x(tokens: Sequence[int | None]) -> tuple[np.ndarray, float]:
    """Positions on a log axis (0 tokens drawn at half the smallest positive count) and that floor."""
    positive = [t for t in tokens if t]
    floor = min(positive) / 2 if positive else 0.5
    x = np.array([t if t else floor for t in tokens], dtype=float)
    if not positive:  # no token counts at all: fall back to checkpoint order
        x = np.arange(1, len(tokens) + 1, dtype=float)
    return x, floor


def log_token_axis(ax, tokens: Sequence[int | None], labels: Sequence[str] | None = None) -> None:
    x, _floor = token_x(tokens)
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen (log scale; step 0 drawn at the left edge)" if 0 in tokens else "tokens seen (log scale)")
    names = list(labels or [format_tokens(t) if t else "0" for t in tokens])
    keep, last = [], None
    for i, xi in enumerate(x):  # drop labels that would overlap on the log axis (keep the last one)
        if last is None or xi / last >= 1.35 or i == len(x) - 1:
            if keep and i == len(x) - 1 and xi / last < 1.35:
                keep.pop()
            keep.append(i)
            last = xi
    ax.set_xticks(x[keep])
    ax.set_xticklabels([names[i] for i in keep], rotation=45, ha="right", fontsize=7)
    ax.minorticks_off()


def plot_reldec(shares: np.ndarray, labels: Sequence[str] | None, revisions: Sequence[str], path: str | Path,
                alive: np.ndarray | None = None, high: float = 0.7, low: float = 0.3) -> Path:
    """RelDec view: histogram (M = 2), ternary scatter + class counts (M = 3), a heatmap of the shares (M > 3,
    where no share classes are drawn: ``labels`` None).

    ``shares [F, M]`` (rows of `relative_shares` of decoder norms), ``labels`` the share classes (M <= 3).
    ``alive [F]`` (bool) restricts the view to latents that fired during evaluation.
    """
    shares = np.asarray(shares, dtype=float)
    if alive is not None:
        shares = shares[alive]
    M = shares.shape[1]
    n = len(shares)
    if labels is None:
        return _plot_norm_heatmap(shares, revisions, path, n)
    labels = np.asarray(labels, dtype=object)
    if alive is not None:
        labels = labels[alive]
    order = class_order(list(labels), revisions)
    counts = Counter(labels.tolist())
    if M == 2:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.hist(shares[:, 1], bins=np.linspace(0, 1, 51), color=PALETTE[0])
        for t in (low, high):
            ax.axvline(t, color="0.3", ls="--", lw=0.8)
        ax.set_xlabel(f"RelDec = ‖W_dec[{revisions[1]}]‖ / (‖W_dec[{revisions[0]}]‖ + ‖W_dec[{revisions[1]}]‖)")
        ax.set_ylabel("features")
        text = "\n".join(f"{lab}: {counts[lab]} ({counts[lab] / max(n, 1):.0%})" for lab in order)
        ax.text(0.5, 0.97, text, transform=ax.transAxes, ha="center", va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
        ax.set_title(f"Relative decoder norm, {n} live features")
        return save_figure(fig, path)

    if M == 3:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.1, 1]})
        # barycentric -> 2-D: vertex k of an equilateral triangle per checkpoint
        corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
        xy = shares @ corners
        ax.plot(*np.vstack([corners, corners[:1]]).T, color="0.3", lw=1)
        for k, rev in enumerate(revisions):
            off = {0: (-0.03, -0.05), 1: (0.03, -0.05), 2: (0.0, 0.04)}[k]
            ax.text(corners[k, 0] + off[0], corners[k, 1] + off[1], rev, ha="center", fontsize=9, weight="bold")
        for c, lab in enumerate(order):
            sel = labels == lab
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.5, color=PALETTE[c % len(PALETTE)], label=f"{lab} ({sel.sum()})")
        ax.set_aspect("equal")
        ax.axis("off")
        ax.legend(loc="upper left", bbox_to_anchor=(-0.05, 1.02), fontsize=7, markerscale=3, frameon=False)
        ax.set_title("RelDec shares (a feature near a corner lives in that checkpoint)", fontsize=9)
        _class_bars(bx, order, counts, n)
        fig.suptitle(f"Relative decoder norm over 3 checkpoints, {n} live features")
        return save_figure(fig, path)

    return _plot_norm_heatmap(shares, revisions, path, n)


def _plot_norm_heatmap(shares: np.ndarray, revisions: Sequence[str], path: str | Path, n: int,
                       max_rows: int = 1500, seed: int = 0) -> Path:
    """M > 3: one row per feature (a random sample of at most ``max_rows``), its RelDec shares
    divided by the row maximum (= norms over the feature's peak norm), rows sorted by the
    first checkpoint reaching half the peak, then by the peak checkpoint."""
    rows = shares / np.maximum(shares.max(axis=1, keepdims=True), 1e-12)
    if len(rows) > max_rows:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))]
    onset = (rows >= 0.5).argmax(axis=1)
    peak = rows.argmax(axis=1)
    rows = rows[np.lexsort((peak, onset))]
    M = rows.shape[1]
    fig, ax = plt.subplots(figsize=(min(12, 3 + 0.55 * M), 6))
    im = ax.imshow(rows, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(M))
    ax.set_xticklabels(revisions, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"features ({len(rows)} of {n} live), sorted by onset then peak")
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, label="‖W_dec[i, m]‖ / max_m ‖W_dec[i, m]‖", fraction=0.04)
    ax.set_title(f"Decoder norm of each feature across {M} checkpoints (RelDec profile)")
    fig.tight_layout()
    return save_figure(fig, path)


def _class_bars(ax, order: Sequence[str], counts: Counter, n: int) -> None:
    y = np.arange(len(order))
    values = [counts[lab] for lab in order]
    ax.barh(y, values, color=[PALETTE[c % len(PALETTE)] for c in range(len(order))])
    ax.set_yticks(y)
    ax.set_yticklabels(order, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("features")
    for yy, v in zip(y, values):
        ax.text(v, yy, f" {v} ({v / max(n, 1):.0%})", va="center", fontsize=7)
    ax.set_xlim(0, max(values + [1]) * 1.25)


def plot_trajectories(norms: np.ndarray, labels: Sequence[str], tokens: Sequence[int | None], path: str | Path,
                      per_class: int = 6, seed: int = 0) -> Path:
    """Decoder-norm trajectories (each feature divided by its own maximum) of up to
    ``per_class`` random features per trajectory label, one panel per label."""
    norms = np.asarray(norms, dtype=float)
    labels = np.asarray(labels, dtype=object)
    x, _ = token_x(tokens)
    shown = [lab for lab in TRAJECTORY_LABELS if lab != "empty" and (labels == lab).any()]
    rng = np.random.default_rng(seed)
    cols = 2 if len(shown) > 1 else 1
    nrows = -(-max(1, len(shown)) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 3.6 * nrows), sharey=True, squeeze=False)
    flat = axes.ravel()
    for ax in flat[len(shown):]:
        ax.axis("off")
    for ax, lab in zip(flat, shown):
        idx = np.flatnonzero(labels == lab)
        pick = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
        for c, i in enumerate(pick):
            peak = norms[i].max()
            ax.plot(x, norms[i] / peak if peak > 0 else norms[i], marker="o", ms=2.5, lw=1,
                    color=PALETTE[c % len(PALETTE)], label=f"#{i}")
        log_token_axis(ax, tokens)
        ax.legend(fontsize=6, ncol=3, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), title=None)
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel("tokens seen (log)", fontsize=8)
        ax.set_title(f"{lab}: {len(idx)} features", fontsize=10, pad=30)
    for row in axes:
        row[0].set_ylabel("‖W_dec[i, m]‖ / max over m")
    fig.suptitle("Decoder-norm trajectories of sample features per presence class")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_emergence(counts: Sequence[int], tokens: Sequence[int | None], revisions: Sequence[str], path: str | Path) -> Path:
    """Features emerging per checkpoint interval: bars spanning (tokens[m-1], tokens[m]] on a
    log axis; features already present at the first checkpoint are a separate bar."""
    x, _floor = token_x(tokens)
    # separate y scales: the first-checkpoint bar is often much taller than the intervals
    fig, (a0, ax) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 6]})
    a0.bar([0], [counts[0]], color="0.6", width=0.6)
    a0.set_xticks([0])
    a0.set_xticklabels([f"present at\n{revisions[0]}"], fontsize=8)
    a0.set_ylabel("features (onset in interval)")
    a0.text(0, counts[0], str(counts[0]), ha="center", va="bottom", fontsize=8)
    left = x[:-1]
    width = x[1:] - x[:-1]
    ax.bar(left, counts[1:], width=width, align="edge", color=PALETTE[0], edgecolor="white", lw=0.8)
    for lft, w, c in zip(left, width, counts[1:]):
        if c:
            ax.text(np.sqrt(lft * (lft + w)) if lft > 0 else lft + w / 2, c, str(c), ha="center", va="bottom", fontsize=7)
    log_token_axis(ax, tokens)
    ax.set_ylabel("features emerging in interval")
    ax.set_title("Feature emergence: onset = first checkpoint where the decoder norm reaches its presence threshold",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _sig3(v: float) -> str:
    return f"{v:.3g}"


def plot_delta_ce(rows: Sequence[CheckpointEvaluation], path: str | Path, reference: float | None = 0.35,
                  reference_label: str = "0.35 nats") -> Path:
    """ΔCE (spliced − clean, nats) and KL(clean ‖ spliced) per checkpoint (rows of ``evaluation.json``,
    every one spliced), each bar labelled with its value (3 significant figures). The y axis is scaled to
    the bars; the ``reference`` line is drawn and labelled where it falls within twice their range, else
    named in a note (a 0.35-nat line would flatten bars of 0.003 to nothing)."""
    M = len(rows)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.2 + 0.75 * M), 4))
    sep = " · " if M > 6 else "\n"
    labels = [f"{r.revision}{sep}{format_tokens(r.tokens_seen) if r.tokens_seen else '0'}" for r in rows]
    pos = np.arange(M)
    dce = [r.delta_ce for r in rows]
    kl = [r.kl for r in rows]
    w = 0.4
    ax.bar(pos - w / 2, dce, width=w, color=PALETTE[0], label="ΔCE = CE(spliced) − CE(clean)")
    ax.bar(pos + w / 2, kl, width=w, color=PALETTE[1], label="KL(clean ‖ spliced)")
    small = 6 if M > 6 else 7
    for offset, values in ((-w / 2, dce), (w / 2, kl)):
        for p, v in zip(pos, values):
            ax.text(p + offset, v, _sig3(v), ha="center", va="bottom" if v >= 0 else "top", fontsize=small)
    top = max([*dce, *kl, 0.0])
    bottom = min([*dce, *kl, 0.0])
    span = max(top - bottom, 1e-6)
    ax.axhline(0, color="0.2", lw=0.6)
    if reference is not None and bottom - span <= reference <= top + span:
        ax.axhline(reference, color="0.4", ls="--", lw=0.8)
        ax.annotate(f"reference: {reference_label}", xy=(1.0, reference), xycoords=("axes fraction", "data"),
                    fontsize=7, color="0.3", ha="right", va="bottom")
        top, bottom = max(top, reference), min(bottom, reference)
    elif reference is not None:
        ax.annotate(f"reference {reference_label}: off this scale", xy=(1.0, 1.0), xycoords="axes fraction",
                    fontsize=7, color="0.4", ha="right", va="bottom")
    ax.set_ylim(bottom - 0.12 * span if bottom < 0 else 0, top + 0.15 * span)
    ax.set_xticks(pos)
    ax.set_xticklabels(labels, fontsize=7 if M > 6 else 8, rotation=45 if M > 6 else 0, ha="right" if M > 6 else "center")
    ax.set_ylabel("nats per token")
    ax.set_title("Splicing the crosscoder's reconstruction into each checkpoint", pad=14)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def plot_frequency(hist: FrequencyHistogram, path: str | Path) -> Path:
    """Histogram of log10 firing frequency (dead latents noted in the title)."""
    edges = np.asarray(hist.edges_log10)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(edges[:-1], hist.counts, width=np.diff(edges), align="edge", color=PALETTE[2], edgecolor="white", lw=0.5)
    ax.set_xlabel("log10 firing frequency (share of the tokens counted for dead latents)")
    ax.set_ylabel("latents")
    ax.set_title(f"Latent firing frequency ({hist.dead} dead latents not shown)")
    fig.tight_layout()
    return save_figure(fig, path)
