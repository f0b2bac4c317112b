"""Attribution: per-checkpoint indirect effects of crosscoder features, RelIE, ablations.

    effects.py   IE on one batch: integrated gradients (midpoint rule), AtP, exact ablation;
                 SiteForward runs a checkpoint from its site to the pair metric
    compute.py   IE of every feature in every checkpoint of a crosscoder, per pair of a task
    ablation.py  exact single-feature ablation of the reported features (ablation.csv rows)
    stats.py     RelIE (one-vs-all, pairwise, classes), top-k, bootstrap CIs, Spearman
    tables.py    the reported features: features.csv and confusion.csv rows, summary numbers
    stage.py     the `attribute` stage: AttributeConfig, attribute(), its outputs, print_attribution
"""

from crosstime.attribution.ablation import Ablation, ablate_features
from crosstime.attribution.compute import (
    Attribution,
    AttributionError,
    compute_attribution,
)
from crosstime.attribution.effects import (
    METHODS,
    BatchEffects,
    PairBatch,
    SiteForward,
    batch_effects,
    exact_effects,
    make_batches,
    midpoint_alphas,
)
from crosstime.attribution.stage import (
    AttributeConfig,
    AttributeResult,
    attribute,
    print_attribution,
)
from crosstime.attribution.stats import (
    bootstrap_ie,
    pairwise_rel_ie,
    rel_ie,
    spearman,
    top_features,
)
from crosstime.attribution.tables import Summary, summarise

__all__ = [
    "METHODS", "Ablation", "AttributeConfig", "AttributeResult", "Attribution", "AttributionError", "BatchEffects",
    "PairBatch", "SiteForward", "Summary", "ablate_features", "attribute", "batch_effects", "bootstrap_ie",
    "compute_attribution", "exact_effects", "make_batches", "midpoint_alphas", "pairwise_rel_ie", "print_attribution",
    "rel_ie", "spearman", "summarise", "top_features",
]
