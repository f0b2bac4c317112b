"""Figures of the scan stage: accuracy curves, similarity heatmaps, training dynamics.

Token axes are logarithmic; step 0 (0 tokens) cannot sit on a log axis, so it is drawn at
``token_floor`` (half the smallest non-zero token count), labelled "0", and the figure says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crosstime.checkpoints import format_tokens  # noqa: E402
from crosstime.files import atomic_path  # noqa: E402
from crosstime.series import DISPLAY_NAMES, log_x, token_floor  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _token_axis(ax, tokens: Sequence[int | None]) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen (log scale)")
    if any(t == 0 for t in tokens):
        floor = token_floor(tokens)
        ax.axvline(floor, color="0.85", lw=0.8, zorder=0)
        ax.annotate("step 0 (0 tokens)\ndrawn here", xy=(floor, 0.02), xycoords=("data", "axes fraction"),
                    fontsize=7, color="0.4", ha="left")


def series_name(source: str, family: str) -> str:
    """The series as a reader knows it: "the toy world", a hub id, or a local folder's name (with
    its parent's when the folder is named by a hash, as cached series are)."""
    if family in DISPLAY_NAMES:
        return DISPLAY_NAMES[family]
    path = Path(source)
    if not path.is_absolute() and "/" in source and not source.startswith("."):
        return source  # a hub id such as EleutherAI/pythia-160m
    if re.fullmatch(r"[0-9a-f]{12,}", path.name):
        return f"{path.parent.name} series ({family})"
    return path.name


def accuracy_title(source: str, family: str, layer: int | None = None) -> str:
    at = f", layer {layer}" if layer is not None else ""
    return f"Task accuracy across training: {series_name(source, family)}{at}"


def plot_accuracy(
    tokens: Sequence[int | None],
    curves: dict[str, Sequence[float]],
    path: str | Path,
    marks: Sequence[tuple[int | None, str]] = (),
    title: str = "Task accuracy across checkpoints",
    sentence_curves: dict[str, Sequence[float | None]] | None = None,
) -> Path:
    """One line per task (accuracy = share of pairs with m < 0); dashed lines mark suggested checkpoints."""
    x = log_x(tokens)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (task, acc) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.plot(x, acc, marker="o", ms=3.5, color=color, label=task)
        if sentence_curves and task in sentence_curves:  # lm-eval style, drawn only where it differs
            sent = [np.nan if v is None else v for v in sentence_curves[task]]
            if not np.allclose(np.nan_to_num(sent, nan=-1), np.nan_to_num(np.asarray(acc, float), nan=-1), atol=0.005):
                ax.plot(x, sent, ls=":", color=color, lw=1, alpha=0.8, label=f"{task} (whole sentence)")
    ax.axhline(0.5, color="0.6", ls="--", lw=0.8)
    ax.annotate("chance", xy=(1.0, 0.5), xycoords=("axes fraction", "data"), fontsize=7, color="0.4",
                ha="right", va="bottom")
    for tok, label in marks:
        xm = tok if tok else token_floor(tokens)
        ax.axvline(xm, color="k", ls="--", lw=0.9, alpha=0.6)
        ax.annotate(label, xy=(xm, 1.01), xycoords=("data", "axes fraction"), rotation=30, fontsize=7,
                    ha="left", va="bottom")  # above the axes, never over the data
    _token_axis(ax, tokens)
    ax.set_ylabel("accuracy (share of pairs with m < 0)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, pad=34 if marks else 6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, Path(path))


def plot_similarity(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str,
                    vmin: float | None = None, vmax: float = 1.0) -> Path:
    """Labelled heatmap of a checkpoint × checkpoint similarity matrix (values printed when small)."""
    n = len(labels)
    size = max(4.5, min(14.0, 0.42 * n + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    lo = float(np.nanmin(matrix)) if vmin is None else vmin
    im = ax.imshow(matrix, cmap="viridis", vmin=min(lo, vmax - 1e-6), vmax=vmax)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("checkpoint (tokens seen)")
    ax.set_ylabel("checkpoint (tokens seen)")
    if n <= 24:
        mid = (lo + vmax) / 2
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=5.5 if n > 14 else 7,
                        color="black" if matrix[i, j] > mid else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=10)
    return _save(fig, Path(path))


def plot_dynamics(
    tokens: Sequence[int | None],
    loss: Sequence[float],
    kl_unigram: Sequence[float],
    kl_bigram: Sequence[float],
    path: str | Path,
    accuracy: Sequence[float] | None = None,
    unigram_loss: float | None = None,
    bigram_loss: float | None = None,
) -> Path:
    """Held-out loss and KL(model ‖ corpus unigram / bigram), with mean task accuracy for timing."""
    x = log_x(tokens)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.0))
    ax1.plot(x, loss, marker="o", ms=3, label="model held-out loss")
    if unigram_loss is not None:
        ax1.axhline(unigram_loss, color="C1", ls="--", lw=0.9, label="corpus unigram loss")
    if bigram_loss is not None:
        ax1.axhline(bigram_loss, color="C2", ls="--", lw=0.9, label="corpus bigram loss")
    ax1.set_ylabel("next-token loss (nats)")
    ax1.set_title("Held-out next-token loss")
    ax2.plot(x, kl_unigram, marker="o", ms=3, color="C1", label="KL(model ‖ unigram)")
    ax2.plot(x, kl_bigram, marker="o", ms=3, color="C2", label="KL(model ‖ bigram)")
    ax2.set_ylabel("KL (nats per token)")
    ax2.set_title("Distance to corpus n-gram statistics")
    for ax in (ax1, ax2):
        _token_axis(ax, tokens)
        ax.grid(alpha=0.3)
    handles, names = ax2.get_legend_handles_labels()
    if accuracy is not None:
        twin = ax2.twinx()
        twin.plot(x, accuracy, color="0.3", ls=":", lw=1.2, label="mean task accuracy (right axis)")
        twin.set_ylim(0, 1.02)
        twin.set_ylabel("mean task accuracy")
        more, more_names = twin.get_legend_handles_labels()
        handles, names = handles + more, names + more_names
    ax1.legend(fontsize=7)
    ax2.legend(handles, names, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.tight_layout()
    return _save(fig, Path(path))


def tick_labels(tokens: Sequence[int | None], revisions: Sequence[str]) -> list[str]:
    """Token labels ("0", "128M", …), falling back to the revision name where tokens are unknown."""
    labels = [format_tokens(t) if t is not None else r for t, r in zip(tokens, revisions)]
    if len(set(labels)) < len(labels):  # e.g. Pythia's step143000 and main: say which is which
        labels = [f"{lab} ({r})" if labels.count(lab) > 1 else lab for lab, r in zip(labels, revisions)]
    return labels
