"""Attribution: per-checkpoint indirect effects of crosscoder features, RelIE, ablations.

    effects.py   IE on one batch: integrated gradients (midpoint rule), AtP, exact ablation;
                 SiteForward runs a checkpoint from its site to the pair metric
    stats.py     RelIE (one-vs-all, pairwise, classes), top-k, bootstrap CIs, Spearman
    stage.py     the `attribute` stage: AttributeConfig, attribute(), feature tables, ablation
"""

from crosstime.attribution.effects import (
    METHODS, BatchEffects, PairBatch, SiteForward, batch_effects, exact_effects, make_batches, midpoint_alphas,
)
from crosstime.attribution.stats import bootstrap_ie, pairwise_rel_ie, rel_ie, spearman, top_features

__all__ = [
    "METHODS", "BatchEffects", "PairBatch", "SiteForward", "batch_effects", "exact_effects", "make_batches",
    "midpoint_alphas", "bootstrap_ie", "pairwise_rel_ie", "rel_ie", "spearman", "top_features",
]
