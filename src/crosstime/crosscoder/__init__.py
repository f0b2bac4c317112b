"""Crosscoders: one sparse dictionary over several checkpoints' activations, and their training.

    from crosstime.crosscoder import TrainSettings, fit, load, load_for_store
    from crosstime.stages.train import TrainConfig, train     # the train stage, declared

    settings = TrainSettings(variant="batchtopk", variant_settings={"k": 32}, steps=2000)
    model = fit(acts, settings)                                    # acts [N, M, d] in memory
    model = train(TrainConfig(run="runs/x", steps=2000))           # the stage, on RUN/activations
    f = model.encode(x)            # x [B, M, d] -> f [B, F]
    x_hat = model.decode(f)        # -> [B, M, d]
    raw = model.folded()           # scales folded in: raw activations -> raw reconstructions
    model = load_for_store("runs/x/crosscoder", store)   # what every later stage opens

Modules: :mod:`.registry` (the variants and what each declares: model, recipe, own settings,
activation rule, checkpoint parallelism), :mod:`.model` (the one owner of a trained crosscoder:
weights, fold/unfold, save/load, the check against a store), :mod:`.recipe` (how a variant
trains), the variants :mod:`.relu`, :mod:`.topk`, :mod:`.jumprelu`, :mod:`.matryoshka`,
:mod:`.losses`, :mod:`.fused` (the hand-derived ReLU/L1 step), :mod:`.data` (tensor and store
sources), :mod:`.logs` (metrics), :mod:`.parallel` (checkpoint-parallel training),
:mod:`.training` (the trainer), :mod:`.streaming` (streaming: the train stage's other data source).
"""

from crosstime.crosscoder import jumprelu, matryoshka, relu, topk  # noqa: F401  (register the built-in variants)
from crosstime.crosscoder.data import DataError
from crosstime.crosscoder.jumprelu import JumpReLUConfig, JumpReLUSettings
from crosstime.crosscoder.matryoshka import MatryoshkaSettings
from crosstime.crosscoder.model import (
    SCALE_RTOL,
    Crosscoder,
    CrosscoderConfig,
    build,
    check_against_store,
    load,
    load_for_store,
)
from crosstime.crosscoder.recipe import Forward, Loss, Recipe, StepContext, StepOutput
from crosstime.crosscoder.registry import (
    BATCHTOPK,
    JUMPRELU,
    RELU,
    TOPK,
    VARIANTS,
    Activation,
    CheckpointParallel,
    CrosscoderError,
    Variant,
    VariantConfig,
    known_variants,
    register,
    variant,
)
from crosstime.crosscoder.relu import ReLUSettings
from crosstime.crosscoder.settings import TrainConfig, TrainSettings
from crosstime.crosscoder.topk import BatchTopKSettings, SparseFeatures, TopKConfig, TopKSettings
from crosstime.crosscoder.training import TrainingError, fit

__all__ = ["BATCHTOPK", "JUMPRELU", "RELU", "SCALE_RTOL", "TOPK", "VARIANTS", "Activation", "BatchTopKSettings",
           "CheckpointParallel", "Crosscoder", "CrosscoderConfig", "CrosscoderError", "DataError", "Forward",
           "JumpReLUConfig", "JumpReLUSettings", "Loss", "MatryoshkaSettings", "ReLUSettings", "Recipe",
           "SparseFeatures", "StepContext", "StepOutput", "TopKConfig", "TopKSettings", "TrainConfig",
           "TrainSettings", "TrainingError", "Variant", "VariantConfig", "build", "check_against_store", "fit",
           "known_variants", "load", "load_for_store", "register", "variant"]
