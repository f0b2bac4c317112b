"""The Neuronpedia export (export only), from the report's evidence (RUN/report/data.json).

Sources read: github.com/hijohnnylin/neuronpedia at ebb8426: the record models
``utils/neuronpedia-utils/neuronpedia_utils/db_models/*.py``, the SAEDashboard converter
``convert-saedashboard-to-neuronpedia-export.py`` (``main``, ``process_data``: what it writes),
the importer ``apps/webapp/app/api/admin/import/route.ts`` (what it reads) and
``apps/webapp/lib/utils/source.ts`` (how a source id is parsed).

Neuronpedia has no crosscoders; a crosscoder over time is one source set (``crosstime-{run}``)
with one source per checkpoint, sharing feature indices: feature i of every source is the
crosscoder's feature i, its activations those of checkpoint m alone (the report's
per-checkpoint views). A source id is ``{layer}-{set}__{revision}`` (source.ts: the number
before the first ``-`` is the layer, up to ``__`` the set, after it free text). Layout, one
folder per source as the importer reads ``{modelId}/{sourceId}``::

    {modelId}/{sourceId}/release.jsonl model.jsonl sourceset.jsonl source.jsonl   one record each
    {modelId}/{sourceId}/features/batch-0.jsonl.gz       one Feature per reported feature
    {modelId}/{sourceId}/activations/batch-0.jsonl.gz    its top contexts (Activation), when any
    {modelId}/{sourceId}/explanations/batch-0.jsonl.gz   its explanation (Explanation), when any

Records hold only their model's fields (Prisma's ``create`` rejects others). A Feature:
``index`` (a string), ``frac_nonzero`` (the report's density at that checkpoint),
``pos_str``/``pos_values`` and ``neg_str``/``neg_values`` (the logit lens's promoted and
suppressed tokens), ``maxActApprox`` (the largest activation among its contexts, as the
converter computes it). An Activation: ``tokens``, ``values``, ``maxValue`` = max(values) at
``maxValueTokenIndex``, ``minValue``, and an ``id``. The checkpoint's revision, step and tokens
go in the source's ``notes``. An Explanation is the feature's hand annotation (``crosstime annotate``)
where it has one, else the explanation ``crosstime interpret`` wrote (RUN/interpret/explanations.csv)
for that checkpoint's view, else its joint one: one explanation per feature and source, the hand
one first (the researcher read the evidence). Its ``notes`` say which, and for an interpret one its
source (``rules`` or the model id), view, complexity and detection/fuzzing balanced accuracy with
their shuffled baselines. Those scores have a model in Neuronpedia's database (``ExplanationScore``)
but not in the import: route.ts imports Explanation rows only, so they can ride only in ``notes``.
``typeName`` and ``explanationModelName`` are left out: they are foreign keys to the
``ExplanationType``/``ExplanationModelType`` rows an instance loads from its own config, not from
the upload, and the import's ``INSERT ... ON CONFLICT DO NOTHING`` does not skip a foreign-key
violation, so a name the instance lacks would fail the whole batch. Every Explanation record has
the same keys (the import takes its columns from a file's first line).
``creatorId``/``authorId`` is Neuronpedia's seeded default user
(:data:`CREATOR_ID`). Only the report's features are exported (its evidence is what there is; an
Explanation needs its feature's record, so interpret's explanations of other features are not).
Any variant: the records are the report's evidence, not the weights. A run's export gives the
writer its run (``ExportInfo.run``, :func:`crosstime.interop.export_run`); without one it refuses.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from crosstime.artifacts import REPORT_DATA, ReportData, ReportFeature, Window
from crosstime.crosscoder import Crosscoder
from crosstime.errors import CrosstimeError
from crosstime.evidence import ALL
from crosstime.files import write_bytes, write_text
from crosstime.interop.formats.base import ExportInfo, Format, register_format
from crosstime.runs import INTERPRETATION, REPORT, Interpretation, Run, open_run

# The user every Neuronpedia instance is seeded with (apps/webapp/prisma/seed.ts; lib/env.ts
# DEFAULT_CREATOR_USER_ID; the converter's own fallback): creatorId must name an existing user.
CREATOR_ID = "clkht01d40000jv08hvalcvly"
CREATOR_NAME = "crosstime"
BATCH = "batch-0.jsonl.gz"


class NeuronpediaError(CrosstimeError):
    """The run lacks what the Neuronpedia export is made from."""


def _slug(text: str) -> str:
    """``text`` with what a source id or URL cannot hold replaced by ``-`` (no ``__``: it delimits the suffix)."""
    return re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9._-]+", "-", text))


def source_id(layer: int | None, set_name: str, revision: str) -> str:
    """``{layer}-{set}__{revision}``: Neuronpedia reads the layer before the first ``-`` and the set up to ``__``."""
    return f"{layer if layer is not None else 0}-{set_name}__{_slug(revision)}"


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _activation(example: Window, vocab: dict[str, str], ids: dict[str, Any]) -> dict[str, Any]:
    """A report example (tokens as ids, acts with None where the store has no row) as an Activation
    (``ids``: its id, modelId, layer, index, creatorId); maxValue as the converter takes it, max(values)."""
    values = [0.0 if a is None else float(a) for a in example.acts]
    top = max(values)
    return {**ids, "tokens": [vocab.get(str(t), str(t)) for t in example.tokens], "values": values,
            "maxValue": top, "maxValueTokenIndex": values.index(top), "minValue": min(values)}


@register_format
class NeuronpediaFormat(Format):
    name = "neuronpedia"
    summary = "Neuronpedia import folders (one source per checkpoint, gzip JSONL) from the report's evidence (export only)"
    activations = None  # the report's evidence, whatever the variant

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
        self.check_supports(model)
        if info.run is None:
            raise NeuronpediaError("the Neuronpedia export is made from a run's report, and no run was given; export "
                                   "the run: `crosstime export RUN --format neuronpedia --out DIR`")
        return _write(open_run(info.run), model, out, info)


def _metadata(data: ReportData, model: Crosscoder, model_id: str, set_name: str, info: ExportInfo) -> dict[str, Any]:
    """The release, model and source-set records every source folder repeats (as the converter writes them)."""
    revisions = [c.revision for c in data.checkpoints]
    creator = {"creatorId": CREATOR_ID, "creatorName": CREATOR_NAME}
    return {"release": {"name": set_name, "description": data.title, **creator},
            "model": {"id": model_id, "instruct": model_id.endswith("-it"),  # the converter's rule
                      "displayName": info.model_name or model_id, "displayNameShort": model_id,
                      "creatorId": CREATOR_ID},
            "sourceset": {"modelId": model_id, "name": set_name, **creator, "releaseName": set_name,
                          "type": "crosscoder-over-time",
                          "description": (f"one {model.config.variant} crosscoder (F = {model.config.n_features}) "
                                          f"over checkpoints {', '.join(revisions)}; one source per checkpoint, "
                                          "sharing feature indices")}}


def _feature_records(feature: ReportFeature, rev: str, ids: dict[str, Any],
                     vocab: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One feature at one checkpoint: its Feature and its Activations (``ids``: modelId, layer, index)."""
    evidence = feature.evidence
    examples = evidence.top.get(rev, []) if evidence is not None else []
    acts = [_activation(e, vocab, {"id": f"{ids['modelId']}-{ids['layer']}-{ids['index']}-{n}", **ids,
                                   "creatorId": CREATOR_ID}) for n, e in enumerate(examples)]
    record = {**ids, "creatorId": CREATOR_ID, "maxActApprox": max((a["maxValue"] for a in acts), default=0.0)}
    if evidence is not None and rev in evidence.density:  # unknown: left to Neuronpedia's default
        record["frac_nonzero"] = float(evidence.density[rev])
    lens = evidence.logit_lens.get(rev) if evidence is not None else None
    if lens is not None:
        record |= {"pos_str": [vocab.get(str(t), str(t)) for t, _ in lens.promoted],
                   "pos_values": [float(v) for _, v in lens.promoted],
                   "neg_str": [vocab.get(str(t), str(t)) for t, _ in lens.suppressed],
                   "neg_values": [float(v) for _, v in lens.suppressed]}
    return record, acts


