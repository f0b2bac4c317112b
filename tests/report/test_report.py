"""Report stage on runs made by the real stages: evidence against brute force, logit lens by hand,
the dashboard data against the stage files, settings, schema errors, annotation."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from test_report_helpers import (
    MANY,
    N_FEATURES,
    TASKS,
    cached_run,
    make_crosscoder,
    report_data,
    run_stages,
    save_crosscoder,
    write_tasks,
)
from torch import nn

from crosstime import stage
from crosstime.artifacts import (
    AccuracyPoint,
    ArtifactError,
    CheckpointEvaluation,
    FeatureEvidence,
    LogitLens,
    ReportCheckpoint,
    ReportEmergence,
    ReportFeature,
    RunDir,
    TaskEntry,
    Window,
    read_report_data,
)
from crosstime.crosscoder import CrosscoderError
from crosstime.files import sha256_file
from crosstime.report import (
    AnnotationError,
    EvidenceConfig,
    ReportConfig,
    ReportError,
    export_annotations,
    feature_evidence,
    import_annotations,
    read_annotations,
)
from crosstime.report.annotate import parse_annotations
from crosstime.report.dashboard import PER_CHECKPOINT_SUMMARY, collect
from crosstime.evidence import (
    DoublingHistogram,
    Example,
    encode_view,
    logit_lens,
    stream,
    windows,
)
from crosstime.runs import open_run
from crosstime.stages.report import report
from crosstime.store import ActivationStore

FEATURES = [0, 3, 7, 11, 20, 33, 47]
QUICK = EvidenceConfig(max_contexts=4, logit_lens="none")  # evidence that needs no series checkpoints


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    return cached_run(tmp_path_factory, M=3)


@pytest.fixture(scope="module")
def store3(run3):
    return ActivationStore(run3[0] / "activations")


def copy_run(run, dest, ignore=("report",)):
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(*ignore))
    return dest


def brute_views(store, cc, lo, hi):
    """Every activation of every view over contexts [lo, hi): ``[V, n_ctx, P, F]`` (numpy), from the
    crosscoder's own encode in normalised space (store rows × the store's scales), one encode per view."""
    P, revs = store.rows_per_context, cc.revisions
    x = torch.stack([store.read_block(r, lo * P, (hi - lo) * P) for r in revs], dim=1)
    x = x * torch.tensor([store.scales[r] for r in revs])[None, :, None]
    views = [cc.encode(x)]
    for m in range(len(revs)):
        alone = torch.zeros_like(x)
        alone[:, m] = x[:, m]
        views.append(cc.encode(alone))
    return torch.stack(views).detach().numpy().reshape(len(views), hi - lo, P, -1)


def _embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="crosstime-data">(.*?)</script>', html, re.DOTALL)
    return json.loads(m.group(1))


# -- evidence ------------------------------------------------------------------------------------

def test_stream_top_contexts_match_brute_force(run3, store3):
    _, cc = run3
    cfg = EvidenceConfig(n_top=5, split="all", max_contexts=None, sample_size=64)
    res = stream(store3, cc.folded(), FEATURES, cfg, batch_rows=3 * 15, progress=False)
    lo, hi = res.contexts
    assert (lo, hi) == (0, len(store3.tokens))
    acts = brute_views(store3, cc, lo, hi)
    assert res.views == ["all"] + store3.revisions
    for v in range(len(res.views)):
        for k, i in enumerate(FEATURES):
            per_ctx = acts[v, :, :, i]  # [n_ctx, P]
            best, arg = per_ctx.max(1), per_ctx.argmax(1)
            order = [c for c in np.lexsort((np.arange(len(best)), -best)) if best[c] > 0][:5]
            got_vals = [x for x in res.top_values[v, k].tolist() if x > -math.inf]
            # the folded model reads raw rows: equal to the normalised encode up to float rounding
            assert got_vals == pytest.approx([float(best[c]) for c in order], rel=1e-5, abs=1e-6)
            assert res.top_where[v, k, : len(order)].tolist() == [[lo + c, store3.first_position + int(arg[c])]
                                                                   for c in order]
            nz = per_ctx[per_ctx > 0].astype(np.float64)  # density and exact histogram
            assert int(res.nonzero[v, k]) == nz.size
            s = v * len(FEATURES) + k
            upper = float(res.histogram.upper[s])
            if nz.size:
                assert upper == 2.0 ** (math.floor(math.log2(nz.max())) + 1)
                ref, _ = np.histogram(nz, bins=cfg.n_bins, range=(0.0, upper))
                assert res.histogram.counts[s].tolist() == ref.tolist()
            sv = res.sample_values[v, k]  # the uniform sample holds real (context, position, value) triples
            kept = sv > -math.inf
            assert int(kept.sum()) == min(cfg.sample_size, nz.size)
            for (c, p), val in zip(res.sample_where[v, k][kept].tolist(), sv[kept].tolist()):
                assert val == pytest.approx(float(acts[v, c - lo, p - store3.first_position, i]), rel=1e-5, abs=1e-6)
    # the same results, sample included, with another batching (one context per batch, encodes of 7 rows)
    small = stream(store3, cc.folded(), FEATURES, cfg, batch_rows=7, progress=False)
    assert torch.equal(small.top_where, res.top_where) and torch.allclose(small.top_values, res.top_values, atol=1e-6)
    assert torch.equal(small.histogram.counts, res.histogram.counts) and torch.equal(small.nonzero, res.nonzero)
    assert torch.equal(small.sample_where, res.sample_where)  # the same rows sampled (values: up to GEMM rounding)
    assert torch.allclose(small.sample_values, res.sample_values, rtol=1e-5, atol=1e-6)
    mean = torch.stack([store3.read_block(r, 0, store3.n_rows("train") + store3.n_rows("heldout")).double().mean(0)
                        for r in store3.revisions])
    assert torch.allclose(res.mean_activation.double(), mean, atol=1e-4)


def test_doubling_histogram_merges_exactly():
    rng = np.random.default_rng(1)
    values = [rng.uniform(0, 0.3, size=50), rng.uniform(0, 5, size=50), rng.uniform(0, 100, size=50)]
    h = DoublingHistogram(1, 8)
    for batch in values:
        h.update(torch.tensor(batch)[None, :])
    allv = np.concatenate(values)
    assert float(h.upper[0]) == 128.0
    ref, _ = np.histogram(allv, bins=8, range=(0, 128.0))
    assert h.counts[0].tolist() == ref.tolist()
    with pytest.raises(ValueError, match="power of two"):
        DoublingHistogram(1, 6)


def test_windows_show_each_tokens_activation(run3, store3):
    _, cc = run3
    cfg = EvidenceConfig(window_before=5, window_after=3)
    acts = brute_views(store3, cc, 0, len(store3.tokens))
    first = store3.first_position
    examples = [Example(0, 3, 2, 1, float(acts[0, 2, 0, 3])), Example(2, 7, 5, 10, float(acts[2, 5, 10 - first, 7])),
                Example(1, 20, 9, store3.context_len - 1, 0.0)]
    out = windows(store3, cc.folded(), examples, cfg)
    for ex, win in zip(examples, out):
        start = max(0, ex.position - 5)
        end = min(store3.context_len, ex.position + 4)
        assert win["start"] == start and (win["context"], win["position"]) == (ex.context, ex.position)
        assert win["tokens"] == store3.tokens[ex.context, start:end].tolist()
        for k, a in enumerate(win["acts"]):
            pos = start + k
            if pos < first:
                assert a is None  # position 0 is not stored
            else:
                assert a == pytest.approx(float(acts[ex.view, ex.context, pos - first, ex.feature]), rel=1e-3, abs=1e-6)


def test_feature_evidence_end_to_end(run3, store3):
    _, cc = run3
    cfg = EvidenceConfig(n_top=4, n_quantiles=3, split="heldout", max_contexts=None, logit_lens="none")
    ev = feature_evidence(store3, cc, FEATURES[:3], cfg, progress=False)
    lo, hi = store3.context_range("heldout")
    acts = brute_views(store3, cc, lo, hi)
    for i in FEATURES[:3]:
        f = ev["features"][str(i)]
        assert set(f["top"]) == {"all", *store3.revisions}
        top = f["top"]["all"]
        assert all(lo <= w["context"] < hi for w in top)
        best = acts[0, :, :, i].max()
        if best > 0:
            assert top[0]["value"] == pytest.approx(float(best), rel=1e-3)
            w = top[0]  # the window's value at the example position is the example's activation
            assert w["acts"][w["position"] - w["start"]] == pytest.approx(w["value"], rel=1e-3)
        assert f["density"]["all"] == pytest.approx(float((acts[0, :, :, i] > 0).mean()), abs=1e-4)
        qs = [q["quantile"] for q in f["quantiles"]]
        assert qs == sorted(qs)
        vals = [q["value"] for q in f["quantiles"]]
        assert vals == sorted(vals)  # quantile examples ascend with the quantile
    assert set(ev["token_ids"]) >= {t for f in ev["features"].values() for w in f["top"]["all"] for t in w["tokens"]}
    # the batch size changes nothing (every example and statistic, the sampled quantiles included)
    assert feature_evidence(store3, cc, FEATURES[:3], cfg, batch_rows=15, progress=False) == ev
    with pytest.raises(ValueError, match="out of range"):
        feature_evidence(store3, cc, [N_FEATURES], cfg, progress=False)


def test_encode_thresholds_are_respected(run3, store3):
    """A BatchTopK threshold inside encode (eval mode) shapes every statistic (the reference used a bare ReLU)."""
    _, cc = run3
    revs = store3.revisions
    cut = make_crosscoder(revs, [store3.scales[r] for r in revs], store3.d_model, variant="batchtopk",
                         variant_config={"k": 4})
    cut.load_state_dict(cc.state_dict(), strict=False)
    cut.threshold.fill_(0.05)
    cut.train()  # feature_evidence must encode in eval mode, on its own copy
    cfg = EvidenceConfig(split="all", max_contexts=None, sample_size=1000, per_checkpoint=False, logit_lens="none")
    ev = feature_evidence(store3, cut, FEATURES, cfg, progress=False)
    assert cut.training  # the caller's model is left as it was
    relu = brute_views(store3, cc, 0, len(store3.tokens))[0]  # the same weights, plain ReLU
    w = cc.decoder_norms().sum(1).detach().numpy()  # BatchTopK scores ReLU(z)·Σ_m‖W_dec[i,m]‖
    n_rows = relu.shape[0] * relu.shape[1]
    for i in FEATURES:
        fires = relu[..., i] * w[i] > 0.05
        assert ev["features"][str(i)]["density"]["all"] == pytest.approx(fires.sum() / n_rows, abs=1e-4)
        assert fires.sum() < (relu[..., i] > 0).sum() or (relu[..., i] > 0).sum() == 0


@pytest.mark.parametrize("variant", ["relu", "topk", "batchtopk", "jumprelu"])
def test_checkpoint_alone_view_equals_masked_encode(variant):
    """On raw rows, the folded model's views equal the crosscoder's own encode of normalised rows
    (the checkpoint-alone view: the other checkpoints zeroed), for every variant."""
    scales = [1.0, 2.0, 0.5]
    cc = make_crosscoder(["a", "b", "c"], scales, d=8, F=16, variant=variant, **({"variant_config": {"k": 3}} if "topk" in variant else {}))
    if variant == "batchtopk":
        cc.threshold.fill_(0.02)
    raw_model = cc.folded().eval()
    x = torch.randn(20, 3, 8, generator=torch.Generator().manual_seed(0))  # raw store rows
    xn = x * torch.tensor(scales)[None, :, None]
    with torch.no_grad():
        for m in range(3):
            alone = torch.zeros_like(xn)
            alone[:, m] = xn[:, m]
            assert torch.allclose(encode_view(raw_model, x, m + 1), cc.encode(alone), atol=1e-5)
        assert torch.allclose(encode_view(raw_model, x, 0), cc.encode(xn), atol=1e-5)


class _RMSNorm(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))

    def forward(self, x):
        return x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * self.weight


def test_logit_lens_by_hand():
    W_U = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, -1, 1, -1]])
    unembed = nn.Linear(4, 5, bias=False)
    unembed.weight.data = torch.tensor(W_U, dtype=torch.float32)
    gamma = np.array([1.0, 2.0, 1.0, 1.0])
    ln = nn.LayerNorm(4)
    ln.weight.data = torch.tensor(gamma, dtype=torch.float32)
    ln.bias.data = torch.tensor([0.1, -0.2, 0.0, 0.3])
    d = np.array([1.0, 0, 0, 0])
    # norm weight only: centre (LayerNorm), scale by gamma, unembed
    got = logit_lens(ln, unembed, torch.tensor(d[None], dtype=torch.float32), method="norm_weight")[0].numpy()
    expect = W_U @ ((d - d.mean()) * gamma)
    assert np.allclose(got, expect, atol=1e-6)
    # mean activation: difference of full LayerNorm outputs, by formula
    xbar, a = np.array([0.0, 1.0, 2.0, 3.0]), 2.0

    def layer_norm(x):
        return (x - x.mean()) / np.sqrt(x.var() + 1e-5) * gamma + np.array([0.1, -0.2, 0.0, 0.3])

    got = logit_lens(ln, unembed, torch.tensor(d[None], dtype=torch.float32), torch.tensor(xbar, dtype=torch.float32),
                     torch.tensor([a]), method="mean_activation")[0].numpy()
    expect = W_U @ layer_norm(xbar + a * d) - W_U @ layer_norm(xbar)
    assert np.allclose(got, expect, atol=1e-5)
    assert int(np.argmax(got[:4])) == 0  # among the basis tokens, the direction promotes its own
    # RMSNorm: no centring
    rms = _RMSNorm([1.0, 2.0, 1.0, 1.0])
    got = logit_lens(rms, unembed, torch.tensor(d[None], dtype=torch.float32), method="norm_weight")[0].numpy()
    assert np.allclose(got, W_U @ (d * gamma), atol=1e-6)


# -- the dashboard data --------------------------------------------------------------------------

def _csv(path):
    return list(csv.DictReader(open(path, newline="")))


def test_collect_reads_every_stage(run3):
    """Every number the dashboard shows is the one in the stage's file (read here with csv/json/numpy)."""
    run, cc = run3
    revs = cc.revisions
    base = collect(open_run(run), revs)
    assert base.revisions == revs and base.tasks == sorted(TASKS) and base.missing == []
    ov = base.overview
    for row in _csv(run / "scan" / "accuracy.csv"):
        point = next(p for p in ov.accuracy[row["task"]] if p.revision == row["revision"])
        assert point.accuracy == float(row["accuracy"]) and point.tokens == int(row["tokens"])
    with np.load(run / "scan" / "similarity.npz") as npz:
        assert [s.name for s in ov.similarity] == ["cosine", "cka"]
        assert ov.similarity[0].labels == [str(x) for x in npz["revisions"]]
        assert np.allclose(ov.similarity[1].matrix, npz["cka"])
    ev = json.loads((run / "evaluation.json").read_text())
    table = ov.evaluation
    rows_by_name = {r.name: r for r in table.rows}
    assert rows_by_name["explained_variance"].values == [c["explained_variance"] for c in ev["checkpoints"]]
    assert table.checkpoints == revs
    assert next(w.value for w in table.overall if w.name == "l0") == ev["summary"]["l0"]
    assert rows_by_name["fvu"].description == CheckpointEvaluation.model_fields["fvu"].description
    assert rows_by_name["fvu"].label == "unexplained variance"
    assert {s.name for s in ov.dynamics.series} >= {"loss", "kl_unigram", "kl_bigram"}
    rows = {int(r["feature"]): r for r in _csv(run / "evaluation" / "features.csv")}
    assert sorted(base.features) == sorted(rows) == list(range(N_FEATURES))
    for i in (0, 5, 17):
        f = base.features[i]
        assert f.reldec == pytest.approx([float(rows[i][f"reldec_{r}"]) for r in revs])
        assert f.norm == pytest.approx([float(rows[i][f"norm_{r}"]) for r in revs])
        assert f.reldec_class == rows[i]["reldec_class"] and f.onset == int(rows[i]["onset"])
    for task in TASKS:
        folder = run / "attribution" / task
        attributed = {int(r["feature"]): r for r in _csv(folder / "features.csv")}
        assert {i for i, f in base.features.items() if task in f.tasks} == set(attributed)
        for i, r in attributed.items():
            t = base.features[i].tasks[task]
            assert t.ie == pytest.approx([float(r[f"ie_{rev}"]) for rev in revs])
            assert t.relie == pytest.approx([float(r[f"relie_{rev}"]) for rev in revs])
            assert t.relie_class == r["relie_class"]
        for a in _csv(folder / "ablation.csv"):
            t = base.features[int(a["feature"])].tasks[task]
            assert t.ablation.delta_lpd[revs.index(a["checkpoint"])] == pytest.approx(float(a["delta_lpd"]))
        summary = json.loads((folder / "summary.json").read_text())
        att = ov.attribution[task]
        scalars = {row.name: row.value for row in att.summary}
        assert scalars["pairs_kept"] == summary["pairs_kept"] and scalars["method"] == "ig"
        acc = next(r for r in att.per_checkpoint if r.name == "accuracy_clean")
        assert acc.values == [summary["accuracy_clean"][r] for r in revs]
        confusion = att.confusion
        for r in _csv(folder / "confusion.csv"):  # the CSV's rows as the cells of the matrix
            cell = confusion.counts[confusion.relie_classes.index(r["relie_class"])]
            assert cell[confusion.reldec_classes.index(r["reldec_class"])] == int(r["count"])
    assert sum(ov.distributions.reldec[0]) == sum(
        all(math.isfinite(float(r[f"reldec_{rev}"])) for rev in revs) for r in rows.values())
    assert sum(ov.class_counts["RelDec class"].values()) == N_FEATURES


