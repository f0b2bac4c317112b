"""The evaluate stage end to end on a tiny store, with hand-built crosscoders whose answers are known."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WORDS, make_tiny_series

from crosstime.evaluate import stage as ev
from crosstime.evaluate.stage import EvaluateConfig, EvaluationError, NormalisedCrosscoder, evaluate
from crosstime.series import open_series
from crosstime.sites import patch_site, unembedding
from crosstime.store import ActivationStore, HarvestConfig, harvest

T = 16
LAYER = 1


class LinearCoder(torch.nn.Module):
    """f = ReLU(Σ_m x_m W_enc[m] + b_enc), x̂_m = f W_dec[:, m] + b_dec[m] (the design's crosscoder)."""

    def __init__(self, W_enc, W_dec, b_enc, b_dec):
        super().__init__()
        self.W_enc, self.W_dec = torch.nn.Parameter(W_enc), torch.nn.Parameter(W_dec)
        self.b_enc, self.b_dec = torch.nn.Parameter(b_enc), torch.nn.Parameter(b_dec)

    def encode(self, x):
        return torch.relu(torch.einsum("bmd,mdf->bf", x, self.W_enc) + self.b_enc)

    def decode(self, f):
        return torch.einsum("bf,fmd->bmd", f, self.W_dec) + self.b_dec


def exact_coder(M: int, d: int, gain: float = 1.0, bias: float = 0.0) -> LinearCoder:
    """F = 2·M·d latents: ReLU(±x_m) per coordinate, decoded back to checkpoint m only (× gain).

    Reconstructs x_m · gain + bias exactly; every latent is specific to one checkpoint."""
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
    return LinearCoder(W_enc, W_dec, torch.zeros(F), b_dec)


@pytest.fixture(scope="module")
def sharp_series(tmp_path_factory) -> Path:
    """Three tiny random GPT-NeoX checkpoints whose unembedding is scaled up, so that their
    next-token distributions are far from uniform and react to changes at the site."""
    return make_tiny_series(tmp_path_factory.mktemp("sharp_series"), adjust=lambda m: unembedding(m).weight.mul_(60.0))


@pytest.fixture(scope="module")
def run(sharp_series, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    tiny_series = sharp_series
    rng = random.Random(0)
    corpus = root / "train.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(300)))
    harvest(HarvestConfig(series=str(tiny_series), layer=LAYER, corpus=str(corpus), tokens=640, heldout_tokens=6 * T,
                          context_len=T, out=str(root / "activations"), chunk_contexts=8, batch_size=4, progress=False))
    (root / "crosscoder").mkdir()
    return root


def _use(monkeypatch, coder: LinearCoder, revisions):
    monkeypatch.setattr(ev, "load_normalised_crosscoder",
                        lambda path: NormalisedCrosscoder(coder, list(revisions) if revisions else None, None, str(path)))


def _cfg(run, **kw):
    return EvaluateConfig(run=str(run), progress=False, **kw)


def test_an_exact_crosscoder_gives_full_ev_and_zero_delta_ce(run, monkeypatch):
    store = ActivationStore(run / "activations")
    _use(monkeypatch, exact_coder(3, 32), store.revisions)
    result = evaluate(_cfg(run, batch_rows=40))  # small batches: several encode batches
    s = result["summary"]
    assert result["settings"]["reconstruction_tokens"] == 6 * (T - 1)
    assert s["explained_variance_overall"] == pytest.approx(1.0, abs=1e-6)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in result["reconstruction"]["mse"])
    assert s["l0"] == pytest.approx(3 * 32)  # each coordinate fires exactly one of ReLU(x), ReLU(-x)
    # dead latents: held-out rows topped up with every train row (fewer than the default 100K)
    assert s["dead_window_tokens"] == store.n_rows("heldout") + store.n_rows("train")
    assert result["reconstruction"]["dead_window_reliable"] is False
    for row in result["checkpoints"]:
        # stored activations are float16: the splice differs from the clean run by that rounding only
        assert abs(row["delta_ce"]) < 2e-3 and row["kl"] < 1e-4
        assert abs(row["ce_zero"] - row["ce_clean"]) > 1e-3  # zero-ablation is a real intervention
        assert row["predictions"] == 6 * (T - 2)
    # every latent decodes into one checkpoint only: one-hot RelDec, "<rev>-dominant"
    assert result["decoder"]["classes"] == {f"{r}-dominant": 2 * 32 for r in store.revisions}
    assert result["decoder"]["reldec_mean"] == pytest.approx([1 / 3] * 3)
    with open(run / "evaluation" / "features.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 * 32
    assert rows[0]["class"] == "step0-dominant" and float(rows[0]["reldec_step0"]) == 1.0
    assert rows[-1]["class"] == "step100-dominant" and rows[-1]["onset_revision"] == "step100"
    text = (run / "evaluation.json").read_text()
    assert "tensor(" not in text and "NaN" not in text  # plain JSON numbers only
    saved = json.loads(text)
    assert saved["checkpoints"][1]["delta_ce"] == result["checkpoints"][1]["delta_ce"]
    assert "evaluate" in __import__("yaml").safe_load((run / "config.yaml").read_text())
    for name in ("reldec.png", "emergence.png", "delta_ce.png", "frequency.png"):
        assert (run / "evaluation" / name).stat().st_size > 1000


def test_splice_uses_the_raw_space_reconstruction_of_each_checkpoint(run, monkeypatch):
    """x̂ = 0.5·x + 1 in normalised space must splice 0.5·x_raw + 1/s_m (scales undone) at
    positions ≥ 1: compare with a direct patch of the clean model."""
    store = ActivationStore(run / "activations")
    assert len(set(store.scales.values())) == 3 and all(abs(s - 1) > 1e-3 for s in store.scales.values())
    coder = exact_coder(3, 32, gain=0.5, bias=1.0)
    _use(monkeypatch, coder, store.revisions)
    result = evaluate(_cfg(run, contexts=3, plots=False))
    contexts = ev._plan(_cfg(run, contexts=3), store)["down_contexts"]
    ids = torch.from_numpy(np.asarray(store.tokens[contexts], dtype=np.int64))
    series = open_series(store.manifest["series"]["source"])
    rpc = store.rows_per_context
    for m, rev in enumerate(store.revisions):
        model = series.load_model(rev)
        stored = torch.stack([store.read_block(rev, int(c) * rpc, rpc) for c in contexts])  # raw [n, T-1, d]

        def spliced_ce(value):
            def fn(h):
                out = h.clone()
                out[:, 1:] = value
                return out

            with torch.no_grad(), patch_site(model, LAYER, fn):
                logp = torch.log_softmax(model(ids).logits.double(), -1)
            return -logp[:, 1:-1].gather(-1, ids[:, 2:, None]).mean().item()

        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits.double(), -1)
        ce_clean = -logp[:, 1:-1].gather(-1, ids[:, 2:, None]).mean().item()
        b = coder.b_dec[m].detach()
        expected = spliced_ce(0.5 * stored + b / store.scales[rev])
        wrong = spliced_ce(0.5 * stored + b)  # scales not undone
        row = result["checkpoints"][m]
        assert row["ce_clean"] == pytest.approx(ce_clean, abs=1e-7)
        assert row["ce_spliced"] == pytest.approx(expected, abs=1e-6)
        assert abs(wrong - expected) > 1e-4  # the check above can tell the two apart
    assert result["summary"]["explained_variance_overall"] < 0.9


def test_dead_window_tops_up_heldout_rows_with_train_rows(run, monkeypatch):
    store = ActivationStore(run / "activations")
    _use(monkeypatch, exact_coder(3, 32), store.revisions)
    heldout = store.n_rows("heldout")
    for want, got in ((0, heldout), (heldout + 37, heldout + 37)):
        result = evaluate(_cfg(run, contexts=0, plots=False, dead_tokens=want))
        assert result["summary"]["dead_window_tokens"] == got
        assert result["reconstruction"]["dead_window_reliable"] is True
        assert "delta_ce" not in result["checkpoints"][0]  # contexts=0 skips splicing


def test_bad_inputs_are_refused_before_work(run, monkeypatch):
    store = ActivationStore(run / "activations")
    n_rows = store.n_rows("heldout")
    _use(monkeypatch, exact_coder(3, 32), store.revisions)
    with pytest.raises(EvaluationError, match="more held-out activation rows"):
        evaluate(_cfg(run, tokens=n_rows + 1))
    with pytest.raises(EvaluationError, match="more held-out contexts"):
        evaluate(_cfg(run, contexts=7))
    _use(monkeypatch, exact_coder(2, 32), None)
    with pytest.raises(EvaluationError, match="2 checkpoints"):
        evaluate(_cfg(run))
    _use(monkeypatch, exact_coder(3, 16), store.revisions)
    with pytest.raises(EvaluationError, match="width d=16"):
        evaluate(_cfg(run))
    _use(monkeypatch, exact_coder(3, 32), ["step0", "step10", "step1000"])
    with pytest.raises(EvaluationError, match="trained on checkpoints"):
        evaluate(_cfg(run))
    with pytest.raises(EvaluationError, match="cannot open the activation store"):
        evaluate(_cfg(run, store=str(run / "nowhere")))


def test_a_store_without_heldout_split_is_refused(run, tiny_series, tmp_path, monkeypatch):
    harvest(HarvestConfig(series=str(tiny_series), revisions=["step0", "step10"], layer=LAYER, corpus=str(run / "train.txt"),
                          tokens=160, heldout_tokens=0, context_len=T, out=str(tmp_path / "activations"), progress=False))
    (tmp_path / "crosscoder").mkdir()
    _use(monkeypatch, exact_coder(2, 32), ["step0", "step10"])
    with pytest.raises(EvaluationError, match="no held-out split"):
        evaluate(_cfg(tmp_path))


def test_cli_prints_the_per_checkpoint_table(run, monkeypatch):
    from typer.testing import CliRunner

    from crosstime.cli import app

    store = ActivationStore(run / "activations")
    _use(monkeypatch, exact_coder(3, 32), store.revisions)
    out = CliRunner().invoke(app, ["evaluate", str(run), "--contexts", "2", "--no-plots"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    for rev in store.revisions:
        assert rev in out.output
    assert "ΔCE" in out.output and "L0 96.00 | Dead 0 | ΔCE" in out.output
    bad = CliRunner().invoke(app, ["evaluate", str(run), "--contexts", "99"])
    assert bad.exit_code == 2 and "more held-out contexts" in bad.output


def test_a_saved_folded_crosscoder_is_loaded_unfolded_and_evaluated(run, monkeypatch, tmp_path):
    """Through crosstime.crosscoder's own save/load: a relu crosscoder holding the exact weights,
    saved with its scales folded in, must evaluate as the exact crosscoder (EV 1, one-hot RelDec)."""
    from crosstime.crosscoder import Crosscoder, CrosscoderConfig

    store = ActivationStore(run / "activations")
    exact = exact_coder(3, 32)
    cfg = CrosscoderConfig(variant="relu", n_checkpoints=3, d_model=32, n_features=exact.W_dec.shape[0],
                           revisions=store.revisions, scales=[store.scales[r] for r in store.revisions])
    model = Crosscoder(cfg)
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            getattr(model, name).copy_(getattr(exact, name))
    model.fold_scales()
    model.save(run / "crosscoder")
    result = evaluate(_cfg(run, contexts=2, plots=False))
    assert result["summary"]["explained_variance_overall"] == pytest.approx(1.0, abs=1e-5)
    assert result["decoder"]["classes"] == {f"{r}-dominant": 2 * 32 for r in store.revisions}
    assert all(abs(r["delta_ce"]) < 2e-3 for r in result["checkpoints"])
    # a crosscoder trained on other activations (other scales) is refused
    cfg_other = cfg.model_copy(update={"scales": [2 * s for s in cfg.scales]})
    Crosscoder(cfg_other).save(tmp_path / "crosscoder")
    with pytest.raises(EvaluationError, match="normalisation scales"):
        evaluate(_cfg(run, crosscoder=str(tmp_path / "crosscoder")))
