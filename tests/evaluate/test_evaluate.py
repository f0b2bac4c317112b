"""The evaluate stage end to end on a tiny store, with saved crosscoders whose answers are known."""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import WORDS, make_tiny_series
from pydantic import ValidationError

from crosstime import stage
from crosstime.artifacts import (
    EVALUATION_FEATURES,
    ArtifactError,
    Evaluation,
    RunDir,
    read_model,
)
from crosstime.crosscoder import (
    CrosscoderConfig,
    CrosscoderError,
    TrainSettings,
    build,
    fit,
)
from crosstime.evaluate import work as ev
from crosstime.evaluate.work import EvaluateConfig, EvaluationError
from crosstime.runs import StageNotRun
from crosstime.stages.evaluate import evaluate
from crosstime.series import open_series
from crosstime.sites import patch_site, unembedding
from crosstime.store import ActivationStore, HarvestConfig
from crosstime.stages.harvest import harvest

T = 16
LAYER = 1


def exact_weights(M: int, d: int, gain: float = 1.0, bias: float = 0.0) -> dict[str, torch.Tensor]:
    """F = 2·M·d latents: ReLU(±x_m) per coordinate, decoded back to checkpoint m only (× gain).

    A ReLU crosscoder with these weights reconstructs x_m · gain + bias exactly; every latent
    is specific to one checkpoint."""
    F = 2 * M * d
    W_enc = torch.zeros(M, d, F)
    W_dec = torch.zeros(F, M, d)
    eye = torch.eye(d)
    for m in range(M):
        lo = 2 * m * d
        W_enc[m, :, lo : lo + d] = eye
        W_enc[m, :, lo + d : lo + 2 * d] = -eye
        W_dec[lo : lo + d, m] = gain * eye
        W_dec[lo + d : lo + 2 * d, m] = -gain * eye
    b_dec = bias * torch.randn(M, d, generator=torch.Generator().manual_seed(0))  # not along all-ones: LN removes that
    return {"W_enc": W_enc, "W_dec": W_dec, "b_enc": torch.zeros(F), "b_dec": b_dec}


def save_crosscoder(run: Path, weights: dict[str, torch.Tensor] | None, revisions: list[str] | None,
                    scales: list[float] | None = None, *, variant: str = "relu", fold: bool = False,
                    n_features: int | None = None, d: int = 32, **config) -> torch.nn.Module:
    """Save a crosscoder into ``run/crosscoder`` as the train stage would (revisions and the
    store's scales recorded; ``scales`` default: the store's); ``weights`` None keeps the init."""
    store = ActivationStore(run / "activations")
    revs = revisions if revisions is not None else store.revisions
    if scales is None:
        scales = [store.scales[r] for r in revs]
    M = weights["W_dec"].shape[1] if weights is not None else len(revs)
    F = weights["W_dec"].shape[0] if weights is not None else n_features
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=M, d_model=d, n_features=F, revisions=revisions,
                                   scales=scales, **config))
    if weights is not None:
        with torch.no_grad():
            for name, value in weights.items():
                getattr(model, name).copy_(value)
    if fold:
        model.fold_scales()
    shutil.rmtree(run / "crosscoder", ignore_errors=True)
    model.save(run / "crosscoder")
    return model


@pytest.fixture(scope="module")
def sharp_series(tmp_path_factory) -> Path:
    """Three tiny random GPT-NeoX checkpoints whose unembedding is scaled up, so that their
    next-token distributions are far from uniform and react to changes at the site."""
    return make_tiny_series(tmp_path_factory.mktemp("sharp_series"), adjust=lambda m: unembedding(m).weight.mul_(60.0))