def test_per_checkpoint_summary_fields_are_the_schemas():
    from crosstime.artifacts import AttributionSummary

    assert all(AttributionSummary.model_fields[n].annotation == dict[str, float] for n in PER_CHECKPOINT_SUMMARY)


def test_missing_stages_are_listed_and_report_still_renders(tmp_path, run3):
    run, cc = run3
    bare = tmp_path / "bare"
    shutil.copytree(run / "activations", bare / "activations")
    shutil.copytree(run / "crosscoder", bare / "crosscoder")
    out = report(ReportConfig(run=bare, n_features=5, progress=False, evidence=QUICK))
    data = read_report_data(bare / "report").model_dump(mode="json")
    text = " ".join(data["missing"])
    for stage_file in ("scan/", "evaluation.json", "attribution"):
        assert stage_file in text
    assert [c["revision"] for c in data["checkpoints"]] == cc.revisions
    norms = cc.decoder_norms().detach().sum(1)  # ranked by decoder norm without attribution
    assert [f["id"] for f in data["features"]] == torch.argsort(norms, descending=True, stable=True)[:5].tolist()
    assert out.is_file()


@pytest.mark.parametrize("M", [3, MANY])
def test_report_shows_every_checkpoint(tmp_path_factory, M):
    run, cc = cached_run(tmp_path_factory, M=M)
    out = report(ReportConfig(run=run, n_features=6, progress=False, evidence=EvidenceConfig(n_top=3, max_contexts=6)))
    html = out.read_text()
    # self-contained: no external resources, inline script and style only
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<script src" not in html and "<link rel=\"stylesheet\"" not in html
    data = _embedded(html)
    assert data == read_report_data(run / "report").model_dump(mode="json")
    assert [c["revision"] for c in data["checkpoints"]] == cc.revisions and len(cc.revisions) == M
    assert len(data["features"]) == 6
    assert data["crosscoder"]["inference_rule"] == cc.inference_rule and data["n_features_total"] == N_FEATURES
    norms = cc.decoder_norms().detach()
    for f in data["features"]:
        assert len(f["reldec"]) == M and f["norm"] == pytest.approx(norms[f["id"]].tolist(), abs=1e-6)
        for t in f["tasks"].values():
            assert len(t["relie"]) == M
        ev = f["evidence"]
        assert set(ev["top"]) == {"all", *cc.revisions}
        assert set(ev["logit_lens"]) == set(cc.revisions)
        assert all(str(t) in data["vocab"] for t, _ in ev["logit_lens"][cc.revisions[-1]]["promoted"])
    assert stage.read_records(RunDir(run))["report"]["n_features"] == 6


