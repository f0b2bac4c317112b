"""Attribution: per-checkpoint indirect effects of crosscoder features, RelIE, ablations.

    effects.py   IE on one batch: integrated gradients (midpoint rule), AtP, exact ablation;
                 SiteForward runs a checkpoint from its site to the pair metric
    compute.py   IE of every feature in every checkpoint of a crosscoder, per pair of a task
    ablation.py  exact single-feature ablation of the reported features (ablation.csv rows)
    joint.py     joint ablation / restoration of the top-k features by signed IE vs random k-sets (joint.csv)
    plots.py     joint.png
    stats.py     RelIE (one-vs-all, pairwise, classes), top-k, bootstrap CIs, Spearman
    tables.py    the reported features: features.csv and confusion.csv rows, summary numbers
    work.py      the work of the `attribute` stage (declared in crosstime.stages.attribute): AttributeConfig,
                 its inputs and outputs, print_attribution

What IE means. IE_m(i) (method ``ig``, the default) is feature i's share of the *joint*
effect J_m, the change of the pair metric when all features go to their baseline together
(the reconstruction error kept): integrated gradients along the path on which every feature
moves at once, so Σ_i IE_m(i) = J_m. It equals the effect of ablating feature i *alone* only
when the features act additively on the metric. When features are redundant (several carry
the same information and any one suffices), removing one alone costs little or nothing,
while IG still splits J_m among them: a large IE says "this feature carries part of what the
features do together", not "removing it alone changes the answer". The exact single-feature
ablation (``ablation.csv``, ``method="exact"``) measures the latter, and its agreement with
IG is reported per checkpoint (``summary.json``'s faithfulness); the joint curves
(``joint.csv``) measure what removing or restoring the top-k features together does.
``method="atp"`` (first-order, one backward pass) and ``"exact"`` give the same outputs with
their own IE. RelIE and its classes are shares of the method's IE; each class carries a
bootstrap interval over pairs, and a class whose interval reaches a cut-off is marked
uncertain (``features.csv`` ``relie_class_uncertain``).
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
from crosstime.attribution.joint import JointCurves, joint_curves
from crosstime.attribution.work import (
    AttributeConfig,
    AttributeResult,
    print_attribution,
    top_features_line,
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
    "JointCurves", "PairBatch", "SiteForward", "Summary", "ablate_features", "batch_effects",
    "bootstrap_ie", "compute_attribution", "exact_effects", "joint_curves", "make_batches", "midpoint_alphas",
    "pairwise_rel_ie", "print_attribution",
    "rel_ie", "spearman", "summarise", "top_features", "top_features_line",
]
