"""interpret/complexity.png: complexity against onset and against the RelIE peak (one dot per feature,
jittered, the mean per level joined), and the explanations' detection per view against the shuffled
baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from crosstime.artifacts import InterpretAnalysis
from crosstime.files import atomic_path


def _scatter(ax, pairs: list[tuple[int, int]], revisions: list[str], title: str) -> None:
    if not pairs:
        ax.text(0.5, 0.5, "no features", ha="center", va="center", transform=ax.transAxes)
    else:
        x, y = np.asarray(pairs, dtype=float).T
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, size=(2, len(x)))  # seeded: same figure each run
        ax.scatter(x + jitter[0], y + jitter[1], s=10, alpha=0.5)
        levels = sorted(set(x))
        ax.plot(levels, [y[x == v].mean() for v in levels], color="black", marker="o", lw=1.2)
    ax.set_xticks(range(1, 6))
    ax.set_xlabel("complexity")
    ax.set_yticks(range(len(revisions)), revisions, fontsize=7)
    ax.set_title(title, fontsize=9)


def plot_complexity(analysis: InterpretAnalysis, onset: list[tuple[int, int]], peak: list[tuple[int, int]],
                    path: Path) -> Any:
    """``onset``/``peak``: ``(complexity, checkpoint index)`` per feature (joint view)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    _scatter(axes[0], onset, analysis.revisions, f"onset (r = {analysis.onset.pearson_r})")
    peak_r = analysis.relie_peak.pearson_r if analysis.relie_peak is not None else None
    _scatter(axes[1], peak, analysis.revisions, f"RelIE peak (r = {peak_r})")
    views = analysis.views
    at = np.arange(len(views))
    axes[2].bar(at - 0.2, [v.detection_mean or 0 for v in views], 0.4, label="explanation")
    axes[2].bar(at + 0.2, [v.detection_shuffled_mean or 0 for v in views], 0.4, label="shuffled")
    axes[2].axhline(0.5, color="grey", ls="--", lw=1)
    axes[2].set_xticks(at, [v.view for v in views], rotation=45, fontsize=7)
    axes[2].set_ylim(0, 1)
    axes[2].set_title("detection balanced accuracy per view", fontsize=9)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
