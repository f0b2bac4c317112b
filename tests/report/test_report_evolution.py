"""The report's Evolution panel (issue #17 part 5): each one-line reading on hand-built data with a
known answer, the two-phase figure written and embedded with its caption, and absent inputs (an older
run: no scan/phases.json, no decoder analyses in evaluation.json) -> no reading, listed as missing."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import matplotlib.image
from test_report_helpers import report_data

from crosstime.artifacts import (
    SCAN_DYNAMICS,
    SCAN_PHASES,
    CheckpointEvaluation,
    Decoder,
    Dimensionality,
    Evaluation,
    Evolution,
    EvolutionCheckpoint,
    Figure,
    Phase,
    Phases,
    Presence,
    ReportCheckpoint,
    ReportData,
    Rotation,
    RunDir,
    TypedEmergence,
    write_model,
)
from crosstime.report.dashboard import render
from crosstime.report.evolution import TWO_PHASE_PNG, evolution_overview
from crosstime.runs import read_scan_folder
from crosstime.report.findings import (
    dimensionality_reading,
    evolution_readings,
    findings,
    phase_order_reading,
    rotation_reading,
    typed_emergence_reading,
)
from crosstime.report.work import evolution_figures

# the crosscoder's checkpoints: a subset of the scanned ones (SCANNED)
REVISIONS = ["step0", "step64", "step128", "step512", "step1000"]
SCANNED = [0, 16, 64, 128, 256, 512, 1000]
TOKENS_PER_STEP = 2048
TYPES = ["current_token", "previous_token", "induction", "subject_number", "attractor", "subject_end", "other",
         "unscored"]


def _checkpoints() -> list[EvolutionCheckpoint]:
    return [EvolutionCheckpoint(revision=r, step=int(r[4:]), tokens=int(r[4:]) * TOKENS_PER_STEP) for r in REVISIONS]


def _phase(name: str, step: int | None) -> Phase:
    return Phase(name=name, revision=f"step{step}" if step is not None else None, step=step,
                 tokens=step * TOKENS_PER_STEP if step is not None else None, value=0.5, reading="by hand")


def _phases(onsets: dict[str, int | None]) -> Phases:
    return Phases(accuracy=0.9, ngram_fraction=0.9, phases=[_phase(n, s) for n, s in onsets.items()],
                  order=[n for n, s in sorted(onsets.items(), key=lambda kv: kv[1] or 0) if s is not None],
                  never=[n for n, s in onsets.items() if s is None])


def _typed(onset_median: dict[str, int | None], counts: dict[str, int]) -> TypedEmergence:
    return TypedEmergence(properties=[], threshold=0.3, types=TYPES, counts=counts,
                          onset_counts={t: [0] * len(REVISIONS) for t in TYPES}, onset_median=onset_median,
                          revisions=REVISIONS)


def _dim(total: list[float]) -> Dimensionality:
    return Dimensionality(total=total, live_features=12, d=8, block=256)


def _evolution(**parts) -> Evolution:
    return Evolution(**{"checkpoints": _checkpoints(), "dynamics": None, "phases": None, "dimensionality": None,
                        "presence": None, "rotation": None, "typed_emergence": None} | parts)


def _data(evolution: Evolution | None = None, **parts) -> ReportData:
    """The report's data with only the Evolution panel (``parts`` of it, or ``evolution`` itself) filled in."""
    checkpoints = [ReportCheckpoint(revision=c.revision, step=c.step, tokens=c.tokens, label=c.revision)
                   for c in _checkpoints()]
    return report_data(checkpoints=checkpoints, evolution=evolution or _evolution(**parts))


BEHAVIOUR = {"n-gram statistics": 64, "simple_agreement": 512, "pp_attractor": 512, "rc_attractor": 1000,
             "previous_token": 256, "induction": 1000}
# median onsets (checkpoint index) in the behavioural order: current_token 64, previous_token 128 (<= 256),
# agreement types 512, induction 1000
IN_ORDER = {"current_token": 1, "previous_token": 2, "induction": 4, "subject_number": 3, "attractor": 3,
            "subject_end": None, "other": 0, "unscored": None}
COUNTS = {"current_token": 30, "previous_token": 40, "induction": 12, "subject_number": 9, "attractor": 5,
          "subject_end": 0, "other": 100, "unscored": 7}


def _rotation(median: list[float], turns: list[int]) -> Rotation:
    return Rotation(intervals=[f"{a}->{b}" for a, b in itertools.pairwise(REVISIONS)], n_features=[10, 12, 12, 11],
                    median_cosine=median, q25_cosine=median, q75_cosine=median, median_angle_deg=median,
                    final_n=[9, 10, 10, 11, 12], final_median=[0.2, 0.3, 0.5, 0.8, 1.0], final_q25=[0.0] * 5,
                    final_q75=[1.0] * 5, revisions=REVISIONS, presence_fraction=0.5, turn_bound=0.5, turns=turns)


