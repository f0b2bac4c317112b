"""Crosscoders: one sparse dictionary over several checkpoints' activations, and their training.

    from crosstime.crosscoder import Crosscoder, CrosscoderConfig, TrainConfig, load, train

    model = train(acts, TrainConfig(variant="batchtopk", k=32, steps=2000))  # acts [N, M, d]
    f = model.encode(x)            # x [B, M, d] -> f [B, F]
    x_hat = model.decode(f)        # -> [B, M, d]
    raw = model.folded()           # scales folded in: raw activations -> raw reconstructions
    model.save("out/"); load("out/")

Modules: :mod:`.model` (weights, fold/unfold, save/load, variant registry),
:mod:`.variants` (relu, topk, batchtopk, jumprelu), :mod:`.losses`, :mod:`.fused`
(the hand-derived ReLU/L1 step), :mod:`.data` (tensor and store sources), :mod:`.training`.
"""

from crosstime.crosscoder import variants as _variants  # noqa: F401  (registers the variants)
from crosstime.crosscoder.model import (
    VARIANTS,
    Crosscoder,
    CrosscoderConfig,
    CrosscoderError,
    build,
    known_variants,
    load,
    register,
)
from crosstime.crosscoder.data import DataError
from crosstime.crosscoder.training import TrainConfig, train
from crosstime.crosscoder.variants import SparseFeatures

__all__ = ["VARIANTS", "Crosscoder", "CrosscoderConfig", "CrosscoderError", "DataError", "SparseFeatures",
           "TrainConfig", "build", "known_variants", "load", "register", "train"]
