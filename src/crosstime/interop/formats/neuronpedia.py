"""The Neuronpedia export folder (export only), from the report's evidence (RUN/report/data.json).

Neuronpedia has no crosscoders; a crosscoder over time is one "source" per checkpoint sharing
feature indices (feature i of every source is the crosscoder's feature i, its activations
those of checkpoint m alone: the report's per-checkpoint views). Files::

    release.jsonl  model.jsonl  sourceset.jsonl  source.jsonl     one record each (source: one per checkpoint)
    features/batch-0.jsonl      per (source, reported feature): index, density, activations,
                                explanations [{text, methodName, modelName}], topLogits/bottomLogits [{token, value}]
    activations/batch-0.jsonl   the same activation records, one per line, with modelId, layer (source id), index

An activation record: ``tokens`` (text), ``values``, ``maxValue``, ``maxValueTokenIndex``,
``minValue``. Only the report's features are exported (its evidence is what there is). Any
variant: the records are the report's evidence, not the weights. A run's export gives the
writer its run (``ExportInfo.run``, :func:`crosstime.interop.export_run`); without one it refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crosstime.artifacts import REPORT_DATA, Window
from crosstime.crosscoder import Crosscoder
from crosstime.errors import CrosstimeError
from crosstime.files import write_text
from crosstime.interop.formats.base import ExportInfo, Format, register_format
from crosstime.runs import REPORT, Run, open_run


class NeuronpediaError(CrosstimeError):
    """The run lacks what the Neuronpedia export is made from."""


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _activation(example: Window, vocab: dict[str, str]) -> dict[str, Any]:
    """A report example (tokens as ids, acts with None where the store has no row) as Neuronpedia's record."""
    values = [0.0 if a is None else float(a) for a in example.acts]
    return {"tokens": [vocab.get(str(t), str(t)) for t in example.tokens], "values": values,
            "maxValue": float(example.value), "maxValueTokenIndex": int(example.position - example.start),
            "minValue": min(values) if values else 0.0}


def _logits(entries: list[tuple[int, float]], vocab: dict[str, str]) -> list[dict[str, Any]]:
    return [{"token": vocab.get(str(t), str(t)), "value": float(v)} for t, v in entries]


def source_id(layer: int | None, revision: str) -> str:
    return f"{layer if layer is not None else 0}-crosstime-{revision}"


@register_format
class NeuronpediaFormat(Format):
    name = "neuronpedia"
    summary = "Neuronpedia upload JSONL (one source per checkpoint) from the report's evidence (export only)"
    activations = None  # the report's evidence, whatever the variant

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
        self.check_supports(model)
        if info.run is None:
            raise NeuronpediaError("the Neuronpedia export is made from a run's report, and no run was given; export "
                                   "the run: `crosstime export RUN --format neuronpedia --out DIR`")
        return _write(open_run(info.run), model, out, info)


def _write(opened: Run, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
    run = opened.dir
    if not opened.has(REPORT):
        raise NeuronpediaError(f"{run.report / REPORT_DATA} is missing: the Neuronpedia export is made from the "
                               f"report's evidence; run `crosstime report {run.root}` first")
    data = opened.read(REPORT)
    model_id = Path(info.model_name or run.root.name).name
    revisions = [c.revision for c in data.checkpoints]
    records = {"release": {"name": f"crosstime-{run.root.name}", "description": data.title, "creatorName": "crosstime"},
               "model": {"id": model_id, "displayName": info.model_name or model_id},
               "sourceset": {"modelId": model_id, "name": "crosstime", "type": "crosscoder-over-time",
                             "description": (f"one {model.config.variant} crosscoder (F = {model.config.n_features}) "
                                             f"over checkpoints {', '.join(revisions)}; one source per checkpoint, "
                                             "sharing feature indices")}}
    sources = [{"modelId": model_id, "setName": "crosstime", "id": source_id(info.layer, c.revision),
                "revision": c.revision, "step": c.step, "tokens": c.tokens} for c in data.checkpoints]
    features, activations = [], []
    for feature in data.features:
        evidence = feature.evidence
        text = feature.description
        for rev in revisions:
            sid = source_id(info.layer, rev)
            acts = [_activation(e, data.vocab) for e in (evidence.top.get(rev, []) if evidence is not None else [])]
            lens = evidence.logit_lens.get(rev) if evidence is not None else None
            features.append({"modelId": model_id, "layer": sid, "index": feature.id,
                             "density": evidence.density.get(rev) if evidence is not None else None, "activations": acts,
                             "explanations": [{"text": text, "methodName": "crosstime annotate", "modelName": "human"}]
                             if text else [],
                             "topLogits": _logits(lens.promoted if lens is not None else [], data.vocab),
                             "bottomLogits": _logits(lens.suppressed if lens is not None else [], data.vocab)})
            activations += [{"modelId": model_id, "layer": sid, "index": feature.id, **a} for a in acts]
    out.mkdir(parents=True, exist_ok=True)
    written = [_jsonl(out / f"{name}.jsonl", [rec]) for name, rec in records.items()]
    written.append(_jsonl(out / "source.jsonl", sources))
    written.append(_jsonl(out / "features" / "batch-0.jsonl", features))
    written.append(_jsonl(out / "activations" / "batch-0.jsonl", activations))
    return written