def test_rotation_reading_says_no_turn_for_steady_rotation_and_names_a_turn():
    steady = _rotation([0.79, 0.72, 0.67, 0.62], [])
    assert rotation_reading(_data(rotation=steady)) == (
        "Decoder directions rotate without a turn: median cosine between consecutive checkpoints' decoder directions "
        "0.79, 0.72, 0.67, 0.62 over step0->step64, step64->step128, step128->step512, step512->step1000 (live "
        "features present at both, norm ≥ 50% of their peak; 10–12 features), never below the turn bound 0.5; the "
        "median cosine of step0's direction with the last is 0.20.")
    sharp = _rotation([0.98, 0.1, 0.97, 0.99], [1])
    assert rotation_reading(_data(rotation=sharp)).startswith(
        "Decoder directions turn at step64->step128 (0.10), below the turn bound 0.5: median cosine")
    assert rotation_reading(_data()) is None


def test_dimensionality_reading_with_and_without_its_baselines():
    dim = _dim([0.40, 0.21, 0.30, 0.45, 0.55])
    assert dimensionality_reading(_data(dimensionality=dim)) == (
        "Feature dimensionality (Σ D_i / d, 12 live features, d = 8) falls from 0.40 at step0 to 0.21 at step64, "
        "then rises to 0.55 at step1000.")
    falling = _dim([0.5, 0.4, 0.3, 0.2, 0.1])
    assert "without rising again" in dimensionality_reading(_data(dimensionality=falling))
    rising = _dim([0.1, 0.2, 0.3, 0.4, 0.5])
    assert "rises from 0.10 at step0 to 0.50 at step1000, without falling first" in dimensionality_reading(
        _data(dimensionality=rising))
    # baselines: PCs for 90% that move with it (Pearson r = 1 for a linear relation), and the present features
    tracked = dim.model_copy(update={"pcs_90": [40, 21, 30, 45, 55], "participation_ratio": [1.0] * 5,
                                     "spectrum_rows": 4096})
    presence = Presence(present_fraction=0.5, absent_fraction=0.1, present=[12, 5, 6, 8, 9], weak=[0] * 5,
                        absent=[0] * 5, rule="by hand")
    line = dimensionality_reading(_data(dimensionality=tracked, presence=presence))
    assert line.endswith("; the activations need 40, 21, 30, 45, 55 principal components for 90% of their variance "
                         "(4,096 held-out rows; Pearson r with the dimensionality 1.00): it moves with the "
                         "activations' rank, so the curve alone does not tell superposition from rank collapse; "
                         "present features (decoder ≥ 50% of their peak): 12, 5, 6, 8, 9.")
    flat = tracked.model_copy(update={"pcs_90": [5, 9, 5, 9, 5]})
    assert "it does not simply follow the activations' rank" in dimensionality_reading(_data(dimensionality=flat))


def test_typed_emergence_reading_in_onset_order():
    line = typed_emergence_reading(_data(typed_emergence=_typed(IN_ORDER, COUNTS)))
    # other/unscored are not kinds of feature; subject_end has no onset; ties keep the type order
    assert line == ("Features emerge by type: current_token features at step64 (median of 30), previous_token at "
                    "step128 (median of 40), subject_number at step512 (median of 9), attractor at step512 (median "
                    "of 5), induction at step1000 (median of 12).")


def test_phase_order_matches():
    data = _data(typed_emergence=_typed(IN_ORDER, COUNTS), phases=_phases(BEHAVIOUR))
    line = phase_order_reading(data)
    assert line.startswith("The feature types' emergence order matches")
    # the agreement types follow the first attractor task learned (pp_attractor at step 512)
    mapping = re.sub(r" \(step \d+\)", "", line.split("learned at: ")[1])
    assert mapping == ("current_token → n-gram statistics, previous_token → previous_token, subject_number → "
                       "pp_attractor, attractor → pp_attractor, induction → induction.")
    assert "previous_token (step 128) → previous_token (step 256)" in line  # REVISIONS[2] and BEHAVIOUR, by hand


def test_phase_order_differs_names_the_pairs():
    swapped = {**IN_ORDER, "previous_token": 4, "induction": 2}  # induction features before previous-token ones
    line = phase_order_reading(_data(typed_emergence=_typed(swapped, COUNTS), phases=_phases(BEHAVIOUR)))
    assert line.startswith("The feature types' emergence order differs: ")
    out_of_order = re.findall(r"(\w+) features emerge at step (\d+), after (\w+) at step (\d+)", line)
    # previous_token (task at 256) emerges after induction (1000) and after the agreement types (512)
    assert sorted(out_of_order) == sorted([("previous_token", "1000", "induction", "128"),
                                           ("previous_token", "1000", "subject_number", "512"),
                                           ("previous_token", "1000", "attractor", "512"),
                                           ("subject_number", "512", "induction", "128"),
                                           ("attractor", "512", "induction", "128")])