def _explanation(feature: ReportFeature, revision: str,
                 interpretation: Interpretation | None) -> tuple[str, str] | None:
    """(description, notes) of ``feature`` at checkpoint ``revision``: its hand annotation, else interpret's
    explanation of that checkpoint's view, else of the joint view; None when it has none."""
    if feature.description:
        return feature.description, "crosstime annotate"
    if interpretation is None:
        return None
    row = next((r for r in (interpretation.of(feature.id, revision), interpretation.of(feature.id, ALL))
                if r is not None and r["explanation"]), None)
    if row is None:
        return None
    view = "the joint view" if row["view"] == ALL else f"checkpoint {row['view']} alone"
    scores = "; ".join(f"{name} balanced accuracy {_score(row[name])} (shuffled explanation "
                       f"{_score(row[name + '_shuffled'])})" for name in ("detection", "fuzzing"))
    complexity = "none given" if row["complexity"] is None else f"{row['complexity']}/5"
    return row["explanation"], (f"crosstime interpret ({row['source']}), from {view}; complexity {complexity}; "
                                f"{scores}; held out {row['n_positive']} activating, {row['n_negative']} "
                                "non-activating contexts")


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _write(opened: Run, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
    run = opened.dir
    if not opened.has(REPORT):
        raise NeuronpediaError(f"{run.report / REPORT_DATA} is missing: the Neuronpedia export is made from the "
                               f"report's evidence; run `crosstime report {run.root}` first")
    data = opened.read(REPORT)
    model_id = _slug(Path(info.model_name or run.root.name).name)
    set_name = _slug(f"crosstime-{run.root.name}").replace("__", "_")
    shared = _metadata(data, model, model_id, set_name, info)
    interpretation = opened.read(INTERPRETATION) if opened.has(INTERPRETATION) else None
    written = []
    for c in data.checkpoints:
        sid = source_id(info.layer, set_name, c.revision)
        folder = out / model_id / sid
        source = {"id": sid, "modelId": model_id, "setName": set_name, "creatorId": CREATOR_ID,
                  "notes": f"crosstime checkpoint {c.revision} (step {c.step}, tokens {c.tokens})"}
        written += [write_text(folder / f"{name}.jsonl", _lines([rec])) for name, rec in
                    [*shared.items(), ("source", source)]]
        features, activations, explanations = [], [], []
        for feature in data.features:
            ids = {"modelId": model_id, "layer": sid, "index": str(feature.id)}
            record, acts = _feature_records(feature, c.revision, ids, data.vocab)
            features.append(record)
            activations += acts
            described = _explanation(feature, c.revision, interpretation)
            if described is not None:
                explanations.append({"id": f"{model_id}-{sid}-{feature.id}", **ids, "authorId": CREATOR_ID,
                                     "description": described[0], "notes": described[1]})
        # the importer parses every listed file's first line, so an empty one is not written
        for name, records in (("features", features), ("activations", activations), ("explanations", explanations)):
            if records:
                written.append(write_bytes(folder / name / BATCH, gzip.compress(_lines(records).encode(), mtime=0)))
    return written
