"""Crosscoder model: encode/decode against loops over fixed weights, variants, folding, save/load."""

from __future__ import annotations

import json
import math

import pytest
import torch

from crosstime.crosscoder import (
    VARIANTS,
    Crosscoder,
    CrosscoderConfig,
    CrosscoderError,
    build,
    known_variants,
    load,
)

torch.set_num_threads(1)

# M = 2 checkpoints, d = 2, F = 3, hand-picked weights.
W_ENC = [[[0.5, -1.0, 0.25], [1.0, 0.5, -0.5]],      # W_enc[0][j][i]
         [[-0.5, 0.75, 1.0], [0.25, -0.25, 0.5]]]    # W_enc[1][j][i]
B_ENC = [0.1, -0.2, 0.05]
W_DEC = [[[1.0, 0.0], [0.0, 2.0]],                   # W_dec[i][m][j]
         [[0.5, 0.5], [-1.0, 0.0]],
         [[0.0, -3.0], [0.5, 0.5]]]
B_DEC = [[0.1, 0.2], [-0.1, 0.0]]
X = [[[1.0, 2.0], [0.5, -1.0]],
     [[-1.0, 0.5], [2.0, 1.0]],
     [[0.3, 0.3], [0.3, 0.3]]]


def _own(variant: str, **settings) -> dict:
    """Those of ``settings`` that are ``variant``'s own architecture settings (its registered config)."""
    return {k: v for k, v in settings.items() if k in VARIANTS[variant].config.model_fields}


def _fixed(variant: str, **own) -> Crosscoder:
    m = build(CrosscoderConfig(variant=variant, n_checkpoints=2, d_model=2, n_features=3, variant_config=own))
    with torch.no_grad():
        m.W_enc.copy_(torch.tensor(W_ENC))
        m.b_enc.copy_(torch.tensor(B_ENC))
        m.W_dec.copy_(torch.tensor(W_DEC))
        m.b_dec.copy_(torch.tensor(B_DEC))
    return m


def _pre(x):  # loops, no tensor ops
    return [sum(x[m][j] * W_ENC[m][j][i] for m in range(2) for j in range(2)) + B_ENC[i] for i in range(3)]


def _dec(f):
    return [[sum(f[i] * W_DEC[i][m][j] for i in range(3)) + B_DEC[m][j] for j in range(2)] for m in range(2)]


def _weights():  # Σ_m ‖W_dec[i, m]‖
    return [sum(math.sqrt(sum(v * v for v in W_DEC[i][m])) for m in range(2)) for i in range(3)]


def _check(model, expected_f):
    x = torch.tensor(X)
    f = model.encode(x)
    want_x = torch.tensor([_dec(row) for row in expected_f])
    torch.testing.assert_close(f, torch.tensor(expected_f), atol=1e-6, rtol=0)
    torch.testing.assert_close(model.decode(f), want_x, atol=1e-6, rtol=0)
    torch.testing.assert_close(model(x), want_x, atol=1e-6, rtol=0)


def test_relu_encode_decode_against_loops():
    _check(_fixed("relu"), [[max(0.0, v) for v in _pre(x)] for x in X])


def test_topk_keeps_the_k_largest_decoder_weighted_per_token():
    w = _weights()
    expected = []
    for x in X:
        f = [max(0.0, v) for v in _pre(x)]
        keep = sorted(range(3), key=lambda i: -f[i] * w[i])[:1]
        expected.append([f[i] if i in keep else 0.0 for i in range(3)])
    _check(_fixed("topk", k=1), expected)


def test_batchtopk_training_keeps_k_times_b_over_the_batch():
    w = _weights()
    fs = [[max(0.0, v) for v in _pre(x)] for x in X]
    scored = sorted(((fs[b][i] * w[i], b, i) for b in range(3) for i in range(3)), reverse=True)[:3]  # k·B = 3
    keep = {(b, i) for _, b, i in scored}
    model = _fixed("batchtopk", k=1).train()
    _check(model, [[fs[b][i] if (b, i) in keep else 0.0 for i in range(3)] for b in range(3)])


def test_batchtopk_eval_uses_the_threshold():
    w = _weights()
    model = _fixed("batchtopk", k=1).eval()
    model.threshold.fill_(0.9)
    expected = [[v if v * w[i] > 0.9 else 0.0 for i, v in enumerate(max(0.0, p) for p in _pre(x))] for x in X]
    _check(model, expected)
    assert sum(v > 0 for row in expected for v in row) not in (0, 3)  # the threshold, not top-k, decided


def test_batchtopk_keeps_exactly_k_b_on_random_data():
    torch.manual_seed(0)
    model = build(CrosscoderConfig(variant="batchtopk", n_checkpoints=3, d_model=8, n_features=64,
                                   variant_config={"k": 5}, dec_init_norm=1))
    x = torch.randn(40, 3, 8)
    model.train()
    f = model.encode(x)
    assert int((f > 0).sum()) == 5 * 40
    assert (f > 0).sum(1).float().std() > 0  # per-token counts vary: it is a batch, not a per-token, top-k


