"""Report: feature evidence, the self-contained HTML dashboard, and human annotation.

    from crosstime.stages.report import ReportConfig, report   # the stage, declared
    report(ReportConfig(run="runs/toy"))                 # -> runs/toy/report/index.html

    from crosstime.report import export_annotations, import_annotations
    export_annotations("runs/toy", "features.csv")      # fill in `description`
    import_annotations("runs/toy", "features.csv")      # -> report/annotations.json + dashboard

    from crosstime.report import findings
    findings("runs/toy")                                 # a few findings in words (for `crosstime demo`)

Modules: :mod:`.work` (the work of the stage declared in :mod:`crosstime.stages.report`: inputs,
feature choice, data.json), :mod:`.evidence` (top
contexts, histograms, logit lens from the store and the crosscoder), :mod:`.dashboard`
(reading every stage output through :mod:`crosstime.artifacts`; rendering the HTML),
:mod:`.findings`, :mod:`.annotate`.
"""

from crosstime.evidence import EvidenceConfig, EvidenceError, feature_evidence
from crosstime.report.annotate import (
           AnnotationError,
           export_annotations,
           import_annotations,
           read_annotations,
)
from crosstime.report.findings import evolution_lines, findings
from crosstime.report.work import ReportConfig, ReportError

__all__ = ["AnnotationError", "EvidenceConfig", "EvidenceError", "ReportConfig", "ReportError", "export_annotations",
           "evolution_lines", "feature_evidence", "findings", "import_annotations", "read_annotations"]
