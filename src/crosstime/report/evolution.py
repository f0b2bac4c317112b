"""The second paper's figures in the report: the two-phase figure, and what the dashboard's
"Evolution" panel reads (rotation, feature dimensionality beside its baselines, typed emergence, the phases).

    overview.evolution = evolution_overview(scan, evaluation, missing)
    two_phase_figure(overview.evolution, run.report / TWO_PHASE_PNG)

``overview.evolution`` (:class:`~crosstime.artifacts.Evolution`): ``checkpoints`` (the crosscoder's:
``revision, step, tokens``), ``dynamics`` (every scanned checkpoint: ``revision, step, tokens, loss,
kl_unigram, kl_bigram, bigram_loss``, or None), ``phases`` (``scan/phases.json``, or None), and from
``evaluation.json``'s ``decoder``: ``dimensionality``, ``presence``, ``rotation``, ``typed_emergence`` (each
None when the evaluation lacks it; listed in ``missing``).
The one-line readings are :mod:`crosstime.report.findings`'s ``*_reading`` functions.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from crosstime.artifacts import (
    EVALUATION_FILE,
    EVOLUTION_DYNAMICS,
    SCAN_PHASES,
    Evaluation,
    Evolution,
    EvolutionCheckpoint,
    EvolutionDynamics,
    Figure,
    Phases,
)
from crosstime.checkpoints import format_tokens
from crosstime.files import atomic_path
from crosstime.runs import ScanOutputs
from crosstime.series import log_x, token_floor

TWO_PHASE_PNG = "two_phase.png"
# the decoder analyses of the evaluation that the panel reads (Decoder's fields), and what their absence costs
DECODER_KEYS = {
    "dimensionality": "no feature dimensionality (figure, reading)",
    "presence": "no present-feature counts beside dimensionality",
    "rotation": "no rotation reading",
    "typed_emergence": "no emergence order by feature type, so no comparison with the phases",
}
# the figure each reading captions: figure name (as dashboard._figures names it) -> reading key
EVOLUTION_FIGURES = {
    f"report/{TWO_PHASE_PNG}": "phases",
    "evaluation/dimensionality.png": "dimensionality",
    "evaluation/rotation.png": "rotation",
    "evaluation/typed_emergence.png": "typed_emergence",
}


def evolution_overview(scan: ScanOutputs | None, evaluation: Evaluation | None, missing: list[str]) -> Evolution:
    """What the Evolution panel and the two-phase figure read (see the module docstring). ``scan``: what the
    scan wrote, None where it did not finish (its absence is already in ``missing``)."""
    dynamics, phases = None, None
    if scan is not None and scan.dynamics is not None:
        dynamics = [EvolutionDynamics(**{k: r[k] for k in EVOLUTION_DYNAMICS}) for r in scan.dynamics]
        phases = scan.phases
        if phases is None:
            missing.append(f"scan/{SCAN_PHASES} (re-run `crosstime scan`): no phase marks in "
                           f"report/{TWO_PHASE_PNG}, no phase order to compare the feature types' emergence with")
    if evaluation is None:
        return Evolution(checkpoints=[], dynamics=dynamics, phases=phases, dimensionality=None, presence=None,
                         rotation=None, typed_emergence=None)
    decoder = evaluation.decoder
    out = Evolution(checkpoints=[EvolutionCheckpoint(revision=c.revision, step=c.step, tokens=c.tokens_seen)
                                 for c in evaluation.checkpoints],
                    dynamics=dynamics, phases=phases, dimensionality=decoder.dimensionality,
                    presence=decoder.presence, rotation=decoder.rotation, typed_emergence=decoder.typed_emergence)
    found = {"dimensionality": out.dimensionality, "presence": out.presence, "rotation": out.rotation,
             "typed_emergence": out.typed_emergence}
    for key, cost in DECODER_KEYS.items():
        if found[key] is None:  # an evaluation from before the analysis existed
            missing.append(f"{EVALUATION_FILE}: decoder.{key} (re-run `crosstime evaluate`): {cost}")
    return out


def _phase_marks(ax, phases: Phases | None, floor: float, right: float, labelled: bool) -> None:
    """A vertical line at each learned phase's onset (tokens seen); with ``labelled`` each line gets a
    number above the axes and the phases starting there are listed by number to the right of the axes
    (several phases often share a checkpoint: listed beside the lines they would overlap)."""
    import textwrap

    onsets: dict[float, list[str]] = {}
    for p in phases.phases if phases is not None else []:
        if p.step is not None:
            onsets.setdefault(float(p.tokens or floor), []).append(p.name)
    key = []
    for k, (x, names) in enumerate(sorted(onsets.items()), start=1):
        ax.axvline(x, color="0.45", ls=":", lw=1)
        if labelled:
            ax.annotate(str(k), xy=(x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                        textcoords="offset points", fontsize=8, color="0.2", ha="center", va="bottom")
            key.append(textwrap.fill(f"{k}: {', '.join(names)}", 36, subsequent_indent="   "))
    if key:
        ax.text(1.02, 0.0, "phase onsets (dotted lines)\n" + "\n".join(key), transform=ax.transAxes, fontsize=7,
                color="0.2", va="bottom", ha="left")


def two_phase_figure(evolution: Evolution, path: Path) -> Path | None:
    """``report/two_phase.png``: loss and KL(model ‖ unigram / bigram) over every scanned checkpoint
    (top), total feature dimensionality Σ D_i / d over the crosscoder's (bottom), the phases' onsets
    marked on both. None (nothing written) without the dynamics."""
    rows = evolution.dynamics
    if not rows:
        return None
    tokens = [r.tokens for r in rows]
    x, floor = log_x(tokens), token_floor(tokens)
    dim = evolution.dimensionality
    fig, axes = plt.subplots(2 if dim else 1, 1, figsize=(9, 6.4 if dim else 3.8), sharex=True, squeeze=False)
    top = axes[0, 0]
    top.plot(x, [r.loss for r in rows], "o-", color="black", ms=3, label="held-out loss")
    top.plot(x, [r.kl_unigram for r in rows], "s-", color="tab:orange", ms=3, label="KL(model ‖ unigram)")
    top.plot(x, [r.kl_bigram for r in rows], "^-", color="tab:blue", ms=3, label="KL(model ‖ bigram)")
    top.axhline(rows[-1].bigram_loss, color="tab:blue", lw=0.8, ls="--", label="bigram entropy (its loss)")
    top.set_ylabel("nats")
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never over a curve
    top.set_title("Two phases: n-gram statistics, then features (dotted: each phase's onset, scan/phases.json)",
                  fontsize=10, pad=14)  # room for the onset numbers above the axes
    if dim:
        dx = np.array([c.tokens if c.tokens else floor for c in evolution.checkpoints], dtype=float)
        bottom = axes[1, 0]
        bottom.plot(dx, dim.total, "o-", color="tab:green", ms=4)
        bottom.set_ylabel(f"Σ D_i / d  (d = {dim.d})")
        bottom.set_title(f"total feature dimensionality, {dim.live_features} live features", fontsize=9)
    for k, ax in enumerate(axes[:, 0]):
        ax.set_xscale("log")
        _phase_marks(ax, evolution.phases, floor, float(x.max()), labelled=k == 0)
        ax.grid(alpha=0.3)
    ticks = [r.tokens for r in rows]
    axes[-1, 0].set_xticks(x, [format_tokens(t) if t else "0" for t in ticks], fontsize=7, rotation=45)
    axes[-1, 0].minorticks_off()
    axes[-1, 0].set_xlabel("tokens seen (log scale; 0 drawn at half the first non-zero count)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def caption_figures(figures: list[Figure], readings: dict[str, str | None]) -> None:
    """Mark the Evolution figures (``evolution``: the dashboard shows them in their own section) and give
    each its one-line reading (``caption``; one whose reading's inputs are absent keeps none)."""
    for figure in figures:
        key = EVOLUTION_FIGURES.get(figure.name)
        if key is None:
            continue
        figure.evolution = True
        if readings.get(key):
            figure.caption = readings[key]
