"""Sites: reading and writing block L's output, for the four adapter families."""

import pytest
import torch

from conftest import tiny_model
from crosstime.sites import (
    LayerOutOfRange, UnsupportedArchitecture, adapter_for, blocks, final_norm, n_layers, patch_site, read_site,
    unembedding,
)

ARCHS = ["gpt_neox", "llama", "bloom", "gpt2"]


def _inputs(seed=0, batch=2, length=7, vocab=40):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, vocab, (batch, length), generator=g)


@pytest.mark.parametrize("arch", ARCHS)
def test_read_site_equals_hidden_states(arch):
    model = tiny_model(arch, layers=3)
    ids = _inputs()
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
        for layer in range(n_layers(model) - 1):  # HF applies the final norm to hidden_states[-1]
            torch.testing.assert_close(read_site(model, ids, layer), hidden[layer + 1], rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_stopped_forward_equals_full_forward_and_skips_later_blocks(arch):
    model = tiny_model(arch, layers=3)
    ids = _inputs(1)
    for layer in range(3):
        seen_full, calls = {}, []

        def record(_m, _a, out, layer=layer):
            seen_full["h"] = out[0] if isinstance(out, tuple) else out

        h1 = blocks(model)[layer].register_forward_hook(record)
        handles = [b.register_forward_hook(lambda *a, i=i: calls.append(i)) for i, b in enumerate(blocks(model))]
        with torch.no_grad():
            model(ids)
            h1.remove()
            calls.clear()
            stopped = read_site(model, ids, layer)
        for h in handles:
            h.remove()
        torch.testing.assert_close(stopped, seen_full["h"], rtol=0, atol=0)
        assert calls == list(range(layer + 1)), "blocks after the site must not run"


@pytest.mark.parametrize("arch", ARCHS)
def test_patching_last_block_matches_manual_unembedding(arch):
    model = tiny_model(arch, layers=3)
    ids = _inputs(2)
    last = n_layers(model) - 1
    shift = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        h = read_site(model, ids, last)
        expected = unembedding(model)(final_norm(model)(h + shift))
        with patch_site(model, last, lambda x: x + shift):
            patched = model(ids).logits
    torch.testing.assert_close(patched, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_patching_a_middle_site_transplants_another_input(arch):
    """Everything after block L reads only the residual stream at L: transplanting input A's
    site into input B's forward must give exactly A's logits."""
    model = tiny_model(arch, layers=3)
    a, b = _inputs(4), _inputs(5)
    with torch.no_grad():
        site_a = read_site(model, a, 1)
        logits_a = model(a).logits
        with patch_site(model, 1, lambda x: site_a):
            transplanted = model(b).logits
        unpatched_b = model(b).logits
    torch.testing.assert_close(transplanted, logits_a, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unpatched_b, logits_a)


def test_patch_is_differentiable_and_removed_after_the_block():
    model = tiny_model("gpt_neox", layers=3)
    ids = _inputs(6)
    scale = torch.ones((), requires_grad=True)
    with patch_site(model, 1, lambda x: x * scale):
        model(ids).logits.sum().backward()
    assert scale.grad is not None and scale.grad.abs() > 0
    assert all(len(b._forward_hooks) == 0 for b in blocks(model))


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_out_of_range_names_the_depth(arch):
    model = tiny_model(arch, layers=3)
    with pytest.raises(LayerOutOfRange, match="3 decoder blocks.*0..2"):
        read_site(model, _inputs(), 3)
    with pytest.raises(LayerOutOfRange):
        with patch_site(model, -1, lambda x: x):
            pass


def test_unknown_architecture_lists_supported():
    class Fake(torch.nn.Module):
        class config:
            model_type = "mamba"

    with pytest.raises(UnsupportedArchitecture, match="gpt_neox"):
        adapter_for(Fake())
