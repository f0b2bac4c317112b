"""What the evaluate stage writes and prints, in the schema of :mod:`crosstime.artifacts`.

- :func:`checkpoint_rows` / :func:`summary`: the per-checkpoint rows and the summary of
  ``evaluation.json`` (:class:`~crosstime.artifacts.Evaluation`);
- :func:`draw_plots`: the figures under ``evaluation/`` (:mod:`crosstime.evaluate.plots`);
- :func:`format_table` / :func:`paper_row`: what ``crosstime evaluate`` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich import box
from rich.table import Table

from crosstime.artifacts import CheckpointEvaluation, Evaluation, EvaluationSummary, Reconstruction
from crosstime.checkpoints import format_tokens
from crosstime.evaluate import geometry as G
from crosstime.evaluate import plots as P
from crosstime.evaluate.decoder import FeatureReading
from crosstime.evaluate.scaling import ScalingReading
from crosstime.evaluate.types import plot_typed_emergence

if TYPE_CHECKING:
    from rich.table import Table

MIN_ZERO_GAP = 0.05  # nats; below it CE recovered is flagged in the printed table


def checkpoint_rows(revisions: list[str], checkpoints: dict[str, dict], scales: list[float], recon: Reconstruction,
                    downstream: list[dict | None], reldec_mean: list[float]) -> list[CheckpointEvaluation]:
    """One :class:`CheckpointEvaluation` per checkpoint of the crosscoder (``revisions``, in its order).

    ``checkpoints``: the store manifest's ``{revision: {step, tokens_seen, ...}}``; ``scales``
    the crosscoder's s_m; ``recon`` :meth:`ReconstructionStats.result`; ``downstream[m]`` the
    splice's numbers (None when no context was spliced).
    """
    rows = []
    for m, rev in enumerate(revisions):
        rows.append(CheckpointEvaluation(
            revision=rev,
            step=checkpoints[rev].get("step"),
            tokens_seen=checkpoints[rev].get("tokens_seen"),
            scale=float(np.float32(scales[m])),  # the float32 factor the activations were multiplied by
            mse=recon.mse[m],
            explained_variance=recon.explained_variance[m],
            fvu=recon.fvu[m],
            reldec_mean=reldec_mean[m],
            **(downstream[m] or {}),
        ))
    return rows


def summary(recon: Reconstruction, rows: list[CheckpointEvaluation], scaling: ScalingReading) -> EvaluationSummary:
    """The headline numbers: L0, dead latents, overall EV / FVU / MSE, the features latent scaling flags for
    L1 shrinkage, and ΔCE, CE recovered and KL per checkpoint when every checkpoint was spliced."""
    spliced: dict[str, Any] = {}
    if all(r.delta_ce is not None for r in rows):
        delta = [r.delta_ce for r in rows]
        spliced = {"delta_ce": delta, "delta_ce_max": max(delta), "ce_recovered": [r.ce_recovered for r in rows],
                   "kl": [r.kl for r in rows]}
    return EvaluationSummary(
        l0=recon.l0,
        dead=recon.dead,
        dead_fraction=recon.dead_fraction,
        dead_window_tokens=recon.dead_window_tokens,
        explained_variance_overall=recon.explained_variance_overall,
        fvu_overall=recon.fvu_overall,
        mse_overall=recon.mse_overall,
        shrinkage_flagged=int(scaling.shrinkage_features.sum()),
        scaling_judged=int(scaling.judged.sum()),
        **spliced,
    )


def draw_plots(folder: Path, result: Evaluation, reading: FeatureReading, *, high: float, low: float,
               seed: int) -> list[str]:
    """Draw the figures into ``folder``; returns their file names."""

    revs = reading.revisions
    tokens = [r.tokens_seen for r in result.checkpoints]
    M = len(revs)
    alive = reading.alive.numpy()
    written = [P.plot_reldec(reading.shares.numpy(), reading.labels, revs, folder / "reldec.png", alive=alive,
                             high=high, low=low)]  # M > 3: the shares as a heatmap, no share classes
    live = alive if alive.any() else np.ones_like(alive)
    if M > 3:
        written.append(P.plot_trajectories(reading.norms.numpy()[live], np.asarray(reading.traj.labels)[live],
                                           tokens, folder / "trajectories.png", seed=seed))
    if M >= 3:
        written.append(P.plot_emergence(result.decoder.emergence.counts_live, tokens, revs,
                                        folder / "emergence.png"))
    if result.summary.delta_ce is not None:
        written.append(P.plot_delta_ce(result.checkpoints, folder / "delta_ce.png"))
    written.append(P.plot_frequency(result.reconstruction.frequency_histogram, folder / "frequency.png"))
    decoder = result.decoder
    dim = decoder.dimensionality
    baseline = (dim.participation_ratio, dim.pcs_90, dim.spectrum_rows) if dim.pcs_90 is not None else None
    written.append(G.plot_dimensionality(reading.dimensionality.numpy(), dim.total, alive, tokens, dim.d,
                                         folder / "dimensionality.png", baseline, decoder.presence.present))
    if M >= 2:  # a single checkpoint has no rotation
        written.append(G.plot_rotation(decoder.rotation, tokens, folder / "rotation.png"))
    if M >= 2:  # typed emergence: onsets over checkpoints (crosstime.evaluate.types)
        written.append(plot_typed_emergence(decoder.typed_emergence, tokens, folder / "typed_emergence.png"))
    return [p.name for p in written]


# -- the table printed by `crosstime evaluate` -------------------------------------------------

def format_table(result: Evaluation) -> Table:
    """A rich Table in the shape of the paper's (L0, dead, ΔCE per checkpoint) plus details."""

    s, st = result.summary, result.settings
    title = (f"crosscoder F={st.n_features} over {st.n_checkpoints} checkpoints, layer {st.layer} — "
             f"L0 {s.l0:.1f}, dead {s.dead} ({s.dead_fraction:.1%} over {s.dead_window_tokens:,} tokens), "
             f"EV {s.explained_variance_overall:.3f}")
    if s.shrinkage_flagged is not None:
        title += f", L1 shrinkage flagged by latent scaling for {s.shrinkage_flagged} of {s.scaling_judged} features"
    # fits 80 columns with step names up to 10 characters: no vertical rules, headers on two lines,
    # the checkpoint never cut (names before numbers)
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    table.add_column("checkpoint", justify="left", no_wrap=True, min_width=max(len(r.revision) for r in result.checkpoints))
    for col in ("tokens", "EV", "MSE", "CE\nclean", "CE\nspliced", "ΔCE", "CE\nrecov.", "KL", "RelDec\nmean"):
        table.add_column(col, justify="right", no_wrap=True)
    small_gap = False
    for r in result.checkpoints:
        recovered = _num(r.ce_recovered, ".3f")
        if r.zero_gap is not None and abs(r.zero_gap) < MIN_ZERO_GAP:
            recovered, small_gap = recovered + "*", True
        table.add_row(r.revision, format_tokens(r.tokens_seen) if r.tokens_seen else "0",
                      _num(r.explained_variance, ".3f"), _num(r.mse, ".4f"), _num(r.ce_clean, ".3f"),
                      _num(r.ce_spliced, ".3f"), _num(r.delta_ce, ".3f"), recovered, _num(r.kl, ".4f"),
                      _num(r.reldec_mean, ".3f"))
    if small_gap:
        table.caption = (f"* zero-ablation raises CE by less than {MIN_ZERO_GAP} nats here, so CE recovered "
                         "(1 − ΔCE / (zero − clean)) is not meaningful")
    table.caption = ((table.caption + "\n") if table.caption else "") + ("CE recov.: CE recovered; RelDec mean: the "
                                                                          "mean RelDec share of the live features")
    return table


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def paper_row(result: Evaluation) -> str:
    """One line as in the paper's table: ``L0 | Dead | ΔCE A / B / C``."""
    s = result.summary
    # ΔCE is 1e-3 nats on small models: 3 significant figures, not 2 decimals (which print "0.00")
    dce = " / ".join(f"{v:+.3g}" for v in s.delta_ce or []) or "—"
    return f"L0 {s.l0:.2f} | Dead {s.dead} | ΔCE {dce}"
