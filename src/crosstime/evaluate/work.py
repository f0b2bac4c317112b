"""The evaluate stage's work (declared in :mod:`crosstime.stages.evaluate`): how well a crosscoder reconstructs each checkpoint, and what its
decoder says about when each feature exists.

    from crosstime.stages.evaluate import EvaluateConfig, evaluate
    result = evaluate(EvaluateConfig(run="runs/toy"))      # also: crosstime evaluate runs/toy

Reads ``RUN/crosscoder`` and
``RUN/activations`` (held-out split; train rows only to widen the dead-latent window), and
writes (schema: :mod:`crosstime.artifacts`)

    RUN/evaluation.json               :class:`~crosstime.artifacts.Evaluation`: every number, per
                                      checkpoint, and the settings used (with the crosscoder's
                                      inference rule)
    RUN/evaluation/features.csv       :data:`~crosstime.artifacts.EVALUATION_FEATURES`: per feature
                                      frequency, RelDec class and shares, norms, onset/peak/offset
                                      (checkpoint indices), pairwise RelDec, consecutive cosines,
                                      presence per checkpoint, latent scaling β per checkpoint
                                      and where it flags shrinkage
    RUN/evaluation/*.png              RelDec view, trajectories, emergence, ΔCE, frequency, dimensionality,
                                      rotation, typed emergence

and records its settings in ``RUN/config.yaml`` once it has finished (:mod:`crosstime.stage`).
The checkpoints are the crosscoder's own (``model.revisions``, possibly a subset of the
store's); rows are read for those only, normalised with the crosscoder's own scales.

1. Reconstruction (normalised space, as trained; :mod:`crosstime.evaluate.metrics`): MSE, explained
   variance about the mean per checkpoint and overall, FVU, L0, dead latents, firing
   frequencies — over ``tokens`` held-out rows.
2. Downstream (raw space): for each checkpoint m, its reconstruction x̂_m — computed from all
   M checkpoints' stored activations of the same tokens, then mapped back to raw space by the
   folded crosscoder (:meth:`Crosscoder.folded`: ``x̂_m / s_m``) — replaces block L's output
   in checkpoint m's own forward pass at the kept positions (the store's ``first_position``;
   position 0, the attention sink, keeps its clean value by default). Clean, spliced and
   zero-ablated CE, ΔCE, CE recovered and KL(clean ‖ spliced) over the predictions made at
   the replaced positions of ``contexts`` held-out contexts.
3. Decoder space (:mod:`crosstime.evaluate.decoder`, normalised-space decoder as in the paper):
   presence relative to each feature's own peak (present / weak / absent per checkpoint, and the
   presence classes at any M), RelDec one-vs-all and pairwise shares (their share classes for
   M <= 3 only), cosine between checkpoints, onset/peak/offset and the emergence histogram;
   feature dimensionality over the live features beside the activations' effective rank and the
   count of present features, and rotation: consecutive-checkpoint cosines and the cosine with
   the final direction over the features present at both, with a turn called only below
   ``turn_bound`` (:mod:`crosstime.evaluate.geometry`; ``decoder.presence``,
   ``decoder.dimensionality``, ``decoder.rotation``, ``dimensionality.png``, ``rotation.png``).
4. Latent scaling (:mod:`crosstime.evaluate.scaling`, Minder et al. 2025; summed in the encode pass
   over the reconstruction rows): per feature and checkpoint, the least-squares scale with which
   the feature's peak decoder direction explains that checkpoint's activation (β) and its
   reconstruction error with the feature's own term added back (β_error), their shares, and the
   shrinkage flag: where the decoder is weak or absent at a checkpoint but β_error says present
   (>= ``presence`` × the feature's peak norm, by ``scaling_margin``): a decoder shrunk by the L1
   penalty; against a null of random directions, with its effect size.
5. Typed emergence (:mod:`crosstime.evaluate.types`; summed in the encode pass over the reconstruction
   rows): per feature the correlation ratio η² of its activation with rule-based properties of the
   tokens (current token, previous token, induction flag; the series' own labels where its family has
   a labeller: the toy grammar's on a toy world; :func:`make_labeler`),
   its type (best property when η² ≥ ``type_threshold``), and per type the onset counts and median
   onset (``decoder.typed_emergence``, ``typed_emergence.png``).

The held-out contexts used are a seeded random sample (not the first ones, notes B11). A
crosscoder whose features depend on the batch in eval mode (BatchTopK without an estimated
threshold) is evaluated with a warning, under the rule it records.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from crosstime.artifacts import EVALUATION_FEATURES, Evaluation, EvaluationSettings, Reconstruction, write_model
from crosstime.crosscoder import Crosscoder
from crosstime.errors import CrosstimeError
from crosstime.evaluate.decoder import (
    ABSENT_FRACTION,
    PRESENT_FRACTION,
    FeatureReading,
    decoder_summary,
    feature_rows,
    read_features,
)
from crosstime.evaluate.geometry import TURN_BOUND, Spectrum
from crosstime.evaluate.outputs import checkpoint_rows, draw_plots, summary
from crosstime.evaluate.passes import (
    encode_pass,
    raw_decoder,
    splice_checkpoint,
    top_up_firing,
)
from crosstime.evaluate.scaling import ScalingReading, ScalingStats, read_scaling
from crosstime.evaluate.types import (
    Labeler,
    TypeReading,
    TypeRules,
    TypeStats,
    assign_types,
    context_boundary,
    typed_emergence,
)
from crosstime.series import CheckpointSeries, looks_local, open_series
from crosstime.stage import DEVICE_HELP, Count, Device, StageConfig
from crosstime.store import ActivationStore


class EvaluationError(CrosstimeError):
    """An evaluation request that cannot be served (no held-out split, too few held-out tokens)."""


# On the demo run (toy world, F = 1024, 3 checkpoints, 19,812 held-out rows) the best η² per fired feature
# is bimodal: 624 of 857 features at >= 0.8 (token features), 211 below 0.5, only 22 in [0.5, 0.8) with
# the fewest (4) in [0.5, 0.6): 0.5 sits at the trough and means "the property explains most of the variance".
TYPE_THRESHOLD = 0.5
TYPE_THRESHOLD_HELP = ("typed emergence: a feature is typed when its best score (η² for the token ids, specificity "
                       "for the flags) is at least this, else 'other'; on the demo run nine in ten scored features "
                       "have a best score >= 0.9 and the rest spread thinly below it: 0.5 splits that tail")


class EvaluateConfig(StageConfig):
    """Settings of the evaluate stage: RUN/crosscoder on RUN/activations -> RUN/evaluation.json and
    RUN/evaluation/ (shared by ``crosstime evaluate`` and the Python API)."""

    stage: ClassVar[str] = "evaluate"
    execution: ClassVar[frozenset[str]] = frozenset({"batch_rows", "context_batch_size", "device"})

    tokens: Count | None = Field(None, gt=0, description="held-out activation rows for the reconstruction metrics, "
                                                        "rounded up to whole contexts (default: all held-out rows)")
    contexts: int | None = Field(None, ge=0, description="held-out contexts for the downstream (ΔCE) metrics "
                                                       "(default: all held-out contexts; 0 skips them)")
    batch_rows: int = Field(4096, gt=0, description="activation rows encoded at once")
    context_batch_size: int | None = Field(None, gt=0, description="contexts per forward pass "
                                                                   "(default: about 2048 tokens per forward)")
    dead_tokens: Count = Field(100_000, ge=1, description="at least this many tokens over which a latent that never "
                                                          "fires is dead (and firing frequencies are counted): all the "
                                                          "held-out rows, topped up with train rows when fewer")
    presence: float = Field(PRESENT_FRACTION, gt=0, le=1,
                            description="a feature is present at a checkpoint where its decoder norm is at least this "
                                        "share of its own largest norm (onsets, presence classes, the shrinkage flag, "
                                        "rotation's feature filter)")
    presence_absent: float = Field(ABSENT_FRACTION, ge=0, le=1,
                                   description="a feature is absent where its decoder norm is below this share of its "
                                               "own largest (weak between the two)")
    turn_bound: float = Field(TURN_BOUND, ge=-1, le=1,
                              description="rotation: a turn is an interval whose median consecutive-checkpoint cosine "
                                          "(features present at both ends) is below this")
    high: float = Field(0.7, gt=0, le=1, description="RelDec share classes (M <= 3 only): a dominant checkpoint's "
                                                     "share exceeds this")
    low: float = Field(0.3, ge=0, lt=1, description="RelDec share classes (M <= 3 only): a checkpoint with at least "
                                                    "this share is shared")
    scaling_min_tokens: int = Field(20, ge=1, description="latent scaling flags shrinkage only for features that fire "
                                                          "on at least this many held-out rows")
    scaling_margin: float = Field(0.1, ge=0, lt=1, description="latent scaling flags shrinkage at a checkpoint only "
                                                              "where beta_error exceeds the decoder norm by at least "
                                                              "this share of the feature's largest norm")
    device: Device = Field("auto", description=DEVICE_HELP)
    model_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype the checkpoints run in for the downstream metrics")
    seed: int = Field(0, description="seed of the held-out context sample and of the plotted sample features")
    type_threshold: float = Field(TYPE_THRESHOLD, ge=0, le=1, description=TYPE_THRESHOLD_HELP)
    type_margin: float = Field(0.1, ge=0, le=1, description="typed emergence: the simplest property (current token, "
                                                           "previous token, induction, toy labels) within this of "
                                                           "the best score is the type")
    type_min_rows: int = Field(20, ge=1, description="typed emergence: features that fire on fewer held-out rows "
                                                     "are 'unscored' (their scores are mostly chance); a label's "
                                                     "type needs as many labelled rows")
    type_min_labelled_share: float = Field(0.5, ge=0, le=1, description="typed emergence: a label's type needs this "
                                                                        "share of the feature's activation mass on "
                                                                        "labelled rows")
    type_min_label_tokens: int = Field(5, ge=1, description="typed emergence: a label's type needs the feature to "
                                                            "fire inside the label on this many distinct tokens")
    induction_match: int = Field(3, ge=1, description="typed emergence: a position is on a repeated span (induction) "
                                                      "when the last this-many tokens ending at it occurred earlier "
                                                      "in the same context")
    plots: bool = Field(True, description="draw the figures under RUN/evaluation/")

    @model_validator(mode="after")
    def _absent_below_present(self) -> EvaluateConfig:
        if self.presence_absent > self.presence:
            raise ValueError(f"presence_absent ({self.presence_absent}) must not exceed presence ({self.presence})")
        return self

    def output(self) -> Path:
        return self.rundir.evaluation_file

    def output_files(self) -> list[Path]:
        """evaluation.json and everything in RUN/evaluation/ (features.csv, the figures)."""
        return [self.rundir.evaluation_file, *(p for p in self.rundir.evaluation.iterdir() if p.is_file())]


# -- inputs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """Which held-out contexts serve which metric (a seeded sample, sorted; store context indices)."""

    heldout_contexts: int
    recon_contexts: np.ndarray
    down_contexts: np.ndarray


@dataclass
class Inputs:
    """Everything the work needs, checked: ``model`` in normalised space, eval mode, on ``device``;
    ``series`` None when no context is spliced."""

    store: ActivationStore
    model: Crosscoder
    plan: Plan
    series: CheckpointSeries | None
    device: torch.device


def check_store(store: ActivationStore) -> None:
    """The store can be evaluated: its tokens are as harvested and it has a held-out split."""
    store.check_tokens()  # before any model is loaded
    if store.n_contexts("heldout") == 0:
        raise EvaluationError(f"the store at {store.root} has no held-out split (0 held-out contexts), so nothing "
                              "can be evaluated on unseen tokens. Harvest a store with held-out tokens "
                              "(--heldout-tokens > 0).")


def warn_if_batch_dependent(config: EvaluateConfig, model: Crosscoder) -> None:
    """A crosscoder whose features depend on the batch is evaluated, but not silently."""
    if model.inference_depends_on_batch:
        warnings.warn(f"the {model.config.variant} crosscoder at {config.rundir.crosscoder} has no estimated "
                      "threshold, so its features depend on the batch: evaluating with the rule it records "
                      f"({model.inference_rule}); its numbers change with batch_rows (here {config.batch_rows}, "
                      "rounded down to whole contexts). Train it past threshold_start_step to estimate a threshold.",
                      stacklevel=4)  # points at the caller of evaluate()


def make_plan(config: EvaluateConfig, store: ActivationStore) -> Plan:
    """The held-out contexts of each metric; asking for more than the store holds is refused."""
    n_ctx = store.n_contexts("heldout")
    rpc = store.rows_per_context
    available_rows = n_ctx * rpc
    if config.tokens is not None and config.tokens > available_rows:
        raise EvaluationError(f"--tokens {config.tokens} asks for more held-out activation rows than the store has "
                              f"({available_rows} = {n_ctx} contexts × {rpc} kept positions). Pass --tokens "
                              f"{available_rows} or less, or harvest more held-out tokens.")
    if config.contexts is not None and config.contexts > n_ctx:
        raise EvaluationError(f"--contexts {config.contexts} asks for more held-out contexts than the store has "
                              f"({n_ctx}). Pass --contexts {n_ctx} or less, or harvest more held-out tokens.")
    n_recon = n_ctx if config.tokens is None else math.ceil(config.tokens / rpc)
    n_down = n_ctx if config.contexts is None else config.contexts
    lo, _hi = store.context_range("heldout")
    order = np.random.default_rng(config.seed).permutation(n_ctx)
    return Plan(n_ctx, np.sort(order[:n_recon]) + lo, np.sort(order[:n_down]) + lo)


# -- the work ----------------------------------------------------------------------------------

def work(config: EvaluateConfig, inputs: Inputs, start: float) -> Evaluation:
    """The stage's work (:mod:`crosstime.stages.evaluate` opens the inputs and holds the run): reconstruction,
    splicing, decoder readings, and the outputs written."""
    timing: dict[str, float] = {}

    t = time.perf_counter()
    recon, frequency, scaling_stats, latents, type_stats, spectrum = _reconstruction(config, inputs)
    timing["reconstruction_s"] = time.perf_counter() - t

    t = time.perf_counter()
    downstream = _downstream(config, inputs, latents)
    timing["downstream_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model = inputs.model.cpu()  # the decoder readings run on the CPU: the same numbers whichever device encoded
    reading = read_features(model, frequency, presence=config.presence, absent=config.presence_absent,
                            high=config.high, low=config.low)
    tokens = [inputs.store.manifest["checkpoints"][r].get("tokens_seen") for r in model.revisions]
    decoder = decoder_summary(reading, tokens, spectrum, high=config.high, low=config.low, turn_bound=config.turn_bound)
    scaling = read_scaling(scaling_stats, reading.norms, reading.revisions, presence=config.presence,
                           margin=config.scaling_margin, min_tokens=config.scaling_min_tokens)
    decoder.latent_scaling = scaling.summary()
    types = assign_types(type_stats, TypeRules(config.type_threshold, config.type_min_rows, config.type_margin,
                                               config.type_min_labelled_share, config.type_min_label_tokens))
    decoder.typed_emergence = typed_emergence(types, reading.traj.onset.tolist(), reading.revisions)
    timing["decoder_s"] = time.perf_counter() - t

    rows = checkpoint_rows(model.revisions, inputs.store.manifest["checkpoints"], model.scales, recon, downstream,
                           decoder.reldec_mean)
    result = Evaluation(settings=_settings(config, inputs, recon, types.properties),
                        summary=summary(recon, rows, scaling), checkpoints=rows, reconstruction=recon, decoder=decoder,
                        timing=timing)
    _write_outputs(config, result, reading, scaling, types, start)
    return result


def _reconstruction(config: EvaluateConfig, inputs: Inputs) -> tuple[Reconstruction, torch.Tensor, ScalingStats,
                                                                      dict, TypeStats, Spectrum]:
    """The encode pass and the dead-latent window: (metrics, firing frequency ``[F]``, latent-scaling sums,
    downstream latents, type sums, the activations' effective rank over the reconstruction rows)."""
    store, model = inputs.store, inputs.model
    encoded = encode_pass(store, model, inputs.plan.recon_contexts, inputs.plan.down_contexts, inputs.device,
                          config.batch_rows, config.progress, make_labeler(config, store))
    top_up_firing(store, model, encoded.stats, inputs.device, config.dead_tokens, config.batch_rows, config.seed,
                  config.progress)
    return (encoded.stats.result(dead_min_tokens=config.dead_tokens), encoded.stats.frequency, encoded.scaling,
            encoded.latents, encoded.types, encoded.spectrum.result())


def make_labeler(config: EvaluateConfig, store: ActivationStore) -> Labeler:
    """The typed-emergence row labels of this store: the generic properties, and the labels of its
    series' own labeller (:meth:`~crosstime.series.CheckpointSeries.labeller`; the toy world's grammar).

    The series is opened for its labeller only when its source is local (:func:`looks_local`, the rule
    :func:`open_series` follows: a folder, never sent to the Hub): opening it reads its ``series.json``,
    and the toy family's labeller loads its tokenizer from disk. A Hub series is not opened (it could go
    to the network, and an unknown family's cannot be opened without its revisions): no Hub family
    has a labeller, so it gets the generic properties only. A local series folder that is gone is an
    error (:class:`~crosstime.series.SeriesError`)."""
    source = store.manifest["series"]["source"]
    labeller = open_series(source).labeller() if looks_local(source) else None
    return Labeler(store.first_position, config.induction_match, context_boundary(store.tokens), labeller)


def _downstream(config: EvaluateConfig, inputs: Inputs, latents: dict[int, torch.Tensor]) -> list[dict | None]:
    """Each checkpoint's splice numbers, one checkpoint (model) at a time; all None when none is spliced."""
    model = inputs.model
    if inputs.series is None:
        return [None] * model.n_checkpoints
    W, b = raw_decoder(model)  # [F, M, d], [M, d]
    return [splice_checkpoint(inputs.store, inputs.series, rev, W[:, m].contiguous(), b[m], inputs.plan.down_contexts,
                              latents, model_dtype=config.model_dtype, context_batch_size=config.context_batch_size,
                              device=inputs.device, progress=config.progress)
            for m, rev in enumerate(model.revisions)]


def _settings(config: EvaluateConfig, inputs: Inputs, recon: Reconstruction,
              type_properties: Sequence[str]) -> EvaluationSettings:
    """The ``settings`` of ``evaluation.json``: the config (its device resolved) and what the run decided
    (``type_properties``: the properties the features were typed by)."""
    store, model, plan = inputs.store, inputs.model, inputs.plan
    return EvaluationSettings(
        **config.model_dump(mode="json") | {"device": str(inputs.device)},
        crosscoder_path=str(config.rundir.crosscoder),
        store_path=str(store.root),
        revisions=list(model.revisions),
        layer=store.layer,
        variant=model.config.variant,
        inference_rule=model.inference_rule,
        n_features=model.n_features,
        n_checkpoints=model.n_checkpoints,
        d_model=model.d_model,
        first_position=store.first_position,
        excluded_positions=list(range(store.first_position)),
        reconstruction_space="normalised (x · s_m, as trained)",
        downstream_space="raw (x̂_m / s_m = crosscoder with scales folded)",
        reconstruction_tokens=recon.tokens,
        reconstruction_contexts=len(plan.recon_contexts),
        downstream_contexts=len(plan.down_contexts),
        heldout_contexts=plan.heldout_contexts,
        context_len=store.context_len,
        type_properties=list(type_properties),
    )


def _write_outputs(config: EvaluateConfig, result: Evaluation, reading: FeatureReading, scaling: ScalingReading,
                   types: TypeReading, start: float) -> None:
    """features.csv, the figures (those of an earlier evaluation removed first) and evaluation.json, last."""
    folder = config.rundir.evaluation
    EVALUATION_FEATURES.write(folder, feature_rows(reading, scaling, types), reading.revisions)
    for old in folder.glob("*.png"):  # figures of an earlier evaluation (other M, or plots since turned off)
        old.unlink()
    if config.plots:
        t = time.perf_counter()
        result.plots = draw_plots(folder, result, reading, high=config.high, low=config.low, seed=config.seed)
        result.timing["plots_s"] = time.perf_counter() - t
    result.timing["total_s"] = time.perf_counter() - start
    write_model(result, config.rundir.evaluation_file)
