"""Figures of the attribute stage (PNG, matplotlib Agg).

- `plot_joint`: the joint ablation / restoration curves of ``joint.csv`` (``ATTRIBUTION_JOINT``):
  one column per checkpoint; rows ablate LPD, ablate accuracy, restore LPD, restore accuracy;
  the top-k by signed IE as a line, the random k-sets as their mean and interval band, the
  clean and all-features-ablated levels as dashed lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from crosstime.files import atomic_path

TOP_COLOR, RANDOM_COLOR = "#C44E52", "#4C72B0"
PANELS = (("ablate", "lpd"), ("ablate", "accuracy"), ("restore", "lpd"), ("restore", "accuracy"))
LABELS = {"lpd": "LPD = log p(correct) − log p(wrong)", "accuracy": "accuracy"}


def plot_joint(rows: Sequence[dict[str, Any]], revisions: Sequence[str], levels: dict[str, dict[str, list[float]]],
               path: str | Path, title: str = "") -> Path:
    """``rows``: ``ATTRIBUTION_JOINT`` rows; ``levels[metric]`` = ``{"clean": [M], "all ablated": [M]}``
    for ``metric`` in ("lpd", "accuracy")."""
    M = len(revisions)
    fig, axes = plt.subplots(len(PANELS), M, figsize=(3.2 * M + 0.6, 2.3 * len(PANELS)), squeeze=False,
                             sharex=True, sharey="row")
    for m, rev in enumerate(revisions):
        for p, (mode, metric) in enumerate(PANELS):
            ax = axes[p, m]
            here = [r for r in rows if r["checkpoint"] == rev and r["mode"] == mode]
            top = sorted((r for r in here if r["ranking"] == "signed_ie"), key=lambda r: r["k"])
            rand = sorted((r for r in here if r["ranking"] == "random"), key=lambda r: r["k"])
            if rand:
                ks = [r["k"] for r in rand]
                ax.fill_between(ks, [r[f"{metric}_lo"] for r in rand], [r[f"{metric}_hi"] for r in rand],
                                color=RANDOM_COLOR, alpha=0.2, linewidth=0)
                ax.plot(ks, [r[metric] for r in rand], "o-", ms=3, color=RANDOM_COLOR, label="random k active")
            if top:
                ax.plot([r["k"] for r in top], [r[metric] for r in top], "o-", ms=3, color=TOP_COLOR,
                        label="top k by signed IE")
            for name, style in (("clean", "--"), ("all ablated", ":")):
                ax.axhline(levels[metric][name][m], color="#555555", linestyle=style, linewidth=0.9, label=name)
            ax.set_xscale("log")
            if p == 0:
                ax.set_title(rev)
            if m == 0:
                ax.set_ylabel(f"{mode}\n{LABELS[metric]}", fontsize=8)
            if p == len(PANELS) - 1:
                ax.set_xlabel("k features moved together")
            ax.tick_params(labelsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