@pytest.fixture(scope="module")
def run(sharp_series, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    rng = random.Random(0)
    corpus = root / "train.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(300)))
    harvest(HarvestConfig(run=root, series=str(sharp_series), layer=LAYER, corpus=str(corpus), tokens=640,
                          heldout_tokens=6 * T, context_len=T, chunk_contexts=8, batch_size=4, progress=False))
    return root


@pytest.fixture
def own_run(run, tmp_path) -> Path:
    """A run directory of this test alone (a copy of the store, no records)."""
    dst = tmp_path / "run"
    shutil.copytree(run / "activations", dst / "activations")
    return dst


def _cfg(run, **kw) -> EvaluateConfig:
    return EvaluateConfig(run=run, progress=False, **kw)


def _ce_clean(model, ids: torch.Tensor) -> float:
    """Mean next-token CE at positions 1 .. T-2 (the store's kept positions predicting a next token)."""
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.double(), -1)
    return -logp[:, 1:-1].gather(-1, ids[:, 2:, None]).mean().item()


def pair(a: float, b: float) -> float:
    """Pairwise RelDec b / (a + b); 1/2 where both norms are 0."""
    return 0.5 if a + b == 0 else b / (a + b)


def _down_ids(run: Path, store: ActivationStore, contexts: int) -> tuple[np.ndarray, torch.Tensor]:
    ctx = ev.make_plan(_cfg(run, contexts=contexts), store).down_contexts
    return ctx, torch.from_numpy(np.asarray(store.tokens[ctx], dtype=np.int64))


def test_an_exact_crosscoder_gives_full_ev_and_zero_delta_ce(run):
    store = ActivationStore(run / "activations")
    save_crosscoder(run, exact_weights(3, 32), store.revisions)
    result = evaluate(_cfg(run, batch_rows=40))  # small batches: several encode batches
    assert isinstance(result, Evaluation)
    s = result.summary
    assert result.settings.reconstruction_tokens == 6 * (T - 1)
    assert result.settings.revisions == store.revisions
    assert s.explained_variance_overall == pytest.approx(1.0, abs=1e-6)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in result.reconstruction.mse)
    assert s.l0 == pytest.approx(3 * 32)  # each coordinate fires exactly one of ReLU(x), ReLU(-x)
    # dead latents: held-out rows topped up with every train row (fewer than the default 100K)
    assert s.dead_window_tokens == store.n_rows("heldout") + store.n_rows("train")
    assert result.reconstruction.dead_window_reliable is False
    for row, rev in zip(result.checkpoints, store.revisions):
        assert row.revision == rev and row.step == store.manifest["checkpoints"][rev]["step"]
        # stored activations are float16: the splice differs from the clean run by that rounding only
        assert abs(row.delta_ce) < 2e-3 and row.kl < 1e-4
        assert abs(row.ce_zero - row.ce_clean) > 1e-3  # zero-ablation is a real intervention
        assert row.predictions == 6 * (T - 2)
    assert s.delta_ce == [r.delta_ce for r in result.checkpoints]
    # every latent decodes into one checkpoint only: one-hot RelDec, "<rev>-dominant"
    assert result.decoder.classes == {f"{r}-dominant": 2 * 32 for r in store.revisions}
    assert result.decoder.reldec_mean == pytest.approx([1 / 3] * 3)
    rows = EVALUATION_FEATURES.read(run / "evaluation", store.revisions)
    assert len(rows) == 3 * 2 * 32
    assert rows[0]["reldec_class"] == "step0-dominant" and rows[0]["reldec"] == [1.0, 0.0, 0.0]
    assert rows[-1]["reldec_class"] == "step100-dominant" and store.revisions[rows[-1]["onset"]] == "step100"
    text = (run / "evaluation.json").read_text()
    assert "tensor(" not in text and "NaN" not in text
    assert read_model(Evaluation, run / "evaluation.json") == result
    assert stage.recorded(_cfg(run))["high"] == 0.7
    assert sorted(result.plots) == ["delta_ce.png", "dimensionality.png", "emergence.png",
                                    "frequency.png", "reldec.png", "rotation.png", "typed_emergence.png"]
    for name in result.plots:
        assert (run / "evaluation" / name).stat().st_size > 1000