def test_crosscoder_over_a_subset_of_the_checkpoints(tmp_path, run3, store3):
    """A crosscoder over 2 of the store's 3 checkpoints: the report's checkpoints are those 2, its
    evidence is a brute-force computation over them, and evaluate/attribute's outputs for it are read."""
    run, _ = run3
    work = copy_run(run, tmp_path / "run", ignore=("report", "crosscoder", "evaluation*", "attribution"))
    revs = [store3.revisions[0], store3.revisions[2]]
    cc = save_crosscoder(work, store3, revs, seed=3)
    series = store3.manifest["series"]["source"]
    run_stages(work, series, write_tasks(tmp_path / "tasks"), ("evaluate", "attribute"))
    cfg = EvidenceConfig(n_top=3, split="heldout", max_contexts=None, n_quantiles=0)
    out = report(ReportConfig(run=work, features=[1, 2, 5], progress=False, evidence=cfg))
    data = _embedded(out.read_text())
    assert [c["revision"] for c in data["checkpoints"]] == revs
    assert [c["tokens"] for c in data["checkpoints"]] == [store3.manifest["checkpoints"][r]["tokens_seen"] for r in revs]
    assert data["views"] == ["all", *revs] and data["overview"]["evaluation"]["checkpoints"] == revs
    lo, hi = store3.context_range("heldout")
    acts = brute_views(store3, cc, lo, hi)  # [V, n_ctx, P, F] over the two checkpoints only
    for f in data["features"]:
        assert len(f["reldec"]) == 2 and set(f["evidence"]["logit_lens"]) == set(revs)
        for v, view in enumerate(data["views"]):
            best = acts[v, :, :, f["id"]].max(1)
            expect = sorted((float(b) for b in best if b > 0), reverse=True)[:3]
            assert [w["value"] for w in f["evidence"]["top"][view]] == pytest.approx(expect, rel=1e-3)
    attributed = [t for f in collect(open_run(work), revs).features.values() for t in f.tasks.values()]
    assert attributed and all(len(t.ie) == 2 and len(t.ablation.delta_lpd) == 2 for t in attributed)


