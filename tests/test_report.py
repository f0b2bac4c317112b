"""Report stage: feature evidence against brute force, logit lens by hand, dashboard data, annotation."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from test_report_helpers import N_FEATURES, TASKS, cached_run, make_crosscoder

from crosstime.report import (
    AnnotationError, EvidenceConfig, ReportConfig, export_annotations, feature_evidence, import_annotations,
    read_annotations, report,
)
from crosstime.report.dashboard import collect, series_columns
from crosstime.report.evidence import DoublingHistogram, logit_lens, stream, windows, Example
from crosstime.rundir import RunDir
from crosstime.store import ActivationStore

FEATURES = [0, 3, 7, 11, 20, 33, 47]


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    return cached_run(tmp_path_factory, M=3)


@pytest.fixture(scope="module")
def store3(run3):
    return ActivationStore(run3[0] / "activations")


def brute_views(store, cc, lo, hi):
    """Every activation of every view over contexts [lo, hi): ``[V, n_ctx, P, F]`` (numpy), one encode per view."""
    P, revs = store.rows_per_context, store.revisions
    x = torch.stack([store.read_block(r, lo * P, (hi - lo) * P) for r in revs], dim=1)
    x = x * torch.tensor([store.scales[r] for r in revs])[None, :, None]
    views = [cc.encode(x)]
    for m in range(len(revs)):
        alone = torch.zeros_like(x)
        alone[:, m] = x[:, m]
        views.append(cc.encode(alone))
    return torch.stack(views).detach().numpy().reshape(len(views), hi - lo, P, -1)


def test_stream_top_contexts_match_brute_force(run3, store3):
    _, cc = run3
    cfg = EvidenceConfig(n_top=5, split="all", max_contexts=None, batch_rows=3 * 15, sample_size=64)
    res = stream(store3, cc, FEATURES, cfg, progress=False)
    lo, hi = res.contexts
    assert (lo, hi) == (0, len(store3.tokens))
    acts = brute_views(store3, cc, lo, hi)
    V = len(store3.revisions) + 1
    assert res.views == ["all"] + store3.revisions
    for v in range(V):
        for k, i in enumerate(FEATURES):
            per_ctx = acts[v, :, :, i]  # [n_ctx, P]
            best, arg = per_ctx.max(1), per_ctx.argmax(1)
            order = [c for c in np.lexsort((np.arange(len(best)), -best)) if best[c] > 0][:5]
            got_vals = [x for x in res.top_values[v, k].tolist() if x > -math.inf]
            assert got_vals == pytest.approx([float(best[c]) for c in order], rel=1e-5)
            got_where = res.top_where[v, k, : len(order)].tolist()
            assert got_where == [[lo + c, store3.first_position + int(arg[c])] for c in order]
            # density and exact histogram
            nz = per_ctx[per_ctx > 0].astype(np.float64)
            assert int(res.nonzero[v, k]) == nz.size
            s = v * len(FEATURES) + k
            upper = float(res.histogram.upper[s])
            if nz.size:
                assert upper == 2.0 ** (math.floor(math.log2(nz.max())) + 1)
                ref, _ = np.histogram(nz, bins=cfg.n_bins, range=(0.0, upper))
                assert res.histogram.counts[s].tolist() == ref.tolist()
            # the uniform sample holds real (context, position, value) triples
            sv = res.sample_values[v, k]
            kept = sv > -math.inf
            assert int(kept.sum()) == min(cfg.sample_size, nz.size)
            for (c, p), val in zip(res.sample_where[v, k][kept].tolist(), sv[kept].tolist()):
                assert val == pytest.approx(float(acts[v, c - lo, p - store3.first_position, i]), rel=1e-5)
    # the same results with another batching (one context per batch, encodes of 7 rows)
    small = stream(store3, cc, FEATURES, cfg.model_copy(update={"batch_rows": 7}), progress=False)
    assert torch.equal(small.top_where, res.top_where) and torch.allclose(small.top_values, res.top_values)
    assert torch.equal(small.histogram.counts, res.histogram.counts) and torch.equal(small.nonzero, res.nonzero)
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
    out = windows(store3, cc, examples, cfg)
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
            # the window's value at the example position is the example's activation
            w = top[0]
            assert w["acts"][w["position"] - w["start"]] == pytest.approx(w["value"], rel=1e-3)
        assert f["density"]["all"] == pytest.approx(float((acts[0, :, :, i] > 0).mean()), abs=1e-4)
        qs = [q["quantile"] for q in f["quantiles"]]
        assert qs == sorted(qs)
        vals = [q["value"] for q in f["quantiles"]]
        assert vals == sorted(vals)  # quantile examples ascend with the quantile
    assert set(ev["token_ids"]) >= {t for f in ev["features"].values() for w in f["top"]["all"] for t in w["tokens"]}
    with pytest.raises(ValueError, match="out of range"):
        feature_evidence(store3, cc, [N_FEATURES], cfg, progress=False)


def test_encode_thresholds_are_respected(run3, store3):
    """A BatchTopK threshold inside encode (eval mode) shapes every statistic (the reference used a bare ReLU)."""
    _, cc = run3
    revs = store3.revisions
    cut = make_crosscoder(revs, [store3.scales[r] for r in revs], store3.d_model, variant="batchtopk", k=4)
    cut.load_state_dict(cc.state_dict(), strict=False)
    cut.threshold.fill_(0.05)
    cut.train()  # feature_evidence must switch to eval mode itself
    cfg = EvidenceConfig(split="all", max_contexts=None, sample_size=1000, per_checkpoint=False, logit_lens="none")
    ev = feature_evidence(store3, cut, FEATURES, cfg, progress=False)
    relu = brute_views(store3, cc, 0, len(store3.tokens))[0]  # the same weights, plain ReLU
    w = cc.decoder_norms().sum(1).detach().numpy()  # BatchTopK scores ReLU(z)·Σ_m‖W_dec[i,m]‖
    n_rows = relu.shape[0] * relu.shape[1]
    for i in FEATURES:
        fires = relu[..., i] * w[i] > 0.05
        assert ev["features"][str(i)]["density"]["all"] == pytest.approx(fires.sum() / n_rows, abs=1e-4)
        assert fires.sum() < (relu[..., i] > 0).sum() or (relu[..., i] > 0).sum() == 0


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


def test_series_columns_spellings():
    revs = ["step0", "step512"]
    assert series_columns(["feature", "ie_step0", "ie_step512"], ["ie"], revs) == ["ie_step0", "ie_step512"]
    assert series_columns(["IE[step0]", "IE[step512]"], ["ie"], revs) == ["IE[step0]", "IE[step512]"]
    assert series_columns(["relie_0", "relie_1"], ["relie"], revs) == ["relie_0", "relie_1"]
    assert series_columns(["ie_step0_lo", "ie_step512_lo"], ["ie_{r}_lo"], revs) == ["ie_step0_lo", "ie_step512_lo"]
    assert series_columns(["ie_step0"], ["ie"], revs) is None  # one checkpoint missing


def test_collect_reads_every_stage(run3):
    run, _ = run3
    data = collect(RunDir(run))
    revs = [c["revision"] for c in data["checkpoints"]]
    assert len(revs) == 3 and data["checkpoints"][1]["tokens"] == 1000
    assert data["tasks"] == sorted(TASKS)
    ov = data["overview"]
    assert set(ov["accuracy"]) == set(TASKS) and len(ov["accuracy"][TASKS[0]]) == 3
    assert [s["name"] for s in ov["similarity"]] == ["cosine", "cka"] and ov["similarity"][0]["labels"] == revs
    assert ov["evaluation"]["columns"][0] == "checkpoint" and "explained_variance" in ov["evaluation"]["columns"]
    assert ov["evaluation"]["overall"]["l0"] == 7.5
    assert {s["name"] for s in ov["dynamics"]["series"]} >= {"loss", "kl_unigram", "kl_bigram"}
    feats = data["all_features"]
    assert len(feats) == N_FEATURES
    ev_rows = {int(r["feature"]): r for r in __import__("csv").DictReader(open(run / "evaluation" / "features.csv"))}
    f = feats[5]
    assert f["reldec"] == pytest.approx([float(ev_rows[5][f"reldec_{r}"]) for r in revs])
    assert f["reldec_class"] == ev_rows[5]["class"] and f["onset"] == int(ev_rows[5]["onset"])
    some = next(i for i in feats if TASKS[0] in feats[i]["tasks"])
    t = feats[some]["tasks"][TASKS[0]]
    assert len(t["ie"]) == len(t["ie_lo"]) == len(t["ie_hi"]) == len(t["relie"]) == 3
    assert sum(t["relie"]) == pytest.approx(1.0, abs=1e-6)
    assert len(t["ablation"]["delta_lpd"]) == 3
    assert sum(ov["distributions"]["reldec"][0]) == N_FEATURES
    att = ov["attribution"][TASKS[0]]
    assert att["summary"]["pairs_kept"] == 40 and att["per_checkpoint"]["columns"] == ["checkpoint", "accuracy_clean"]
    assert sum(sum(v for v in r[1:]) for r in att["confusion"]["rows"]) == 20  # 20 reported features per task
    assert sum(ov["class_counts"]["RelDec class"].values()) == N_FEATURES
    assert not data["missing"] or all("crosscoder" in m for m in data["missing"])


def test_missing_stages_are_listed_and_report_still_renders(tmp_path, run3):
    run, cc = run3
    bare = tmp_path / "bare"
    shutil.copytree(run / "activations", bare / "activations")
    shutil.copytree(run / "crosscoder", bare / "crosscoder")
    out = report(ReportConfig(run=str(bare), n_features=5, progress=False, evidence=EvidenceConfig(logit_lens="none")))
    data = json.loads((bare / "report" / "data.json").read_text())
    text = " ".join(data["missing"])
    for stage in ("scan/accuracy.csv", "evaluation.json", "attribution"):
        assert stage in text
    assert len(data["features"]) == 5  # ranked by decoder norm without attribution
    norms = cc.decoder_norms().detach().sum(1)
    assert [f["id"] for f in data["features"]] == torch.argsort(norms, descending=True, stable=True)[:5].tolist()
    assert out.is_file()


def _embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="crosstime-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


@pytest.mark.parametrize("M", [3, 13])
def test_report_shows_every_checkpoint(tmp_path_factory, M):
    run, cc = cached_run(tmp_path_factory, M=M)
    out = report(ReportConfig(run=str(run), n_features=6, progress=False,
                              evidence=EvidenceConfig(n_top=3, max_contexts=6)))
    html = out.read_text()
    # self-contained: no external resources, inline script and style only
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<script src" not in html and "<link rel=\"stylesheet\"" not in html
    data = _embedded(html)
    assert len(data["checkpoints"]) == M
    assert len(data["features"]) == 6
    for f in data["features"]:
        assert len(f["reldec"]) == M and len(f["norms"]) == M
        for t in f["tasks"].values():
            assert len(t["relie"]) == M
        ev = f["evidence"]
        assert set(ev["top"]) == {"all", *[c["revision"] for c in data["checkpoints"]]}
        assert set(ev["logit_lens"]) == {c["revision"] for c in data["checkpoints"]}
        assert all(str(t) in data["vocab"] for t, _ in ev["logit_lens"][data["checkpoints"][-1]["revision"]]["promoted"])
    assert RunDir(run).read_config()["report"]["n_features"] == 6


def test_annotation_round_trip(tmp_path, run3):
    run, cc = run3
    work = tmp_path / "run"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("report"))
    report(ReportConfig(run=str(work), n_features=4, progress=False, evidence=EvidenceConfig(max_contexts=4, logit_lens="none")))
    ids = [f["id"] for f in json.loads((work / "report" / "data.json").read_text())["features"]]
    csv_path = tmp_path / "ann.csv"
    export_annotations(work, csv_path)
    import csv

    rows = list(csv.DictReader(open(csv_path)))
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
    back = {int(r["feature"]): r["description"] for r in csv.DictReader(open(again))}
    assert back[ids[0]] == 'plural subject, "quoted", with a comma' and back[ids[2]] == "verb agreement"
    assert import_annotations(work, again) == merged
    # a later report keeps the annotations
    report(ReportConfig(run=str(work), n_features=4, progress=False, evidence=EvidenceConfig(max_contexts=4, logit_lens="none")))
    data = _embedded((work / "report" / "index.html").read_text())
    assert {f["id"]: f["description"] for f in data["features"]}[ids[2]] == "verb agreement"


def test_malformed_annotation_csv_names_lines(tmp_path, run3):
    run, _ = run3
    work = tmp_path / "run"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("report", "activations"))
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


def test_bad_input_errors(tmp_path, run3):
    from crosstime.report import ReportError

    with pytest.raises(ReportError, match="does not exist"):
        report(ReportConfig(run=str(tmp_path / "nope"), progress=False))
    run, cc = run3
    with pytest.raises(ReportError, match="out of range"):
        report(ReportConfig(run=str(run), features=[N_FEATURES + 1], progress=False))
    wrong = make_crosscoder(["a", "b"], [1.0, 1.0], 32)
    with pytest.raises(ReportError, match="spans 2 checkpoints"):
        report(ReportConfig(run=str(run), progress=False), crosscoder=wrong)


def test_cli_report_and_annotate(tmp_path, run3):
    from typer.testing import CliRunner

    from crosstime.cli import app

    run, _ = run3
    work = tmp_path / "run"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("report"))
    cli = CliRunner()
    res = cli.invoke(app, ["report", str(work), "--features", "3,7", "--features", "11", "--max-contexts", "4", "--logit-lens", "none"])
    assert res.exit_code == 0, res.output
    data = json.loads((work / "report" / "data.json").read_text())
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

    ck = [{"revision": r, "label": r} for r in ("a", "b", "c")]
    data = {
        "checkpoints": ck, "tasks": ["t"], "vocab": {"5": " dogs", "9": " are"},
        "overview": {"accuracy": {"t": [{"revision": "a", "accuracy": 0.5}, {"revision": "b", "accuracy": 0.55},
                                        {"revision": "c", "accuracy": 0.9}]},
                     "class_counts": {"decoder-norm trajectory": {"persistent": 2, "emerging": 1, "transient": 1}}},
        "features": [
            {"id": 4, "onset": 2, "reldec": [0.1, 0.2, 0.7], "tasks": {"t": {"ie": [0.1, 0.1, -0.2], "relie": [0.25, 0.25, 0.5]}}},
            {"id": 8, "onset": 1, "reldec": [0.1, 0.8, 0.1], "description": "plural subject",
             "tasks": {"t": {"ie": [0.0, -2.0, 1.0], "relie": [0.0, 2 / 3, 1 / 3], "relie_class": "b+c shared"}},
             "evidence": {"top": {"all": [{"tokens": [1, 5, 2], "start": 3, "position": 4}]},
                          "logit_lens": {"c": {"promoted": [[9, 1.0]], "suppressed": []}}}},
            {"id": 9, "onset": 2, "reldec": [0.6, 0.2, 0.2], "tasks": {"t": {"ie": [1.0, 0, 0], "relie": [1.0, 0, 0]}}},
        ],
    }
    lines = findings(data, n=4)
    assert lines[0] == "t: accuracy jumps from 55% at b to 90% at c (the largest step; 50% at a, 90% at c)."
    assert lines[1].startswith("Feature 8 has the largest effect on t: 67% of it (RelIE) is at b, class b+c shared.")
    assert "fires most on 'dogs'" in lines[1] and "promotes 'are'" in lines[1] and "plural subject" in lines[1]
    assert lines[2].startswith("2 of 4 features (50%) have decoders that emerge after a")
    assert "most common onset is c" in lines[2]
    assert lines[3].startswith("For 3 of 3 reported features on t")
    assert findings(data, n=2) == lines[:2]
    assert findings({"checkpoints": [], "overview": {}}) == []


@pytest.mark.parametrize("variant", ["relu", "topk", "batchtopk", "jumprelu"])
def test_checkpoint_alone_view_equals_masked_encode(variant):
    """The fast single-checkpoint view is exactly encode() with the other checkpoints zeroed, for every variant."""
    from crosstime.report.evidence import Encoder

    cc = make_crosscoder(["a", "b", "c"], [1.0, 2.0, 0.5], d=8, F=16, variant=variant, **({"k": 3} if "topk" in variant else {}))
    if variant == "batchtopk":
        cc.threshold.fill_(0.02)
    x = torch.randn(20, 3, 8, generator=torch.Generator().manual_seed(0))
    enc = Encoder(cc)
    assert enc.fast
    for m in range(3):
        alone = torch.zeros_like(x)
        alone[:, m] = x[:, m]
        assert torch.allclose(enc.view(x, m + 1), cc.encode(alone), atol=1e-6)
    assert torch.equal(enc.view(x, 0), cc.encode(x))


def test_unreachable_series_still_reports(tmp_path, run3):
    """A store whose series is gone (e.g. harvested on another machine): no logit lens, ids instead of text."""
    run, _ = run3
    work = tmp_path / "run"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("report"))
    out = report(ReportConfig(run=str(work), n_features=3, series=str(tmp_path / "gone"), progress=False,
                              evidence=EvidenceConfig(max_contexts=4)))
    data = _embedded(out.read_text())
    assert any("could not be opened" in m for m in data["missing"])
    assert all(f["evidence"]["logit_lens"] == {} for f in data["features"])
    assert all(v.startswith(" #") for v in data["vocab"].values()) and data["vocab"]
