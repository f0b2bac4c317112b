"""Crosscoders: one sparse dictionary over several checkpoints' activations, and their training.

    from crosstime.crosscoder import TrainSettings, fit, load, load_for_store
    from crosstime.stages.train import TrainConfig, train     # the train stage, declared

    model = fit(acts, TrainSettings(variant="batchtopk", k=32, steps=2000))   # acts [N, M, d] in memory
    model = train(TrainConfig(run="runs/x", steps=2000))                     # the stage, on RUN/activations
    f = model.encode(x)            # x [B, M, d] -> f [B, F]
    x_hat = model.decode(f)        # -> [B, M, d]
    raw = model.folded()           # scales folded in: raw activations -> raw reconstructions
    model = load_for_store("runs/x/crosscoder", store)   # what every later stage opens

Modules: :mod:`.model` (the one owner of a trained crosscoder: weights, fold/unfold,
save/load, the check against a store, the variant registry), :mod:`.recipe` (how a variant
trains), the variants :mod:`.relu`, :mod:`.topk`, :mod:`.jumprelu`, :mod:`.matryoshka`, :mod:`.losses`,
:mod:`.fused` (the hand-derived ReLU/L1 step), :mod:`.data` (tensor and store sources),
:mod:`.logs` (metrics), :mod:`.training` (the trainer), :mod:`.streaming` (the streaming data source).
"""

from crosstime.crosscoder import jumprelu, matryoshka, relu, topk  # noqa: F401  (register the built-in variants)
from crosstime.crosscoder.data import DataError
from crosstime.crosscoder.model import (
    SCALE_RTOL,
    VARIANTS,
    Crosscoder,
    CrosscoderConfig,
    CrosscoderError,
    build,
    check_against_store,
    known_variants,
    load,
    load_for_store,
    register,
)
from crosstime.crosscoder.recipe import Forward, Loss, Recipe, StepContext, StepOutput
from crosstime.crosscoder.settings import TrainConfig, TrainSettings
from crosstime.crosscoder.topk import SparseFeatures
from crosstime.crosscoder.training import TrainingError, fit

__all__ = ["SCALE_RTOL", "VARIANTS", "Crosscoder", "CrosscoderConfig", "CrosscoderError", "DataError", "Forward",
           "Loss", "Recipe", "SparseFeatures", "StepContext", "StepOutput", "TrainConfig", "TrainSettings", "TrainingError", "build",
           "check_against_store", "fit", "known_variants", "load", "load_for_store", "register"]
