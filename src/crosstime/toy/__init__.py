"""The embedded toy world: an agreement grammar, its minimal pairs, and a tiny GPT-NeoX
pretrained on it and saved at Pythia-style log-spaced checkpoints.

>>> from crosstime.toy import toy_world
>>> from crosstime.series import open_series
>>> series = open_series(toy_world())          # built once, then cached
>>> model = series.load_model("step512"); tok = series.load_tokenizer()
>>> tok("the dogs near the man").input_ids[0] == tok.bos_token_id   # <bos> is always prepended
True
"""

from crosstime.toy.grammar import (
    PAIR_TYPES,
    Grammar,
    Sentence,
    check_agreement,
    make_pairs,
    vocabulary,
)
from crosstime.toy.pretrain import (
    TOY_VERSION,
    ToyConfig,
    accuracy_table,
    agreement_correct,
    build_toy_world,
    encode_pairs,
    make_tokenizer,
    pythia_schedule,
    read_build,
    toy_world,
    toy_world_cached,
    toy_world_path,
)

__all__ = [
    "PAIR_TYPES", "Grammar", "Sentence", "check_agreement", "make_pairs", "vocabulary",
    "TOY_VERSION", "ToyConfig", "accuracy_table", "agreement_correct", "build_toy_world", "encode_pairs",
    "make_tokenizer", "pythia_schedule", "read_build", "toy_world", "toy_world_cached", "toy_world_path",
]