def test_jumprelu_encode_and_threshold_gradient():
    model = _fixed("jumprelu", jumprelu_threshold_init=0.3, jumprelu_bandwidth=0.5)
    expected = [[v if v > 0.3 else 0.0 for v in _pre(x)] for x in X]
    _check(model, expected)
    # pre-activations within ε/2 of θ give θ a straight-through gradient −(θ/ε)·Σ g
    z = torch.tensor([[0.35, 1.0, -2.0], [0.2, 0.3001, 0.9]])
    f = model.activate(z)
    f.sum().backward()
    g = model.log_threshold.grad
    theta = 0.3
    exp_dtheta = [-(theta / 0.5) * 2, -(theta / 0.5) * 1, 0.0]  # |z−θ| < 0.25 : (0.35, 0.2), (0.3001), none
    assert g.tolist() == pytest.approx([v * theta for v in exp_dtheta], rel=1e-4)  # d/dlogθ = θ · d/dθ


def test_sparse_decode_equals_dense_decode():
    torch.manual_seed(0)
    for variant in ("topk", "batchtopk"):
        model = build(CrosscoderConfig(variant=variant, n_checkpoints=2, d_model=16, n_features=512,
                                       variant_config={"k": 8}, dec_init_norm=1))
        with torch.no_grad():
            model.b_dec.normal_()
        x = torch.randn(32, 2, 16)
        for mode in ("train", "eval"):
            model.train(mode == "train")
            if variant == "batchtopk" and mode == "eval":
                model.threshold.fill_(0.5)
            sf = model.encode_sparse(x)
            f = model.encode(x)
            assert torch.equal(sf.to_dense(512), f)
            torch.testing.assert_close(model.decode_sparse(sf), model.decode(f), rtol=1e-5, atol=1e-5)
            # gradients agree too
            w1 = model.W_dec
            g_sparse = torch.autograd.grad(model.decode_sparse(model.encode_sparse(x)).square().sum(), w1)[0]
            g_dense = torch.autograd.grad(model(x).square().sum(), w1)[0]
            torch.testing.assert_close(g_sparse, g_dense, rtol=1e-4, atol=1e-4)


def test_init_decoder_norm_transpose_and_seed():
    cfg = CrosscoderConfig(n_checkpoints=3, d_model=8, n_features=20, dec_init_norm=0.08, seed=7)
    a, b = build(cfg), build(cfg)
    torch.testing.assert_close(a.W_dec.norm(dim=-1), torch.full((20, 3), 0.08))
    assert torch.equal(a.W_enc, a.W_dec.permute(1, 2, 0))
    assert torch.equal(a.W_dec, b.W_dec) and not torch.equal(a.W_dec, build(cfg.model_copy(update={"seed": 8})).W_dec)
    assert not a.b_enc.any() and not a.b_dec.any()
    assert isinstance(a, Crosscoder) and a.config.variant == "relu"
    # a variant class never rewrites another variant's config (it used to turn relu into topk silently)
    from crosstime.crosscoder.topk import TopKCrosscoder

    with pytest.raises(CrosscoderError, match="TopKCrosscoder is not the model of the relu variant"):
        TopKCrosscoder(cfg)


