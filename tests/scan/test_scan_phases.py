"""scan/phases.json: the n-gram phase and each task's onset, read from hand-built curves."""

from __future__ import annotations

import pytest

from crosstime.scan.phases import NGRAM_PHASE, phases_line, read_phases

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
                           "previous_token (step512) < induction (step1000)")
    assert line.endswith("not learned by the last checkpoint: never")


def test_tasks_learned_at_the_same_checkpoint_share_a_place():
    rows = _accuracy({"a": [0.5, 0.5, 0.95, 1, 1, 1], "b": [0.5, 0.5, 0.99, 1, 1, 1]})
    line = phases_line(read_phases(rows, []))
    assert line == "phases in order of onset: a (step128) = b (step128)"


@pytest.mark.parametrize("threshold, expected", [(0.9, "step512"), (0.75, "step256"), (0.99, None)])
def test_the_accuracy_threshold_is_a_setting(threshold, expected):
    rows = _accuracy({"t": [0.5, 0.5, 0.6, 0.8, 0.95, 0.98]})
    assert read_phases(rows, [], accuracy=threshold).phases[0].revision == expected