def test_splice_uses_the_raw_space_reconstruction_of_each_checkpoint(run):
    """x̂ = 0.5·x + 1 in normalised space must splice 0.5·x_raw + 1/s_m (scales undone) at
    positions ≥ 1: compare with a direct patch of the clean model."""
    store = ActivationStore(run / "activations")
    assert len(set(store.scales.values())) == 3 and all(abs(s - 1) > 1e-3 for s in store.scales.values())
    weights = exact_weights(3, 32, gain=0.5, bias=1.0)
    save_crosscoder(run, weights, store.revisions)
    result = evaluate(_cfg(run, contexts=3, plots=False))
    contexts, ids = _down_ids(run, store, 3)
    series = open_series(store.manifest["series"]["source"])
    rpc = store.rows_per_context
    for m, rev in enumerate(store.revisions):
        model = series.load_model(rev)
        stored = torch.stack([store.read_block(rev, int(c) * rpc, rpc) for c in contexts])  # raw [n, T-1, d]

        def spliced_ce(value, model=model):
            def fn(h):
                out = h.clone()
                out[:, 1:] = value
                return out

            with patch_site(model, LAYER, fn):
                return _ce_clean(model, ids)

        b = weights["b_dec"][m]
        expected = spliced_ce(0.5 * stored + b / store.scales[rev])
        wrong = spliced_ce(0.5 * stored + b)  # scales not undone
        row = result.checkpoints[m]
        assert row.ce_clean == pytest.approx(_ce_clean(model, ids), abs=1e-7)
        assert row.ce_spliced == pytest.approx(expected, abs=1e-6)
        assert abs(wrong - expected) > 1e-4  # the check above can tell the two apart
    assert result.summary.explained_variance_overall < 0.9


def test_a_crosscoder_over_a_subset_of_the_store_checkpoints(run):
    """Trained on step0 and step100 of a step0/step10/step100 store: rows for those two only,
    with numbers equal to a direct computation on the store's rows of those revisions."""
    store = ActivationStore(run / "activations")
    revs = ["step0", "step100"]
    assert store.revisions == ["step0", "step10", "step100"]
    shutil.rmtree(run / "crosscoder", ignore_errors=True)
    model = fit(store, TrainSettings(revisions=revs, n_features=48, steps=30, batch_size=32, lr=1e-3, val_every=0,
                                     device="cpu", progress=False), out=run / "crosscoder")
    result = evaluate(_cfg(run, contexts=2, plots=False, dead_tokens=1))
    assert [r.revision for r in result.checkpoints] == revs and result.settings.revisions == revs
    assert [(r.step, r.tokens_seen) for r in result.checkpoints] == [(0, 0), (100, 100_000)]
    assert result.settings.n_checkpoints == 2
    # independent: every held-out row of those revisions, normalised with the store's scales
    lo, hi = store.context_range("heldout")
    rows = np.arange(lo * store.rows_per_context, hi * store.rows_per_context)
    x = torch.stack([store.read_rows(r, rows) * torch.tensor(store.scales[r], dtype=torch.float32) for r in revs], 1)
    with torch.no_grad():
        W_enc, W_dec, b_enc, b_dec = (getattr(model, n).detach().cpu() for n in ("W_enc", "W_dec", "b_enc", "b_dec"))
        f = torch.relu(torch.einsum("nmd,mdf->nf", x, W_enc) + b_enc)
        x_hat = torch.einsum("nf,fmd->nmd", f, W_dec) + b_dec
    err = (x - x_hat).double().pow(2).sum(dim=(0, 2))
    var = (x.double() - x.double().mean(0)).pow(2).sum(dim=(0, 2))
    for m, row in enumerate(result.checkpoints):
        assert row.explained_variance == pytest.approx(float(1 - err[m] / var[m]), rel=1e-5, abs=1e-6)
        assert row.mse == pytest.approx(float(err[m]) / (len(rows) * store.d_model), rel=1e-5)
        assert row.scale == pytest.approx(store.scales[revs[m]], rel=1e-7)
    assert result.summary.l0 == pytest.approx(float((f > 0).sum(1).double().mean()), rel=1e-6)
    norms = W_dec.norm(dim=-1)
    shares = norms / norms.sum(1, keepdim=True)
    assert result.decoder.reldec_mean == pytest.approx(shares.mean(0).tolist(), rel=1e-5)
    # the splice ran in step0's and step100's own forward passes (not step10's)
    _, ids = _down_ids(run, store, 2)
    series = open_series(store.manifest["series"]["source"])
    for rev, row in zip(revs, result.checkpoints):
        assert row.ce_clean == pytest.approx(_ce_clean(series.load_model(rev), ids), abs=1e-7)
        assert row.predictions == 2 * (T - 2)
    assert len(result.summary.delta_ce) == 2
    header = (run / "evaluation" / "features.csv").read_text().splitlines()[0].split(",")
    assert "reldec_step10" not in header and "reldec_pair_step0_vs_step100" in header
    assert len(EVALUATION_FEATURES.read(run / "evaluation", revs)) == 48