# -- the stage contract --------------------------------------------------------------------------

def test_report_records_its_settings(tmp_path, run3, monkeypatch):
    work = copy_run(run3[0], tmp_path / "run")
    cfg = ReportConfig(run=work, n_features=3, progress=False, evidence=QUICK)
    report(cfg)
    recorded = stage.recorded(cfg)
    assert recorded[stage.WRITES_KEY] == ["report"]
    assert {k: v for k, v in recorded.items() if k not in (stage.INPUTS_KEY, stage.WRITES_KEY, stage.FILES_KEY)} == cfg.output_settings()
    assert recorded[stage.FILES_KEY] == {"report/data.json": sha256_file(work / "report" / "data.json")}  # annotate checks it
    assert recorded["evidence"]["max_contexts"] == 4
    assert "batch_rows" not in recorded and "device" not in recorded and "run" not in recorded
    assert stage.finished(cfg)
    records = stage.read_records(RunDir(work))  # every stage it reads counts: another evaluation, another report
    other = {**records, "evaluate": {**records["evaluate"], "seed": 1}}
    (work / "config.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    assert not stage.finished(cfg)
    (work / "config.yaml").write_text(yaml.safe_dump(records, sort_keys=False))
    assert stage.finished(cfg)
    # how it ran is not part of the record, what it shows is
    assert stage.finished(cfg.model_copy(update={"batch_rows": 7, "device": "cpu", "progress": True}))
    assert not stage.finished(cfg.model_copy(update={"n_features": 4}))
    assert not stage.finished(cfg.model_copy(update={"evidence": QUICK.model_copy(update={"n_top": 3})}))
    # and indeed: another batch size gives the same report
    first = read_report_data(work / "report").model_dump(mode="json")
    report(cfg.model_copy(update={"batch_rows": 7}))
    again = read_report_data(work / "report").model_dump(mode="json")
    # equal up to float summation order: another batch shape may take another GEMM kernel on another CPU
    _assert_same_up_to_rounding(again["features"], first["features"])
    assert again["vocab"] == first["vocab"]
    # a report that fails half-way leaves no record: it is not taken for finished
    import crosstime.report.work as report_stage

    def broken(*args, **kwargs):
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(report_stage, "feature_evidence", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        report(cfg)
    assert stage.recorded(cfg) is None and not stage.finished(cfg)


def _assert_same_up_to_rounding(a, b, path="data", rel=1e-4, abs_=1e-6):
    """Same structure, same strings and integers, floats within ``rel`` (rounding, not another result)."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys differ"
        for key in a:
            _assert_same_up_to_rounding(a[key], b[key], f"{path}.{key}", rel, abs_)
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_up_to_rounding(x, y, f"{path}[{i}]", rel, abs_)
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=rel, abs=abs_), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def test_same_up_to_rounding_tells_rounding_from_another_result():
    _assert_same_up_to_rounding({"f": [1.0, 2, "x"]}, {"f": [1.0 + 1e-9, 2, "x"]})
    for other in ({"f": [1.1, 2, "x"]}, {"f": [1.0, 3, "x"]}, {"f": [1.0, 2, "y"]}, {"f": [1.0, 2]}, {"g": [1.0, 2, "x"]}):
        with pytest.raises(AssertionError):
            _assert_same_up_to_rounding({"f": [1.0, 2, "x"]}, other)


def test_batch_dependent_crosscoder_says_so(tmp_path, run3, store3):
    """A BatchTopK that never estimated a threshold: reported with the rule it has, a warning, and the
    batch size recorded beside the settings."""
    work = tmp_path / "run"
    shutil.copytree(run3[0] / "activations", work / "activations")
    cc = save_crosscoder(work, store3, variant="batchtopk", variant_config={"k": 4})
    assert cc.inference_depends_on_batch
    cfg = ReportConfig(run=work, n_features=3, batch_rows=30, progress=False, evidence=QUICK)
    with pytest.warns(UserWarning, match="depend"):
        data = _embedded(report(cfg).read_text())
    assert data["crosscoder"]["inference_rule"] == cc.inference_rule and data["crosscoder"]["inference_depends_on_batch"]
    assert stage.recorded(cfg)["batch_rows"] == 30


def _edit_evaluation_column(work):
    path = work / "evaluation" / "features.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0].replace("trajectory", "trajectory_label") + "".join(lines[1:]))
    return path


def _edit_attribution_summary(work):
    path = work / "attribution" / TASKS[0] / "summary.json"
    summary = json.loads(path.read_text())
    del summary["pairs_kept"]
    path.write_text(json.dumps(summary))
    return path


def _edit_similarity(work):
    path = work / "scan" / "similarity.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "cka"}
    np.savez(path, **arrays)
    return path


def _edit_evaluation_checkpoints(work):
    path = work / "evaluation.json"
    ev = json.loads(path.read_text())
    ev["checkpoints"] = ev["checkpoints"][:2]  # written for another crosscoder
    path.write_text(json.dumps(ev))
    return path


def _edit_ablation_checkpoint(work):
    path = work / "attribution" / TASKS[1] / "ablation.csv"
    path.write_text(path.read_text().replace(",step1,", ",step9,", 1))
    return path


@pytest.mark.parametrize("edit", [_edit_evaluation_column, _edit_attribution_summary, _edit_similarity,
                                  _edit_evaluation_checkpoints, _edit_ablation_checkpoint])
def test_stage_output_not_in_its_schema_is_an_error(tmp_path, run3, edit):
    """A stage output edited out of its schema stops the report, naming the file, before it writes anything."""
    work = copy_run(run3[0], tmp_path / "run")
    path = edit(work)
    with pytest.raises(ArtifactError, match=re.escape(str(path))):
        report(ReportConfig(run=work, n_features=3, progress=False, evidence=QUICK))
    assert not (work / "report").exists()


def test_bad_input_errors(tmp_path, run3):
    with pytest.raises(ReportError, match="does not exist"):
        report(ReportConfig(run=tmp_path / "nope", progress=False))
    run, _ = run3
    with pytest.raises(ReportError, match="out of range"):
        report(ReportConfig(run=run, features=[N_FEATURES + 1], progress=False))
    work = copy_run(run, tmp_path / "run")
    make_crosscoder(["a", "b"], [1.0, 1.0], 32).save(work / "crosscoder")  # trained on other checkpoints
    with pytest.raises(CrosscoderError, match="trained on checkpoints"):
        report(ReportConfig(run=work, progress=False))
    assert not (work / "report").exists()


def test_unreachable_series_is_an_error_or_an_explicit_choice(tmp_path, run3):
    """A series that is not here (e.g. harvested on another machine) stops the report with the fixes;
    `--logit-lens none --no-token-text` is the recorded choice to report without it (token ids)."""
    work = copy_run(run3[0], tmp_path / "run")
    gone = str(tmp_path / "gone")
    for evidence in (EvidenceConfig(max_contexts=4), QUICK):  # the logit lens needs it, the token text too
        with pytest.raises(ReportError, match="--series PATH") as err:
            report(ReportConfig(run=work, n_features=3, series=gone, progress=False, evidence=evidence))
        assert gone in str(err.value) and "--no-token-text" in str(err.value)
    assert not (work / "report").exists()
    cfg = ReportConfig(run=work, n_features=3, series=gone, token_text=False, progress=False, evidence=QUICK)
    data = _embedded(report(cfg).read_text())
    assert data["vocab"] == {} and data["evidence_meta"]["token_text"] is False
    assert data["evidence_meta"]["logit_lens_method"] == "none"
    assert all(f["evidence"]["logit_lens"] == {} and f["evidence"]["top"]["all"] for f in data["features"])
    assert stage.recorded(cfg)["token_text"] is False


# -- annotation and findings ---------------------------------------------------------------------

def test_annotation_round_trip(tmp_path, run3):
    work = copy_run(run3[0], tmp_path / "run")
    report(ReportConfig(run=work, n_features=4, progress=False, evidence=QUICK))
    ids = [f["id"] for f in read_report_data(work / "report").model_dump(mode="json")["features"]]
    csv_path = tmp_path / "ann.csv"
    export_annotations(work, csv_path)
    rows = _csv(csv_path)
    assert [int(r["feature"]) for r in rows] == ids and all(r["description"] == "" for r in rows)
    rows[0]["description"] = 'plural subject, "quoted", with a comma'
    rows[2]["description"] = "verb agreement"
    rows[2]["languages"] = "eng"  # an extra column a user adds
    with open(csv_path, "w", newline="") as h:
        w = csv.DictWriter(h, fieldnames=list(rows[0].keys()) + ["languages"])
        w.writeheader()
        w.writerows(rows)
    merged = import_annotations(work, csv_path)
    assert merged == {ids[0]: {"description": 'plural subject, "quoted", with a comma'},
                      ids[2]: {"description": "verb agreement", "languages": "eng"}}
    assert read_annotations(work) == merged
    data = _embedded((work / "report" / "index.html").read_text())
    desc = {f["id"]: f["description"] for f in data["features"]}
    assert desc[ids[0]] == 'plural subject, "quoted", with a comma' and desc[ids[1]] is None
    # export again: descriptions come back out; import of that file changes nothing
    again = tmp_path / "again.csv"
    export_annotations(work, again)
    back = {int(r["feature"]): r["description"] for r in _csv(again)}
    assert back[ids[0]] == 'plural subject, "quoted", with a comma' and back[ids[2]] == "verb agreement"
    assert import_annotations(work, again) == merged
    # a later report keeps the annotations
    report(ReportConfig(run=work, n_features=4, progress=False, evidence=QUICK))
    data = _embedded((work / "report" / "index.html").read_text())
    assert {f["id"]: f["description"] for f in data["features"]}[ids[2]] == "verb agreement"


def test_malformed_annotation_csv_names_lines(tmp_path, run3):
    work = copy_run(run3[0], tmp_path / "run", ignore=("activations",))  # (a report recorded but removed is refused)
    bad = tmp_path / "bad.csv"
    bad.write_text("feature,description\n"
                   "1,fine\n"
                   "two,not a number\n"
                   "3,too,many,fields\n"
                   "\n"
                   "1,again\n"
                   f"{N_FEATURES + 5},out of range\n")
    with pytest.raises(AnnotationError) as err:
        import_annotations(work, bad)
    msg = str(err.value)
    assert "line 3" in msg and "'two'" in msg
    assert "line 4" in msg and "expected 2 fields" in msg
    assert "line 6" in msg and "first on line 2" in msg
    assert "line 7" in msg and "out of range" in msg
    assert "line 2:" not in msg
    assert not (work / "report" / "annotations.json").exists()  # nothing imported
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("id,text\n1,x\n")
    with pytest.raises(AnnotationError, match="line 1: the header lacks the column"):
        import_annotations(work, nohead)


@pytest.mark.parametrize("text,line,what", [
    ('feature,description\n1,"plural subject\n2,verb agreement\n3,fine\n', "line 2", "malformed CSV"),
    ('feature,description\n1,ok\n2,"plural\n3,verb\n4,"x"\n', "line 3", "malformed CSV"),
    ('feature,description\n1,"two\nlines"\n2,ok\n', "line 2", "control character(s) '\\n'"),
    ('feature,description\n1,ok\n2,a\x00b\n', "line 3", "control character(s) '\\x00'"),
    ('feature,description\n1,bell\x07\n', "line 2", "'\\x07'"),
    ('feature,description,languages\n1,ok,en\tg\n', "line 2", "column languages contains"),
])
def test_annotation_csv_is_parsed_strictly(tmp_path, text, line, what):
    """An unclosed quote is an error naming the row where it opened (it never swallows the rows after
    it); a NUL or other control character in a cell is an error naming its line. Nothing is read."""
    path = tmp_path / "a.csv"
    path.write_text(text)
    with pytest.raises(AnnotationError) as err:
        parse_annotations(path)
    msg = str(err.value)
    assert f"{line}:" in msg and what in msg and "nothing was imported" in msg and "\n" not in msg


def test_annotation_csv_must_be_utf8_and_good_csv_still_reads(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"feature,description\n1,ok\n2,caf\xe9\n")
    with pytest.raises(AnnotationError, match="line 3: not UTF-8 text"):
        parse_annotations(path)
    path.write_text('\ufefffeature,description\n1,"a, ""quoted"" one"\n\n2,  plain  \n', encoding="utf-8")
    assert parse_annotations(path) == {1: {"description": 'a, "quoted" one'}, 2: {"description": "plain"}}
    path.write_bytes(b'feature,description\r\n1,"a, b"\r\n2,plain\r\n')  # a spreadsheet's line ends
    assert parse_annotations(path) == {1: {"description": "a, b"}, 2: {"description": "plain"}}


def test_a_title_with_placeholders_is_inserted_as_it_is(tmp_path):
    """The page is filled in one pass: a title such as __DATA__ stays a title (escaped), it never
    pulls the page's JSON (or its script) into <title>."""
    import html as html_lib
    from importlib import resources

    from crosstime.report.dashboard import render, script

    title = "__DATA__ & __JS__ __CSS__ __TITLE__ </title><script>alert(1)</script>"
    data = report_data(title=title, run="r", features=[ReportFeature(id=1, rank=1, tasks={}, annotation=None,
                                                                     description="__DATA__ in a description")])
    page = render(data, tmp_path / "index.html").read_text()
    assert re.search(r"<title>(.*?)</title>", page, re.DOTALL).group(1) == html_lib.escape(title)
    assert _embedded(page) == data.model_dump(mode="json")
    assets = {name: resources.files("crosstime.report").joinpath(name).read_text(encoding="utf-8")
              for name in ("dashboard.html", "dashboard.css")}
    embedded = re.search(r'id="crosstime-data">(.*?)</script>', page, re.DOTALL).group(1)
    inserted = len(html_lib.escape(title)) + len(assets["dashboard.css"]) + len(script()) + len(embedded)
    placeholders = sum(len(p) for p in ("__TITLE__", "__CSS__", "__JS__", "__DATA__"))
    assert len(page) == len(assets["dashboard.html"]) - placeholders + inserted  # each filled once, nothing else
    assert page.count(script()) == 1


def test_cli_report_and_annotate(tmp_path, run3):
    from typer.testing import CliRunner

    from crosstime.cli import app

    run, _ = run3
    work = tmp_path / "run"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("report"))
    cli = CliRunner()
    res = cli.invoke(app, ["report", str(work), "--features", "3,7", "--features", "11", "--max-contexts", "4", "--logit-lens", "none"])
    assert res.exit_code == 0, res.output
    data = read_report_data(work / "report").model_dump(mode="json")
    assert [f["id"] for f in data["features"]] == [3, 7, 11]
    csv_path = tmp_path / "a.csv"
    assert cli.invoke(app, ["annotate", str(work), "--export", str(csv_path)]).exit_code == 0
    lines = csv_path.read_text().splitlines()
    lines[2] = lines[2] + "subject number"  # description is the last column
    csv_path.write_text("\n".join(lines) + "\n")
    res = cli.invoke(app, ["annotate", str(work), "--import", str(csv_path)])
    assert res.exit_code == 0, res.output
    assert read_annotations(work) == {7: {"description": "subject number"}}
    assert _embedded((work / "report" / "index.html").read_text())["features"][1]["description"] == "subject number"
    res = cli.invoke(app, ["annotate", str(work)])
    assert res.exit_code == 2 and "exactly one" in res.output
    res = cli.invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_findings_by_hand():
    from crosstime.report import findings

    def feature(i: int, onset: int, reldec: list[float], task: dict, **more) -> ReportFeature:
        return ReportFeature(id=i, rank=1, onset=onset, reldec=reldec, tasks={"t": TaskEntry(**task)},
                             annotation=None, **{"description": None} | more)

    revisions = ["a", "b", "c"]
    lens = {"c": LogitLens(promoted=[(9, 1.0)], suppressed=[])}
    window = Window(context=0, position=4, value=1.0, start=3, tokens=[1, 5, 2], acts=[None, 1.0, None])
    data = report_data(
        checkpoints=[ReportCheckpoint(revision=r, step=None, tokens=None, label=r) for r in revisions], tasks=["t"],
        vocab={"5": " dogs", "9": " are"},
        features=[
            feature(4, 2, [0.1, 0.2, 0.7], {"ie": [0.1, 0.1, -0.2], "relie": [0.25, 0.25, 0.5]}),
            feature(8, 1, [0.1, 0.8, 0.1], {"ie": [0.0, -2.0, 1.0], "relie": [0.0, 2 / 3, 1 / 3],
                                            "relie_class": "b+c shared"}, description="plural subject",
                    evidence=FeatureEvidence(density={}, histogram={}, top={"all": [window]}, quantiles=[],
                                             logit_lens=lens)),
            feature(9, 2, [0.6, 0.2, 0.2], {"ie": [1.0, 0, 0], "relie": [1.0, 0, 0]}),
        ])
    data.overview.accuracy = {"t": [AccuracyPoint(revision=r, step=None, tokens=None, label=r, accuracy=a, n=None,
                                                  mean_m=None) for r, a in zip(revisions, (0.5, 0.55, 0.9))]}
    data.overview.class_counts = {"decoder-norm trajectory": {"persistent": 2, "emerging": 1, "transient": 1}}
    data.overview.emergence = ReportEmergence(revisions=revisions, tokens_seen=[None] * 3, counts_live=[1, 2, 1],
                                              counts=[1, 2, 1], meaning="by hand", presence_fraction=0.5)
    lines = findings(data, n=4)
    assert lines[0] == "t: accuracy jumps from 55% at b to 90% at c (the largest step; 50% at a, 90% at c)."
    assert lines[1].startswith("Feature 8 has the largest effect on t: 67% of it (RelIE) is at b, class b+c shared.")
    assert "fires most on 'dogs'" in lines[1] and "promotes 'are'" in lines[1] and "plural subject" in lines[1]
    assert lines[2] == ("3 of 4 live features (75%) emerge after a (decoder norm first ≥ 50% of its peak), most "
                        "between a and b (2); per interval in evaluation/emergence.png.")
    assert lines[3].startswith("For 3 of 3 reported features on t")
    assert findings(data, n=2) == lines[:2]
    assert findings(report_data()) == []


def test_only_finished_unchanged_outputs_are_read(tmp_path, run3):
    """What a stage wrote is verified when read: a file changed since (even to another valid table)
    is an error naming it; outputs whose stage has no record (killed half-way) are not shown."""
    import yaml

    run, _ = run3
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    features = copy / "evaluation" / "features.csv"
    lines = features.read_text().splitlines(keepends=True)
    features.write_text("".join(lines[:-1]))  # one feature fewer: still a valid table
    with pytest.raises(ArtifactError, match=r"evaluation/features\.csv changed after `crosstime evaluate` wrote it"):
        report(ReportConfig(run=copy, n_features=5, progress=False, evidence=QUICK))
    features.write_text("".join(lines))
    records = yaml.safe_load((copy / "config.yaml").read_text())
    del records["evaluate"]  # as a killed evaluate leaves it
    (copy / "config.yaml").write_text(yaml.safe_dump(records))
    report(ReportConfig(run=copy, n_features=5, progress=False, evidence=QUICK))
    data = read_report_data(copy / "report").model_dump(mode="json")
    assert any("`crosstime evaluate` did not finish there" in m for m in data["missing"])
    assert data["overview"].get("evaluation") is None


@pytest.mark.parametrize("variant", ["relu", "topk", "batchtopk", "jumprelu"])
def test_crosscoder_panel_lists_only_the_settings_of_its_variant(variant):
    """k only for topk/batchtopk, jumprelu_* only for jumprelu, the L1 norm only for relu, as the fields document."""
    from crosstime.crosscoder import CrosscoderConfig, TrainSettings
    from crosstime.report.dashboard import crosscoder_settings

    config = CrosscoderConfig(variant=variant, n_checkpoints=2, d_model=8, n_features=64).model_dump(mode="json")
    train = TrainSettings(variant=variant).model_dump(mode="json")
    shown = {s.name: s for s in crosscoder_settings(config, train)}
    assert ("k" in shown) == (variant in ("topk", "batchtopk"))
    assert ("auxk_coeff" in shown) == (variant in ("topk", "batchtopk"))
    assert ("threshold_beta" in shown) == (variant == "batchtopk")
    assert ("jumprelu_bandwidth" in shown) == ("jumprelu_penalty" in shown) == (variant == "jumprelu")
    assert ("fused" in shown) == (variant in ("relu", "jumprelu"))  # the variants with a `fused` setting
    assert {"variant", "n_features", "lr", "batch_size"} <= set(shown)
    assert not {"device", "progress", "wandb_project"} & set(shown)  # execution settings are not the crosscoder's
    assert shown["lr"].group == "training" and shown["variant"].group == "architecture"
    assert shown["lr"].label == "lr" and shown["dec_init_norm"].description
    assert shown["steps"].label == "training steps"  # the field's title: not attribution's integration steps


def test_logit_lens_leaves_out_excluded_tokens():
    from crosstime.evidence import top_tokens

    logits = torch.tensor([[5.0, -9.0, 1.0, 4.0, -2.0, 0.5]])
    promoted, suppressed = top_tokens(logits, 2)
    assert [i for i, _ in promoted[0]] == [0, 3] and [i for i, _ in suppressed[0]] == [1, 4]
    promoted, suppressed = top_tokens(logits, 2, excluded=[0, 1])  # e.g. <bos>, <eos>
    assert promoted[0] == [[3, 4.0], [2, 1.0]] and suppressed[0] == [[4, -2.0], [5, 0.5]]


# ---------------------------------------------------------------------------------------
# a large report: features in shards beside the page
# ---------------------------------------------------------------------------------------
def _shard_entries(path) -> tuple[int, list[dict]]:
    m = re.fullmatch(r"crosstimeShard\((\d+),(.*)\);\n", path.read_text(), re.DOTALL)
    return int(m.group(1)), json.loads(m.group(2))


def _big_features(n: int) -> list[ReportFeature]:
    """``n`` features with ids 0, 3, 6, … in a shuffled rank order, evidence of varying size (some none), a NaN."""
    ids = [3 * i for i in range(n)]
    order = sorted(ids, key=lambda i: (i * 7919) % 101)
    window = {"context": 1, "position": 2, "value": 0.5, "start": 0, "acts": [0.5]}
    return [ReportFeature.model_validate({
        "id": i, "rank": r + 1, "reldec": [0.25, float("nan")], "reldec_class": "late", "description": f"d{i} </script>",
        "annotation": None, "tasks": {"t": {"ie": [1.0, -2.0], "relie": [0.3, 0.7], "relie_class": "late", "exact": [1.0, 2.0]}},
        **({} if i % 9 == 0 else {"evidence": {"density": {"all": 0.1}, "histogram": {}, "quantiles": [], "logit_lens": {},
                                               "top": {"all": [{**window, "tokens": list(range(i % 50))}]}}})})
        for r, i in enumerate(order)]


def test_write_shards_splits_by_id_count_and_bytes(tmp_path):
    from crosstime.report.dashboard import SUMMARY_KEYS, write_shards

    features = _big_features(40)
    out = write_shards(features, tmp_path / "features", per_shard=4, max_bytes=400)
    shards = sorted((tmp_path / "features").glob("shard-*.js"))
    assert out.count == 40 and out.path == "features" and len(shards) == len(out.starts) == len(out.sha256)
    seen = []
    for k, path in enumerate(shards):
        number, entries = _shard_entries(path)
        ids = [e["id"] for e in entries]
        assert number == k and ids[0] == out.starts[k] and ids == sorted(ids)
        assert out.sha256[k] == sha256_file(path)
        if k + 1 < len(shards):
            assert ids[-1] < out.starts[k + 1]
        assert len(entries) <= 4
        assert len(entries) == 1 or sum(len(json.dumps(e, separators=(",", ":"))) for e in entries) <= 400
        seen += entries
    # every entry whole, every field it has (and only those: the sparse record), NaN as null
    expected = [json.loads(f.model_dump_json()) for f in sorted(features, key=lambda f: f.id)]
    assert seen == expected and seen[0]["reldec"] == [0.25, None] and "evidence" not in seen[0]
    assert "</script>" not in "".join(p.read_text() for p in shards)  # safe in a script, still the same JSON
    index = json.loads(re.fullmatch(r"crosstimeIndex\((.*)\);\n", (tmp_path / "features" / "index.js").read_text(),
                                    re.DOTALL).group(1))
    assert [e["id"] for e in index] == [f.id for f in features]  # rank order, for the list
    assert set(index[0]) == {k for k in SUMMARY_KEYS if k in features[0].model_fields_set} | {"tasks"}
    assert index[0]["tasks"] == {"t": {"ie": [1.0, -2.0], "relie": [0.3, 0.7], "relie_class": "late"}}


def test_a_large_report_is_written_once_in_shards_and_read_back_whole(tmp_path):
    """Above embed_max: data.json and the page hold no feature, the shards hold each once; read_report_data
    gives back the data as written whole, and refuses a shard changed, missing or cut short."""
    from crosstime.report.dashboard import write_report

    def embedded(html):
        return json.loads(re.search(r'id="crosstime-data">(.*?)</script>', html.read_text(), re.DOTALL).group(1))

    folder = tmp_path / "report"
    data = report_data(features=_big_features(12), title="</script> t")
    html = write_report(data, folder, embed_max=10, per_shard=5)
    stored, page = json.loads((folder / "data.json").read_text()), embedded(html)
    assert page == stored and stored["features"] == [] and stored["feature_shards"]["count"] == 12
    assert page["feature_shards"]["starts"][0] == 0 and (folder / "features" / "index.js").is_file()
    back = read_report_data(folder)
    assert back.model_dump(mode="json") == json.loads(data.model_dump_json())  # NaN as null, as the whole file has it
    assert [f.model_fields_set for f in back.features] == [f.model_fields_set for f in data.features]
    shard = folder / "features" / "shard-00001.js"
    original = shard.read_bytes()
    for broken, says in ((original.replace(b'"late"', b'"early"', 1), "changed"), (original[:-9], "changed"), (None, "missing")):
        if broken is None:
            shard.unlink()
        else:
            shard.write_bytes(broken)
        with pytest.raises(ArtifactError, match=says):
            read_report_data(folder)
    # re-written small (e.g. fewer features): one file again, the old shards removed
    html = write_report(report_data(features=_big_features(3)), folder, embed_max=10)
    assert [f["id"] for f in embedded(html)["features"]] == [f.id for f in _big_features(3)]
    assert embedded(html)["feature_shards"] is None and not (folder / "features").exists()
    assert [f.id for f in read_report_data(folder).features] == [f.id for f in _big_features(3)]


def test_report_all_features_lists_every_live_feature_in_one_pass(run3, tmp_path, monkeypatch):
    """``all_features``: every live feature listed (the reported first) with its evidence, gathered in
    ONE pass over the store; the top contexts of a reported feature are those a report of it alone finds."""
    import crosstime.evidence as evidence_module

    run = tmp_path / "run"
    shutil.copytree(run3[0], run, ignore=shutil.ignore_patterns("report", ".crosstime.lock*"))
    passes = []
    real_stream = evidence_module.stream
    monkeypatch.setattr(evidence_module, "stream", lambda *a, **kw: passes.append(len(a[2])) or real_stream(*a, **kw))
    config = {"run": run, "n_features": 5, "progress": False,
              "evidence": EvidenceConfig(n_top=3, max_contexts=6, logit_lens="none")}
    report(ReportConfig(**config))
    reported = read_report_data(run / "report").features
    report(ReportConfig(**config, all_features=True))
    listed = read_report_data(run / "report").features
    norms = run3[1].decoder_norms().detach()
    live = [i for i in range(N_FEATURES) if float(norms[i].sum()) > 0]
    assert passes == [5, len(live)]  # one pass each, the second over every live feature
    assert sorted(f.id for f in listed) == live
    assert [f.id for f in listed[:5]] == [f.id for f in reported]
    assert [f.rank for f in listed] == list(range(1, len(live) + 1))
    assert all(f.evidence and len(f.norm) == 3 for f in listed)
    for a, b in zip(reported, listed[:5]):
        assert a.evidence.top == b.evidence.top
