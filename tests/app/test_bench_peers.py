"""benchmarks/bench_peers.py at a tiny size: every contender's own step trains, and the table reports each.

Skipped unless the `peers` extra is installed (sae-lens, dictionary-learning, eai-sparsify,
llamascopium: see pyproject.toml)."""

import math

import pytest
from script_loader import load_script

for _name in ("sae_lens", "dictionary_learning", "sparsify", "llamascopium"):
    pytest.importorskip(_name, reason="the peers extra is not installed (pip install -e '.[peers]')")

TINY = {"M": 2, "d": 16, "F": 256, "B": 64, "K": 32}
STEPS = 20


def _bench():
    return load_script("benchmarks/bench_peers.py", "bench_peers")


@pytest.mark.slow
def test_every_contender_trains_on_the_same_batches(tmp_path, monkeypatch):
    bench = _bench()
    monkeypatch.setitem(bench.SIZES, "tiny", TINY)
    data, held = bench.make_data(TINY, STEPS * TINY["B"])
    batches = list(data.split(TINY["B"]))
    rows = []
    for variant, peers in bench.SHARED.items():
        for tool in ["crosstime", *peers]:
            c = bench.make(tool, variant, TINY, STEPS, data, tmp_path)
            before = bench.ev(held, c.reconstruct(held)[0])
            for x in batches:
                c.step(x)
            after, l0 = c.reconstruct(held)
            after = bench.ev(held, after)
            # its own step trained it: the held-out reconstruction improved over the initialisation's
            assert after > before, (variant, tool, before, after)
            # (JumpReLU may end with every feature below its threshold at this size: L0 = 0 is a result)
            assert 0 <= l0 <= (bench.K_ACTIVE if variant == "topk" else TINY["F"]), (variant, tool, l0)
        rows += bench.run_variant(variant, "tiny", peers, 2, 1, False, data, held, tmp_path, False)
    assert {(r["variant"], r["tool"]) for r in rows} == {(v, t) for v, p in bench.SHARED.items() for t in
                                                          ["crosstime", *p]}
    for r in rows:
        assert r["trained"] and min(r["ms"], r["ms_init"], r["ms_run"]) > 0 and math.isfinite(r["ev"]) and r["l0"] >= 0
        crosstime = next(q for q in rows if q["variant"] == r["variant"] and q["tool"] == "crosstime")
        assert r["ratio"] == pytest.approx(crosstime["ms"] / r["ms"])
        assert r["ratio_init"] == pytest.approx(crosstime["ms_init"] / r["ms_init"])
        assert r["ratio_run"] == pytest.approx(crosstime["ms_run"] / r["ms_run"])
    text = bench.table(rows, type("Args", (), {"ev_steps": 2, "reps": 1})(), [0.0, 0.0])
    assert text.count("\n| M=2 d=16 F=256 B=64 |") == len(rows)
    assert "dictionary-learning 0.1.0" in text and "sae-lens" in text and "eai-sparsify" in text


@pytest.mark.slow
def test_peers_untrained_are_timed_at_initialisation_and_crosstime_trained(tmp_path, monkeypatch):
    """--peers-untrained: crosstime alone trains (its EV and run mean exist); a peer's row holds its
    at-initialisation time in place of a trained one, and no EV or run mean."""
    bench = _bench()
    monkeypatch.setitem(bench.SIZES, "tiny", TINY)
    data, held = bench.make_data(TINY, STEPS * TINY["B"])
    rows = bench.run_variant("relu", "tiny", ["sae-lens"], 3, 1, False, data, held, tmp_path, True)
    ct, peer = rows
    assert ct["trained"] and ct["ms_run"] > 0 and math.isfinite(ct["ev"])
    assert not peer["trained"] and peer["ms"] == peer["ms_init"] and peer["ms_run"] is None and peer["ev"] is None
    assert peer["ratio"] == pytest.approx(ct["ms"] / peer["ms_init"])
    text = bench.table(rows, type("Args", (), {"ev_steps": 3, "reps": 1})(), [0.0, 0.0])
    assert f"(at init) {peer['ms_init']:.1f}" in text