def test_features_csv_reads_back_as_computed_by_hand(run):
    """Every column of features.csv, read with its schema, against a hand computation."""
    store = ActivationStore(run / "activations")
    g = torch.Generator().manual_seed(4)
    F, M, d = 40, 3, 32
    W_dec = torch.randn(F, M, d, generator=g) * torch.rand(F, M, 1, generator=g) ** 2  # norms vary across checkpoints
    W_dec[0, 1:] = 0.0  # feature 0 lives in step0 only
    weights = {"W_enc": 0.2 * torch.randn(M, d, F, generator=g), "W_dec": W_dec,
               "b_enc": -0.5 * torch.rand(F, generator=g), "b_dec": torch.zeros(M, d)}
    weights["b_enc"][5:8] = -1e3  # never fire
    save_crosscoder(run, weights, store.revisions)
    result = evaluate(_cfg(run, contexts=0, plots=False, dead_tokens=1))  # dead window = the held-out rows
    rows = EVALUATION_FEATURES.read(run / "evaluation", store.revisions)
    header = (run / "evaluation" / "features.csv").read_text().splitlines()[0].split(",")
    assert header == ["feature", "frequency", "alive", "reldec_class", "trajectory", "presence_step0",
                      "presence_step10", "presence_step100", "onset", "peak", "offset",
                      "max_norm", "reldec_step0", "reldec_step10", "reldec_step100", "norm_step0", "norm_step10",
                      "norm_step100", "reldec_pair_step0_vs_step10", "reldec_pair_step0_vs_step100",
                      "reldec_pair_step10_vs_step100", "cos_step0_to_step10", "cos_step10_to_step100",
                      "dimensionality_step0", "dimensionality_step10", "dimensionality_step100",
                      "cos_final_step0", "cos_final_step10", "cos_final_step100",
                      "beta_step0", "beta_step10", "beta_step100", "beta_error_step0", "beta_error_step10",
                      "beta_error_step100", "beta_share_step0", "beta_share_step10", "beta_share_step100",
                      "beta_error_share_step0", "beta_error_share_step10", "beta_error_share_step100", "beta_tokens",
                      "scaling_flag", "shrinkage_at", "decoupling_at", "feature_type", "type_score",
                      "score_current_token", "score_previous_token", "score_induction", "score_subject_number",
                      "score_attractor", "score_subject_end", "labelled_share", "labelled_rows", "label_tokens"]
    lo, hi = store.context_range("heldout")
    idx = np.arange(lo * store.rows_per_context, hi * store.rows_per_context)
    x = torch.stack([store.read_rows(r, idx) * torch.tensor(store.scales[r], dtype=torch.float32)
                     for r in store.revisions], 1)
    f = torch.relu(torch.einsum("nmd,mdf->nf", x, weights["W_enc"]) + weights["b_enc"])
    fired = (f > 0).double().mean(0)
    assert 0 < int((fired == 0).sum()) < F  # some dead, some alive: the column is tested both ways
    error = (x - torch.einsum("nf,fmd->nmd", f, W_dec)).double()  # b_dec = 0
    for i, row in enumerate(rows):
        n = [float(W_dec[i, m].norm()) for m in range(M)]
        assert row["feature"] == i
        assert row["frequency"] == pytest.approx(float(fired[i]), rel=1e-5)
        assert row["alive"] is bool(fired[i] > 0)
        assert row["norm"] == pytest.approx(n, rel=1e-5, abs=1e-12)
        assert row["max_norm"] == pytest.approx(max(n), rel=1e-5)
        assert row["reldec"] == pytest.approx([v / sum(n) for v in n], rel=1e-5, abs=1e-12)
        assert row["reldec_pair"] == pytest.approx([pair(n[0], n[1]), pair(n[0], n[2]), pair(n[1], n[2])], rel=1e-5)
        cos = [float(torch.nn.functional.cosine_similarity(W_dec[i, k], W_dec[i, k + 1], dim=0)) for k in range(2)]
        assert row["cos"] == pytest.approx(cos, abs=1e-5)
        present = [m for m in range(M) if n[m] >= 0.5 * max(n)]
        assert (row["onset"], row["peak"], row["offset"]) == (present[0], int(np.argmax(n)), present[-1])
        assert row["presence"] == ["present" if v >= 0.5 * max(n) else "absent" if v < 0.1 * max(n) else "weak"
                                   for v in n]
        dominant = [store.revisions[m] for m in range(M) if n[m] / sum(n) > 0.7]
        if dominant:
            assert row["reldec_class"] == f"{dominant[0]}-dominant"
        # latent scaling over all held-out rows (b_dec = 0): closed-form least squares on the peak direction
        if fired[i] == 0:
            assert row["beta"] == row["beta_error"] == [None] * M and row["scaling_flag"] is None  # empty cells
            continue
        u = W_dec[i, int(np.argmax(n))].double() / max(n)
        fi = f[:, i].double()
        beta = [float(fi @ (x[:, m].double() @ u) / (fi @ fi)) for m in range(M)]
        beta_error = [float(fi @ (error[:, m] @ u) / (fi @ fi) + W_dec[i, m].double() @ u) for m in range(M)]
        assert row["beta"] == pytest.approx(beta, rel=1e-4, abs=1e-6)
        assert row["beta_error"] == pytest.approx(beta_error, rel=1e-4, abs=1e-6)
        assert row["beta_tokens"] == int((f[:, i] > 0).sum())
        pos = [max(b, 0.0) for b in beta_error]
        share = [b / sum(pos) if sum(pos) > 0 else 0.0 for b in pos]  # no positive β: present nowhere
        assert row["beta_error_share"] == pytest.approx(share, rel=1e-4, abs=1e-6)
        if row["beta_tokens"] >= 20:  # the shrinkage flag, by hand: weak or absent, β_error present by a margin
            P = max(n)
            shrunk = [store.revisions[m] for m in range(M)
                      if n[m] < 0.5 * P and beta_error[m] >= 0.5 * P and beta_error[m] - n[m] >= 0.1 * P]
            assert row["shrinkage_at"] == (";".join(shrunk) or None)
            assert (row["scaling_flag"] == "shrinkage") is bool(shrunk)
    assert rows[0]["reldec_class"] == "step0-dominant" and rows[0]["trajectory"] == "fading"
    flagged = sum(r["scaling_flag"] == "shrinkage" for r in rows)
    assert result.summary.shrinkage_flagged == flagged == result.decoder.latent_scaling.shrinkage
    assert result.summary.scaling_judged == sum(r["scaling_flag"] is not None for r in rows)