@pytest.mark.parametrize("variant", ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_fold_maps_raw_to_raw_and_unfold_restores(variant):
    torch.manual_seed(1)
    s = [0.5, 3.0, 1.7]
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=3, d_model=8, n_features=40,
                                   variant_config=_own(variant, k=4, jumprelu_threshold_init=0.01),
                                   revisions=["a", "b", "c"], scales=s))
    with torch.no_grad():
        model.b_dec.normal_()
        model.b_enc.normal_(std=0.1)
        model.W_dec.mul_(torch.rand(40, 3, 1) * 3)  # unequal decoder norms across checkpoints
    model.eval()
    if variant in ("batchtopk", "matryoshka"):
        model.threshold.fill_(0.05)
    x_raw = torch.randn(16, 3, 8) * 4
    x_norm = x_raw * torch.tensor(s).view(1, 3, 1)
    raw = model.folded()
    assert raw.is_folded and not model.is_folded
    torch.testing.assert_close(raw.encode(x_raw), model.encode(x_norm), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(raw(x_raw), model(x_norm) / torch.tensor(s).view(1, 3, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(raw.decoder_norms(), model.decoder_norms())
    # dict scales by revision work the same
    torch.testing.assert_close(model.folded({"c": 1.7, "a": 0.5, "b": 3.0}).W_dec, raw.W_dec)
    with pytest.raises(CrosscoderError, match="folding twice"):
        raw.fold_scales(s)
    back = raw.unfolded()
    for name, p in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], p, rtol=1e-6, atol=1e-7)
    assert not back.is_folded
    # powers of two fold/unfold bit-exactly
    m2 = build(CrosscoderConfig(n_checkpoints=3, d_model=8, n_features=40))
    before = {k: v.clone() for k, v in m2.state_dict().items()}
    m2.fold_scales([0.5, 4.0, 2.0]).unfold_scales()
    assert all(torch.equal(before[k], v) for k, v in m2.state_dict().items())


@pytest.mark.parametrize("variant", ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_save_load_round_trip_is_exact(tmp_path, variant):
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=2, d_model=4, n_features=10, seed=3,
                                   variant_config=_own(variant, k=3), revisions=["step1", "step2"],
                                   scales=[1.5, 0.25]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    if variant in ("batchtopk", "matryoshka"):
        model.threshold.fill_(0.123)
    model.save(tmp_path / "cc", extra={"training": {"lr": 1}})
    cfg = json.loads((tmp_path / "cc" / "config.json").read_text())
    assert cfg["variant"] == variant and cfg["scales"] == [1.5, 0.25] and cfg["training"] == {"lr": 1}
    back = load(tmp_path / "cc")
    assert type(back) is type(model) and back.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    folded = model.folded()
    folded.save(tmp_path / "f")
    assert load(tmp_path / "f").is_folded  # the fold state survives too


def test_bad_settings_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="known variants: batchtopk, jumprelu, matryoshka, relu, topk"):
        CrosscoderConfig(variant="gated", n_checkpoints=2, d_model=4, n_features=8)
    with pytest.raises(ValueError, match="at least one checkpoint"):
        CrosscoderConfig(n_checkpoints=0, d_model=4, n_features=8)
    for F in (0, -3):
        with pytest.raises(ValueError, match="at least one feature"):
            CrosscoderConfig(n_checkpoints=2, d_model=4, n_features=F)
    model = build(CrosscoderConfig(n_checkpoints=2, d_model=4, n_features=8))
    with pytest.raises(CrosscoderError, match=r"expected activations \[B, M=2, d=4\]"):
        model.encode(torch.zeros(3, 2, 5))
    with pytest.raises(CrosscoderError, match="no scales"):
        model.fold_scales()
    with pytest.raises(CrosscoderError, match="no scales"):  # no silent unfolded copy
        model.folded()
    with pytest.raises(CrosscoderError, match="finite and positive"):
        model.fold_scales([1.0, float("nan")])
    assert known_variants() == ["batchtopk", "jumprelu", "matryoshka", "relu", "topk"]


def test_load_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(CrosscoderError, match="crosstime train"):
        load(tmp_path)


def test_weights_header_must_agree_with_config_json(tmp_path):
    """An edited config.json (relu -> topk) must not silently load a different model."""
    model = build(CrosscoderConfig(n_checkpoints=2, d_model=4, n_features=8, revisions=["a", "b"], scales=[1.0, 2.0]))
    model.save(tmp_path / "cc")
    cfg_file = tmp_path / "cc" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["variant"] = "topk"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(CrosscoderError, match="says variant 'topk' but the weights .* were saved as 'relu'"):
        load(tmp_path / "cc")


class _Store:
    """The three things the compatibility check reads of an ActivationStore."""

    def __init__(self, revisions, scales, d=4):
        self.root, self.revisions, self.d_model = "STORE", list(revisions), d
        self.scales = dict(zip(revisions, scales))


def test_one_check_against_the_store():
    from crosstime.crosscoder import SCALE_RTOL, check_against_store

    store = _Store(["s0", "s1", "s2"], [1.0, 2.0, 4.0])

    def coder(revisions, scales, d=4, **kw):
        return build(CrosscoderConfig(n_checkpoints=len(revisions), d_model=d, n_features=8, revisions=revisions,
                                      scales=scales, **kw))

    check_against_store(coder(["s0", "s1", "s2"], [1.0, 2.0, 4.0]), store)
    check_against_store(coder(["s0", "s2"], [1.0, 4.0 * (1 + SCALE_RTOL / 2)]), store)  # a subset, in order
    with pytest.raises(CrosscoderError, match="width d = 8"):
        check_against_store(coder(["s0"], [1.0], d=8), store)
    with pytest.raises(CrosscoderError, match=r"no \['s9'\]"):
        check_against_store(coder(["s0", "s9"], [1.0, 1.0]), store)
    with pytest.raises(CrosscoderError, match="not in the store's order"):
        check_against_store(coder(["s2", "s0"], [4.0, 1.0]), store)
    with pytest.raises(CrosscoderError, match="trained on other activations"):
        check_against_store(coder(["s0", "s1"], [1.0, 2.0 * (1 + 2 * SCALE_RTOL)]), store)
    with pytest.raises(CrosscoderError, match="records no revisions"):
        check_against_store(build(CrosscoderConfig(n_checkpoints=1, d_model=4, n_features=8, scales=[1.0])), store)
    with pytest.raises(CrosscoderError, match="records no normalisation scales"):
        check_against_store(coder(["s0"], None), store)
    # trained on raw activations: scales of 1 and normalised = false, nothing to compare with the store's
    check_against_store(coder(["s1"], [1.0], normalised=False), store)
    with pytest.raises(ValueError, match="normalised = false"):
        coder(["s1"], [2.0], normalised=False)
