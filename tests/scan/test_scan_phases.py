"""scan/phases.json: the n-gram phase and each task's onset, read from hand-built curves."""

from __future__ import annotations

import pytest

import numpy as np

from crosstime.scan.phases import NGRAM_PHASE, bootstrap_onsets, phases_line, read_phases, threshold_interval

STEPS = [0, 64, 128, 256, 512, 1000]


def _dynamics(kl_bigram: list[float]) -> list[dict]:
    return [{"revision": f"step{s}", "step": s, "tokens": s * 100, "kl_bigram": kl} for s, kl in zip(STEPS, kl_bigram)]


def _accuracy(curves: dict[str, list[float]]) -> list[dict]:
    return [{"revision": f"step{s}", "step": s, "tokens": s * 100, "task": task, "accuracy": curve[i]}
            for i, s in enumerate(STEPS) for task, curve in curves.items()]


def test_ngram_phase_is_where_the_bigram_kl_has_come_most_of_the_way_down():
    # from 3.0 down to a minimum of 0.5 (then up again: the model beats the bigram table); 90% of the way
    # down is 3.0 - 0.9 * 2.5 = 0.75: step256 (0.7) is the first at or below it, step128 (0.9) is not
    phases = read_phases([], _dynamics([3.0, 2.0, 0.9, 0.7, 0.5, 0.8]))
    (ngram,) = phases.phases
    assert (ngram.name, ngram.revision, ngram.step, ngram.value) == (NGRAM_PHASE, "step256", 256, 0.7)
    assert read_phases([], _dynamics([3.0, 2.0, 0.9, 0.7, 0.5, 0.8]), ngram_fraction=0.5).phases[0].revision == "step128"


def test_a_task_is_learned_where_its_accuracy_stays_high_and_the_order_follows_the_steps():
    rows = _accuracy({
        "induction": [0.5, 0.5, 0.5, 0.6, 0.8, 0.97],
        "previous_token": [0.5, 0.5, 0.92, 0.5, 0.95, 1.0],  # a blip at step128 does not count
        "agreement": [0.5, 0.5, 0.6, 0.91, 1.0, 1.0],
        "never": [0.5, 0.5, 0.5, 0.5, 0.6, 0.7],
    })
    phases = read_phases(rows, _dynamics([3.0, 1.0, 0.5, 0.6, 0.7, 0.8]))
    onsets = {p.name: p.revision for p in phases.phases}
    assert onsets == {NGRAM_PHASE: "step128", "induction": "step1000", "previous_token": "step512",
                      "agreement": "step256", "never": None}
    assert phases.order == [NGRAM_PHASE, "agreement", "previous_token", "induction"]
    assert phases.never == ["never"]
    line = phases_line(phases)
    assert line.startswith("phases in order of onset: n-gram statistics (step128) < agreement (step256) < "
                           "previous_token (step512) < induction (step1000, censored); not learned by the last "
                           "checkpoint: never; this order holds for accuracy thresholds in (0.80, 0.91]")


def test_tasks_learned_at_the_same_checkpoint_share_a_place():
    rows = _accuracy({"a": [0.5, 0.5, 0.95, 1, 1, 1], "b": [0.5, 0.5, 0.99, 1, 1, 1]})
    line = phases_line(read_phases(rows, []))
    assert line.startswith("phases in order of onset: a (step128) = b (step128); this order holds for accuracy "
                           "thresholds in (0.00, 0.95]")


@pytest.mark.parametrize("threshold, expected", [(0.9, "step512"), (0.75, "step256"), (0.99, None)])
def test_the_accuracy_threshold_is_a_setting(threshold, expected):
    rows = _accuracy({"t": [0.5, 0.5, 0.6, 0.8, 0.95, 0.98]})
    assert read_phases(rows, [], accuracy=threshold).phases[0].revision == expected



def test_the_threshold_interval_is_where_the_order_stays_the_same():
    # by hand: at 0.9, b (0.92 at step1) leads a (0.95 at step2). Below 0.85 a is learned at step1 too (a tie);
    # above 0.92 b is learned at step2 too (a tie). So the order b < a holds exactly for t in (0.85, 0.92].
    curves = {"a": [0.5, 0.85, 0.95], "b": [0.5, 0.92, 0.97]}
    assert threshold_interval(curves, [0, 1, 2], {}, 0.9) == [0.85, 0.92]
    assert threshold_interval(curves, [0, 1, 2], {}, 0.8) == [0.0, 0.85]  # a tie (at step0 or step1) up to 0.85
    # a phase fixed by other data (the n-gram one) takes part in the order but does not move with t
    assert threshold_interval(curves, [0, 1, 2], {"ngram": 1}, 0.9) == [0.85, 0.92]


def test_only_an_onset_at_the_last_checkpoint_is_censored():
    rows = _accuracy({"late": [0.5, 0.5, 0.5, 0.5, 0.5, 0.95], "near_miss": [0.5, 0.5, 0.5, 0.5, 0.95, 0.96]})
    phases = {p.name: p for p in read_phases(rows, []).phases}
    assert phases["late"].censored and not phases["near_miss"].censored


def _pairs(shares: list[float], n: int = 100) -> np.ndarray:
    """[M, n] pair results with exactly ``shares[m] * n`` right pairs at checkpoint m (the same pairs stay right)."""
    return np.array([[i < round(s * n) for i in range(n)] for s in shares])


def test_the_bootstrap_tells_a_clear_order_from_a_near_miss():
    steps, clear = [0, 1, 2], {"early": [0.5, 1.0, 1.0], "late": [0.5, 0.5, 1.0]}
    rows = [{"revision": f"step{s}", "step": s, "tokens": s, "task": t, "accuracy": c[i]}
            for i, s in enumerate(steps) for t, c in clear.items()]
    phases = read_phases(rows, [], correct={t: _pairs(c) for t, c in clear.items()})
    assert phases.order == ["early", "late"] and phases.order_support == 1.0 and phases.bootstrap == 1000
    assert {p.name: p.onset_interval for p in phases.phases} == {"early": ["step1", "step1"], "late": ["step2", "step2"]}
    # the near miss: "early" clears 0.9 at step1 by one pair in a hundred, so about half the resamples learn it later
    near = {"early": [0.5, 0.91, 1.0], "late": [0.5, 0.5, 1.0]}
    rows = [r | {"accuracy": near[r["task"]][steps.index(r["step"])]} for r in rows]
    shaky = read_phases(rows, [], correct={t: _pairs(c) for t, c in near.items()})
    assert shaky.order == ["early", "late"] and 0.2 < shaky.order_support < 0.8
    assert {p.name: p.onset_interval for p in shaky.phases}["early"] == ["step1", "step2"]
    assert "in " in phases_line(shaky) and "bootstrap resamples" in phases_line(shaky)


def test_bootstrap_onsets_by_hand():
    # every pair right from checkpoint 1: every resample is learned at index 1; never right: index M
    rng = np.random.default_rng(0)
    assert set(bootstrap_onsets(_pairs([0.0, 1.0, 1.0]), 0.9, 50, rng)) == {1}
    assert set(bootstrap_onsets(_pairs([0.0, 0.0, 0.0]), 0.9, 50, rng)) == {3}