def test_dead_window_tops_up_heldout_rows_with_train_rows(run):
    store = ActivationStore(run / "activations")
    save_crosscoder(run, exact_weights(3, 32), store.revisions)
    heldout = store.n_rows("heldout")
    for want, got in ((1, heldout), (heldout + 37, heldout + 37)):
        result = evaluate(_cfg(run, contexts=0, plots=False, dead_tokens=want))
        assert result.summary.dead_window_tokens == got
        assert result.reconstruction.dead_window_reliable is True
        # contexts=0 skips splicing
        assert result.checkpoints[0].delta_ce is None and result.summary.delta_ce is None
        assert result.settings.downstream_contexts == 0


def test_bad_inputs_are_refused_before_work(run):
    store = ActivationStore(run / "activations")
    n_rows = store.n_rows("heldout")
    save_crosscoder(run, exact_weights(3, 32), store.revisions)
    evaluate(_cfg(run, contexts=0, plots=False))
    before = (run / "evaluation.json").read_bytes()
    record = stage.recorded(_cfg(run))
    assert record is not None

    def refused(error, match, **kw):
        with pytest.raises(error, match=match):
            evaluate(_cfg(run, **kw))
        # nothing was started: the old output and its record are intact
        assert (run / "evaluation.json").read_bytes() == before and stage.recorded(_cfg(run)) == record

    refused(EvaluationError, "more held-out activation rows", tokens=n_rows + 1)
    refused(EvaluationError, "more held-out contexts", contexts=7)
    save_crosscoder(run, exact_weights(3, 16), store.revisions, d=16)
    refused(CrosscoderError, "width d = 16")
    save_crosscoder(run, exact_weights(3, 32), ["step0", "step10", "step1000"], scales=[1.0, 1.0, 1.0])
    refused(CrosscoderError, r"trained on checkpoints .* \(no \['step1000'\]\)")
    save_crosscoder(run, exact_weights(2, 32), None, scales=[1.0, 1.0])
    refused(CrosscoderError, "records no revisions")
    save_crosscoder(run, exact_weights(3, 32), ["step100", "step10", "step0"])
    refused(CrosscoderError, "not in the store's order")
    shutil.rmtree(run / "crosscoder")
    refused(StageNotRun, r"crosscoder \(the crosscoder\) is not there")
    with pytest.raises(StageNotRun, match="no run directory .*nowhere: the folder is missing; run `crosstime harvest"):
        evaluate(_cfg(run / "nowhere"))