def test_absent_inputs_give_no_reading():
    data = _data()
    assert evolution_readings(data) == {"phases": None, "dimensionality": None, "rotation": None,
                                        "typed_emergence": None}
    # typed emergence without phases: a reading of the types, none of the order
    typed = _data(typed_emergence=_typed(IN_ORDER, COUNTS))
    assert typed_emergence_reading(typed) is not None and phase_order_reading(typed) is None
    assert findings(report_data()) == []


def _write_run(root: Path, phases: bool) -> RunDir:
    """scan/dynamics.csv over every scanned checkpoint (and scan/phases.json when ``phases``)."""
    run = RunDir(root)
    kl = [3.0, 1.5, 0.4, 0.35, 0.5, 0.7, 0.9]
    rows = [{"revision": f"step{s}", "step": s, "tokens": s * TOKENS_PER_STEP, "loss": 4.0 - 0.3 * i,
             "kl_unigram": 2.0 - 0.2 * i, "kl_bigram": kl[i], "unigram_loss": 3.5, "bigram_loss": 2.4, "n_tokens": 100}
            for i, s in enumerate(SCANNED)]
    SCAN_DYNAMICS.write(run.scan, rows, [])
    if phases:
        write_model(_phases(BEHAVIOUR), run.scan / SCAN_PHASES)
    return run


def _evaluation(**decoder) -> Evaluation:
    """An evaluation with only what the Evolution panel reads (its checkpoints and decoder analyses)."""
    ck = [CheckpointEvaluation.model_construct(revision=c.revision, step=c.step, tokens_seen=c.tokens)
          for c in _checkpoints()]
    return Evaluation.model_construct(checkpoints=ck, decoder=Decoder.model_construct(**decoder))


def test_two_phase_figure_written_and_embedded_with_its_reading(tmp_path):
    run = _write_run(tmp_path / "run", phases=True)
    evaluation = _evaluation(dimensionality=_dim([0.40, 0.21, 0.30, 0.45, 0.55]),
                             typed_emergence=_typed(IN_ORDER, COUNTS))
    missing: list[str] = []
    evolution = evolution_overview(read_scan_folder(run.scan), evaluation, missing)
    assert [r.revision for r in evolution.dynamics] == [f"step{s}" for s in SCANNED]
    assert missing == [("evaluation.json: decoder.presence (re-run `crosstime evaluate`): no present-feature counts "
                        "beside dimensionality"),
                       "evaluation.json: decoder.rotation (re-run `crosstime evaluate`): no rotation reading"]
    data = _data(evolution)
    data.missing = missing
    data.overview.figures = [Figure(name="evaluation/dimensionality.png", group="evaluation", src="x"),
                             Figure(name="evaluation/emergence.png", group="evaluation", src="y")]
    evolution_figures(data, run)

    image = matplotlib.image.imread(run.report / TWO_PHASE_PNG)  # a PNG that decodes
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
    two_phase, dim, other = data.overview.figures
    assert two_phase.name == f"report/{TWO_PHASE_PNG}" and two_phase.src.startswith("data:image/png;base64,")
    assert two_phase.evolution and two_phase.caption.startswith("The feature types' emergence order matches")
    assert dim.evolution and dim.caption == dimensionality_reading(data)
    assert other.model_dump() == {"name": "evaluation/emergence.png", "group": "evaluation", "src": "y"}  # no keys
    html = render(data, tmp_path / "index.html").read_text()
    embedded = json.loads(re.search(r'<script type="application/json" id="crosstime-data">(.*?)</script>', html, re.DOTALL).group(1))
    assert embedded["overview"]["figures"][0]["caption"] == two_phase.caption


def test_older_run_without_phases_or_decoder_analyses(tmp_path):
    """A run from before these analyses (no scan/phases.json, evaluation.json without the decoder keys): each is
    listed as missing, no reading, and the two-phase figure still drawn from the dynamics, without phase marks."""
    run = _write_run(tmp_path / "run", phases=False)
    evaluation = _evaluation()  # an older evaluation's decoder: none of the three keys
    missing: list[str] = []
    evolution = evolution_overview(read_scan_folder(run.scan), evaluation, missing)
    assert evolution.phases is None and evolution.dimensionality is None
    assert [m.split(" ")[0] for m in missing] == ["scan/phases.json"] + ["evaluation.json:"] * 4
    assert {m.split(" ")[1] for m in missing[1:]} == {"decoder.dimensionality", "decoder.presence",
                                                      "decoder.rotation", "decoder.typed_emergence"}
    data = _data(evolution)
    assert set(evolution_readings(data).values()) == {None}
    evolution_figures(data, run)
    assert matplotlib.image.imread(run.report / TWO_PHASE_PNG).ndim == 3
    assert "caption" not in data.overview.figures[0].model_dump()