def test_a_store_without_heldout_split_is_refused(run, tiny_series, tmp_path):
    harvest(HarvestConfig(run=tmp_path, series=str(tiny_series), revisions=["step0", "step10"], layer=LAYER,
                          corpus=str(run / "train.txt"), tokens=160, heldout_tokens=0, context_len=T, progress=False))
    save_crosscoder(tmp_path, exact_weights(2, 32), ["step0", "step10"])
    with pytest.raises(EvaluationError, match="no held-out split"):
        evaluate(_cfg(tmp_path))
    assert stage.recorded(_cfg(tmp_path)) is None and not (tmp_path / "evaluation.json").exists()


def test_evaluate_records_itself_and_reuse_ignores_execution_settings(own_run, tmp_path, monkeypatch):
    store = ActivationStore(own_run / "activations")
    model = save_crosscoder(own_run, exact_weights(3, 32), store.revisions)
    cfg = _cfg(own_run, contexts=0, plots=False)
    assert not stage.finished(cfg) and stage.recorded(cfg) is None

    def broken(*args, **kwargs):
        raise RuntimeError("the work failed half-way")

    with monkeypatch.context() as patch:  # a failure during the work (after the input checks)
        patch.setattr(ev, "read_features", broken)
        with pytest.raises(RuntimeError, match="half-way"):
            evaluate(cfg)
    assert stage.recorded(cfg) is None and not stage.finished(cfg)
    evaluate(cfg)
    record = yaml.safe_load((own_run / "config.yaml").read_text())["evaluate"]
    record.pop(stage.INPUTS_KEY)
    assert sorted(record.pop(stage.FILES_KEY)) == ["evaluation.json", "evaluation/features.csv"]  # plots=False
    assert record.pop(stage.WRITES_KEY) == ["evaluation"]
    assert record == {**cfg.output_settings(), "revisions": store.revisions, "inference_rule": model.inference_rule}
    assert stage.verify_outputs(RunDir(own_run), "evaluate")
    (own_run / "evaluation" / "features.csv").write_text((own_run / "evaluation" / "features.csv").read_text()[:-40])
    with pytest.raises(ArtifactError, match=r"features\.csv changed after `crosstime evaluate` wrote it"):
        stage.verify_outputs(RunDir(own_run), "evaluate")
    assert record["high"] == 0.7 and record["contexts"] == 0
    assert not {"run", "progress", "device", "batch_rows", "context_batch_size"} & set(record)
    assert stage.finished(cfg)
    assert stage.finished(EvaluateConfig(run=own_run, contexts=0, plots=False, device="cpu", batch_rows=7,
                                         context_batch_size=2, progress=True))
    assert not stage.finished(_cfg(own_run, contexts=0, plots=False, high=0.8))
    assert not stage.finished(_cfg(own_run, contexts=1, plots=False))
    moved = tmp_path / "moved"
    shutil.copytree(own_run, moved)
    assert stage.finished(_cfg(moved, contexts=0, plots=False))
    # a crosscoder trained since (a new train record) makes the evaluation stale; a scan does not
    records = yaml.safe_load((moved / "config.yaml").read_text())
    (moved / "config.yaml").write_text(yaml.safe_dump({**records, "scan": {"layer": 1}}))
    assert stage.finished(_cfg(moved, contexts=0, plots=False))
    (moved / "config.yaml").write_text(yaml.safe_dump({**records, "train": {"steps": 7}}))
    assert not stage.finished(_cfg(moved, contexts=0, plots=False))
    # a failure after a success forgets the record: the old output may be half overwritten
    with monkeypatch.context() as patch:
        patch.setattr(ev, "read_features", broken)
        with pytest.raises(RuntimeError):
            evaluate(cfg)
    assert stage.recorded(cfg) is None and not stage.finished(cfg)


def test_a_batchtopk_crosscoder_without_threshold_is_evaluated_with_a_warning(own_run):
    store = ActivationStore(own_run / "activations")
    model = save_crosscoder(own_run, None, store.revisions, variant="batchtopk", n_features=64,
                            variant_config={"k": 4})
    assert model.inference_depends_on_batch
    with pytest.warns(UserWarning, match="no estimated threshold, so its features depend on the batch") as caught:
        result = evaluate(_cfg(own_run, contexts=0, plots=False))
    assert model.inference_rule in str(caught[0].message)
    assert result.settings.inference_rule == model.inference_rule and "without a threshold" in model.inference_rule
    assert stage.recorded(_cfg(own_run, contexts=0, plots=False))["inference_rule"] == model.inference_rule
    # the batch rule is what ran: one batch of every held-out row keeps k per row on average
    assert result.summary.l0 == pytest.approx(4.0)
    # with a threshold: its own rule, and no warning
    with torch.no_grad():
        model.threshold.fill_(0.01)
    model.save(own_run / "crosscoder")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate(_cfg(own_run, contexts=0, plots=False))
    assert result.settings.inference_rule.startswith("BatchTopK threshold")
    assert result.summary.l0 != pytest.approx(4.0)


def test_config_refuses_unknown_settings_and_reads_token_counts(run):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        EvaluateConfig(run=run, tokns=5)
    with pytest.raises(ValidationError):
        EvaluateConfig(run=run, crosscoder=str(run / "crosscoder"))  # a run directory is the unit
    cfg = EvaluateConfig(run=run, tokens="1.5K", dead_tokens="2M")
    assert (cfg.tokens, cfg.dead_tokens) == (1500, 2_000_000)
    assert cfg.output() == run / "evaluation.json" and cfg.device == "auto"
    assert all(field.description for field in EvaluateConfig.model_fields.values())


def test_a_saved_folded_crosscoder_is_loaded_unfolded_and_evaluated(run):
    """Through crosstime.crosscoder's own save/load: a relu crosscoder holding the exact weights,
    saved with its scales folded in, must evaluate as the exact crosscoder (EV 1, one-hot RelDec)."""
    store = ActivationStore(run / "activations")
    save_crosscoder(run, exact_weights(3, 32), store.revisions, fold=True)
    result = evaluate(_cfg(run, contexts=2, plots=False))
    assert result.summary.explained_variance_overall == pytest.approx(1.0, abs=1e-5)
    assert result.decoder.classes == {f"{r}-dominant": 2 * 32 for r in store.revisions}
    assert all(abs(r.delta_ce) < 2e-3 for r in result.checkpoints)
    # a crosscoder trained on other activations (other scales) is refused
    save_crosscoder(run, exact_weights(3, 32), store.revisions, scales=[2 * store.scales[r] for r in store.revisions])
    with pytest.raises(CrosscoderError, match="normalisation scales"):
        evaluate(_cfg(run))


def test_printed_table_and_paper_row():
    from rich.console import Console

    from crosstime.artifacts import CheckpointEvaluation, EvaluationSettings, EvaluationSummary
    from crosstime.evaluate import format_table, paper_row

    def row(rev, tokens, **kw):
        return CheckpointEvaluation(revision=rev, step=None, tokens_seen=tokens, scale=1.0, mse=0.25,
                                    explained_variance=0.875, fvu=0.125, reldec_mean=0.5, **kw)

    spliced = {"ce_clean": 3.0, "ce_spliced": 3.5, "ce_zero": 3.01, "delta_ce": 0.5, "zero_gap": 0.01,
               "ce_recovered": -49.0, "kl": 0.0625, "kl_zero": 1.0, "predictions": 10}
    summary = EvaluationSummary(l0=12.345, dead=3, dead_fraction=0.03, dead_window_tokens=5000,
                                explained_variance_overall=0.875, fvu_overall=0.125, mse_overall=0.25)
    # only what the table prints: the settings it names, the summary and the checkpoints
    settings = EvaluationSettings.model_construct(n_features=100, n_checkpoints=2, layer=1)
    result = Evaluation.model_construct(settings=settings, summary=summary,
                                        checkpoints=[row("early", 0, **spliced), row("late", 2_000_000)], timing={})
    console = Console(record=True, width=200)
    console.print(format_table(result))
    text = console.export_text()
    words = " ".join(text.split())  # the title wraps to the table's width
    assert "F=100 over 2 checkpoints, layer 1" in words and "L0 12.3, dead 3 (3.0% over 5,000 tokens)" in words
    assert "-49.000*" in text and "zero-ablation raises CE by less than" in words  # a small zero gap is flagged
    assert "latent scaling" not in text  # an evaluation.json written before latent scaling: nothing claimed
    judged = summary.model_copy(update={"shrinkage_flagged": 4, "scaling_judged": 90})
    console = Console(record=True, width=200)
    console.print(format_table(result.model_copy(update={"summary": judged})))
    assert "L1 shrinkage flagged by latent scaling for 4 of 90 features" in " ".join(console.export_text().split())
    late = next(line for line in text.splitlines() if "late" in line)
    assert "0.875" in late and late.count("—") == 5  # not spliced: CE clean, spliced, ΔCE, recovered, KL
    assert paper_row(result) == "L0 12.35 | Dead 3 | ΔCE —"
    # at 80 columns with seven step names: every name and number whole (no '…'), no line past 80
    names = ["step0", "step16", "step64", "step128", "step256", "step512", "step1000"]
    seven = result.model_copy(update={"checkpoints": [row(n, 10 ** k, **spliced) for k, n in enumerate(names)]})
    narrow = Console(record=True, width=80)
    narrow.print(format_table(seven))
    lines = narrow.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines) and not any("…" in line for line in lines)
    rows = [line.split() for line in lines if line.split()[:1] and line.split()[0] in names]
    assert [r[0] for r in rows] == names and all(r[7] == "-49.000*" and r[9] == "0.500" for r in rows)
    with_dce = result.model_copy(update={"summary": summary.model_copy(update={"delta_ce": [0.5, 0.125]})})
    assert paper_row(with_dce) == "L0 12.35 | Dead 3 | ΔCE +0.5 / +0.125"


def test_cli_prints_the_per_checkpoint_table(run):
    from typer.testing import CliRunner

    from crosstime.cli import app

    store = ActivationStore(run / "activations")
    save_crosscoder(run, exact_weights(3, 32), store.revisions)
    out = CliRunner().invoke(app, ["evaluate", str(run), "--contexts", "2", "--no-plots"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    for rev in store.revisions:
        assert rev in out.output
    assert "ΔCE" in out.output and "L0 96.00 | Dead 0 | ΔCE" in out.output
    bad = CliRunner().invoke(app, ["evaluate", str(run), "--contexts", "99"])
    assert bad.exit_code == 2 and "more held-out contexts" in bad.output
