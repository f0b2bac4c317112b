"""Typed emergence (crosstime.evaluate.types): row labels, η² scores, types and onsets, by hand and
against a direct computation; the evaluate stage writes them (features.csv, evaluation.json, figure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_evaluate import run, save_crosscoder, sharp_series  # noqa: F401  (module fixtures reused)

from crosstime import series as series_module
from crosstime.artifacts import EVALUATION_FEATURES
from crosstime.checkpoints import Checkpoint, write_series_manifest
from crosstime.evaluate import work as evaluate_stage
from crosstime.evaluate.work import EvaluateConfig, make_labeler
from crosstime.series import open_series
from crosstime.stages.evaluate import evaluate
from crosstime.evaluate.types import (
    ALL_PROPERTIES,
    GENERIC_FLAGS,
    GENERIC_PROPERTIES,
    OTHER,
    UNSCORED,
    Labeler,
    TypeReading,
    TypeRules,
    TypeStats,
    assign_types,
    induction_flags,
    typed_emergence,
)
from crosstime.store import ActivationStore, HarvestConfig
from crosstime.stages.harvest import harvest
from crosstime.toy.labels import LABELS as TOY_LABELS


LABEL_PROPS = (*GENERIC_PROPERTIES, "subject_number")
LABEL_FLAGS = ("induction", "subject_number")


def eta_squared(f: np.ndarray, groups: np.ndarray) -> float:
    """The correlation ratio the textbook way: between-group over total sum of squares about the mean."""
    keep = groups >= 0
    f, groups = f[keep].astype(np.float64), groups[keep]
    mean = f.mean()
    between = sum(len(f[groups == g]) * (f[groups == g].mean() - mean) ** 2 for g in np.unique(groups))
    return between / ((f - mean) ** 2).sum()


def specificity(f: np.ndarray, groups: np.ndarray) -> float:
    """Mass share in the best group g ≥ 1 above its share of rows, over (1 − that share), clipped to [0, 1]."""
    keep = groups >= 0
    f, groups = f[keep].astype(np.float64), groups[keep]
    best = 0.0
    for g in np.unique(groups[groups >= 1]):
        base = (groups == g).mean()
        best = max(best, min(max((f[groups == g].sum() / f.sum() - base) / (1 - base), 0.0), 1.0))
    return best


def generic(first: int = 1, boundary: int | None = None) -> Labeler:
    return Labeler(first, 3, boundary)


def test_a_previous_token_feature_scores_one_on_previous_token_only():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=(8, 50))
    labels = generic().labels(tokens)
    prev = tokens[:, :-1].reshape(-1)
    f = torch.zeros(len(prev), 3)
    f[:, 0] = torch.from_numpy(prev == 7).float()  # fires exactly when the previous token is 7
    f[:, 1] = torch.from_numpy(tokens[:, 1:].reshape(-1) == 7).float() * 2.5  # the current token is 7
    stats = TypeStats(GENERIC_PROPERTIES, 3, GENERIC_FLAGS)
    stats.update(f, labels)
    scores = stats.scores().numpy()
    assert scores[0, 1] == pytest.approx(1.0) and scores[1, 0] == pytest.approx(1.0)
    assert scores[0, 0] == pytest.approx(eta_squared(f[:, 0].numpy(), labels["current_token"]))
    assert scores[0, 0] < 0.1  # the current token hardly explains it (i.i.d. tokens)
    assert np.isnan(scores[2]).all()  # never fired
    reading = assign_types(stats, TypeRules(threshold=0.5))
    assert reading.types == ["previous_token", "current_token", UNSCORED]


def test_rows_from_position_zero_have_no_previous_token():
    tokens = np.array([[4, 5, 6], [7, 8, 9]])
    labels = generic(first=0).labels(tokens)
    assert labels["previous_token"].tolist() == [-1, 4, 5, -1, 7, 8]
    assert labels["current_token"].tolist() == [4, 5, 6, 7, 8, 9]
    assert generic(first=2).labels(tokens)["previous_token"].tolist() == [5, 8]


def test_a_binary_flag_by_hand():
    """f = [2, 0, 1, 0] on flag [1, 0, 1, 0]: S_1 = 3 (N 2), S_0 = 0 (N 2), S = 3, Σf² = 5;
    η² = (9/2 − 9/4) / (5 − 9/4) = 9/11."""
    stats = TypeStats(("induction",), 1, ("induction",))
    stats.update(torch.tensor([[2.0], [0.0], [1.0], [0.0]]), {"induction": np.array([1, 0, 1, 0])})
    assert stats.sums["induction"].eta_squared()[0].item() == pytest.approx(9 / 11, rel=1e-12)
    # a flag is scored by specificity: all of the mass is on flagged rows -> 1
    assert stats.scores()[0, 0].item() == 1.0


def test_specificity_by_hand():
    """(S_g/S − N_g/N) / (1 − N_g/N), best group g ≥ 1; group 0 ("not this") never counts."""
    stats = TypeStats(LABEL_PROPS, 3, LABEL_FLAGS)
    f = torch.tensor([[2.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    stats.update(f, {"current_token": np.arange(4), "previous_token": np.full(4, -1),
                     "induction": np.array([1, 0, 1, 0]), "subject_number": np.array([1, 1, 2, 0])})
    scores = stats.scores().numpy()[:, 2:]  # induction, subject_number
    # feature 0, flag: S_1 = 3 of S = 4, base 1/2 -> (3/4 − 1/2) / (1/2) = 1/2
    assert scores[0, 0] == pytest.approx(0.5)
    # feature 0, number: g1 mass 3/4 at base 1/2 -> 1/2; g2 mass 1/4 at base 1/4 -> 0; best 1/2
    assert scores[0, 1] == pytest.approx(0.5)
    # feature 1: flag mass 1/4 at base 1/2 -> below chance -> 0; number g1 2/4 at base 1/2 -> 0
    assert scores[1, 0] == 0.0 and scores[1, 1] == 0.0
    # feature 2 fires once, on a flagged row in group 1 -> 1 and (1 − 1/2)/(1/2) = 1
    assert scores[2, 0] == 1.0 and scores[2, 1] == 1.0
    with pytest.raises(ValueError, match="token properties"):
        TypeStats(("induction", "subject_number"), 3, ("induction", "subject_number"))


def test_induction_flags_a_repeated_span_and_not_document_boundaries():
    bos = 2
    #                   0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
    tokens = np.array([[bos, 5, 6, 7, 8, 5, 6, 7, 9, 4, bos, 5, 6, 0, bos, 5]])
    flags = induction_flags(tokens, 3, boundary=bos)[0]
    # 5 6 7 again at 5..7 (flag at 7); "5 6" after the second <bos> is only 2 long; "bos 5 6"
    # repeats at 10..12 and "bos 5" at 14..15 but hold the boundary
    assert np.flatnonzero(flags).tolist() == [7]
    assert np.flatnonzero(induction_flags(tokens, 3, boundary=None)[0]).tolist() == [7, 12]
    assert np.flatnonzero(induction_flags(tokens, 2, boundary=bos)[0]).tolist() == [6, 7, 12]
    # contexts are separate: the second holds "5 6 7" once, after the first context's two
    two = np.stack([tokens[0], np.array([bos, 9, 5, 6, 7, 1, 0, 3, 11, 12, 13, 14, 15, 16, 17, 18])])
    assert induction_flags(two, 3, bos)[1].sum() == 0


def test_eta_squared_streams_and_matches_a_direct_computation():
    """Random sparse f (about 10% nonzero) and labels with unlabelled rows (-1): every property's η²
    equals the textbook formula; three batches give the same sums as one."""
    rng = np.random.default_rng(1)
    n, F = 600, 12
    f = rng.exponential(1.0, size=(n, F)) * (rng.random((n, F)) < 0.1)
    f[:, 3] += 0.5 * (np.arange(n) % 5 == 0)  # one feature with structure
    labels = {"current_token": rng.integers(0, 40, n), "previous_token": rng.integers(-1, 3, n),
              "induction": rng.integers(0, 2, n)}
    one = TypeStats(GENERIC_PROPERTIES, F, GENERIC_FLAGS)
    streamed = TypeStats(GENERIC_PROPERTIES, F, GENERIC_FLAGS)
    one.update(torch.from_numpy(f), labels)
    for lo, hi in ((0, 150), (150, 151), (151, n)):
        streamed.update(torch.from_numpy(f[lo:hi]), {k: v[lo:hi] for k, v in labels.items()})
    assert torch.allclose(one.scores(), streamed.scores(), rtol=1e-12, atol=1e-14)
    for j, p in enumerate(GENERIC_PROPERTIES):
        for i in range(F):
            assert one.sums[p].eta_squared()[i].item() == pytest.approx(eta_squared(f[:, i], labels[p]), rel=1e-9)
            if p in GENERIC_FLAGS:  # scored by specificity, here against a direct computation
                keep = labels[p] >= 0
                share = f[keep & (labels[p] == 1), i].sum() / f[keep, i].sum()
                base = (labels[p][keep] == 1).mean()
                expected = min(max((share - base) / (1 - base), 0.0), 1.0)
                assert one.scores()[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
            else:
                assert one.scores()[i, j].item() == one.sums[p].eta_squared()[i].item()
    nonzero_pairs = {(g, i) for r, i in zip(*np.nonzero(f)) for g in [labels["current_token"][r]]}
    assert len(one.sums["current_token"].keys) == len(nonzero_pairs)  # sparse: fired (group, feature) pairs only


def test_the_first_passing_property_wins_and_rare_features_are_unscored():
    """Simplest explanation first: a feature both the current token and the flag explain is a token
    feature; one that passes only the flag is an induction feature; one firing on too few rows is unscored."""
    stats = TypeStats(GENERIC_PROPERTIES, 3, GENERIC_FLAGS)
    tokens = np.array([5, 6, 5, 6, 7, 7, 8, 8])
    flag = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    f = torch.stack([torch.from_numpy(tokens == 5).double(),          # token 5 only: current_token η² = 1
                     torch.from_numpy(flag == 1).double(),            # the flag, across tokens: η² 1/2
                     torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])], 1)    # one row
    stats.update(f, {"current_token": tokens, "previous_token": np.full(8, -1), "induction": flag})
    scores = stats.scores().numpy()
    assert scores[0, 0] == pytest.approx(1.0) and scores[0, 2] == 1.0  # feature 0: token and flag both fit…
    assert scores[1, 0] == pytest.approx(0.5) and scores[1, 2] == 1.0
    reading = assign_types(stats, TypeRules(threshold=0.6, min_rows=2, margin=0.1))
    assert reading.types == ["current_token", "induction", UNSCORED]  # …but the token explains it first
    assert assign_types(stats, TypeRules(threshold=0.6, min_rows=1)).types[2] == "induction"
    # feature 1: the flag (1.0) beats the token (0.5) by more than the margin; with a margin of 0.5 the
    # token, listed first, is within it and wins
    assert assign_types(stats, TypeRules(threshold=0.5, min_rows=2, margin=0.5)).types[1] == "current_token"


def test_ties_go_to_the_property_listed_first_and_weak_scores_are_other():
    tokens = np.array([[1, 3, 4, 3, 4, 3, 4, 5, 6]])  # after 3 always 4: current and previous token tie
    labels = generic().labels(tokens)
    cur = tokens[0, 1:]
    f = torch.stack([torch.from_numpy(cur == 4).float(), torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0.9])], 1)
    stats = TypeStats(GENERIC_PROPERTIES, 2, GENERIC_FLAGS)
    stats.update(f, labels)
    s = stats.scores().numpy()
    assert s[0, 0] == s[0, 1] == pytest.approx(1.0)
    reading = assign_types(stats, TypeRules(threshold=1.01))  # nothing reaches it
    assert reading.types == [OTHER, OTHER]
    assert assign_types(stats, TypeRules(threshold=0.5)).types[0] == "current_token"


def test_typed_emergence_counts_on_a_hand_built_table():
    props = ("current_token", "previous_token")
    reading = TypeReading(props, 0.5, ["current_token", "previous_token", "current_token", OTHER, UNSCORED,
                                       "current_token"], np.zeros(6), np.zeros((6, 2)), np.full(6, np.nan),
                          np.full(6, -1), np.full(6, -1))
    got = typed_emergence(reading, [0, 2, 1, 2, 0, -1], ["a", "b", "c"])
    assert got.types == ["current_token", "previous_token", OTHER, UNSCORED]
    assert got.counts == {"current_token": 3, "previous_token": 1, OTHER: 1, UNSCORED: 1}
    assert got.onset_counts == {"current_token": [1, 1, 0], "previous_token": [0, 0, 1], OTHER: [0, 0, 1],
                                   UNSCORED: [1, 0, 0]}
    assert got.onset_median == {"current_token": 0, "previous_token": 2, OTHER: 2, UNSCORED: 0}
    assert got.revisions == ["a", "b", "c"] and got.threshold == 0.5 and got.properties == list(props)


def _heldout_f(run_dir, weights) -> tuple[np.ndarray, np.ndarray]:
    """f [rows, F] of every held-out row (the reconstruction rows by default) and their contexts' tokens."""
    store = ActivationStore(run_dir / "activations")
    lo, hi = store.context_range("heldout")
    idx = np.arange(lo * store.rows_per_context, hi * store.rows_per_context)
    x = torch.stack([store.read_rows(r, idx) * torch.tensor(store.scales[r], dtype=torch.float32)
                     for r in store.revisions], 1)
    f = torch.relu(torch.einsum("nmd,mdf->nf", x, weights["W_enc"]) + weights["b_enc"])
    return f.numpy(), np.asarray(store.tokens[lo:hi])


def _random_weights(M: int, d: int, F: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": 0.3 * torch.randn(M, d, F, generator=g), "W_dec": torch.randn(F, M, d, generator=g),
            "b_enc": -0.5 * torch.rand(F, generator=g), "b_dec": torch.zeros(M, d)}


def test_evaluate_writes_type_columns_and_typed_emergence(run):  # noqa: F811
    """A non-toy store: the generic scores in features.csv equal η² computed from f directly, the toy
    columns are empty, evaluation.json holds the typed emergence and the figure is drawn."""
    store = ActivationStore(run / "activations")
    weights = _random_weights(3, 32, 24, seed=5)
    weights["b_enc"][:2] = -1e3  # never fire: unscored
    save_crosscoder(run, weights, store.revisions)
    result = evaluate(EvaluateConfig(run=run, progress=False, contexts=0, dead_tokens=1))
    rows = EVALUATION_FEATURES.read(run / "evaluation", store.revisions)
    f, tokens = _heldout_f(run, weights)
    labels = Labeler(store.first_position, 3, int(tokens[0, 0])).labels(tokens)
    for i, row in enumerate(rows):
        for p in TOY_LABELS:
            assert row[f"score_{p}"] is None
        if i < 2:
            assert row["feature_type"] == UNSCORED and row["type_score"] is None
            continue
        want = [specificity(f[:, i], labels[p]) if p in GENERIC_FLAGS else eta_squared(f[:, i], labels[p])
                for p in GENERIC_PROPERTIES]
        got = [row[f"score_{p}"] for p in GENERIC_PROPERTIES]
        assert got == pytest.approx(want, rel=1e-4, abs=1e-9)
        if (f[:, i] > 0).sum() < 20:  # EvaluateConfig.type_min_rows
            assert row["feature_type"] == UNSCORED
            continue
        top = max(want)
        passing = [k for k, v in enumerate(want) if v >= 0.5 and v >= top - 0.1]  # threshold, margin defaults
        k = passing[0] if passing else int(np.argmax(want))
        assert row["type_score"] == pytest.approx(want[k], rel=1e-4)
        assert row["feature_type"] == (GENERIC_PROPERTIES[k] if passing else OTHER)
    typed = json.loads((run / "evaluation.json").read_text())["decoder"]["typed_emergence"]
    assert typed == result.decoder.typed_emergence.model_dump(mode="json")
    assert set(typed) == {"properties", "threshold", "types", "counts", "onset_counts", "onset_median", "revisions"}
    assert typed["properties"] == list(GENERIC_PROPERTIES) == result.settings.type_properties
    assert typed["counts"][UNSCORED] >= 2 and sum(typed["counts"].values()) == len(rows)
    for t in typed["types"]:
        onsets = [r["onset"] for r in rows if r["feature_type"] == t and r["onset"] >= 0]
        assert typed["onset_counts"][t] == np.bincount(onsets, minlength=3).tolist()
    assert "typed_emergence.png" in result.plots and (run / "evaluation" / "typed_emergence.png").is_file()


def test_a_toy_store_is_scored_with_the_grammar_labels(toy_world, tmp_path):
    """On a toy-world store the toy labels are scored too; a feature that is the subject_end flag
    itself (built from the labels) gets that type."""
    run_dir = tmp_path / "toy"
    harvest(HarvestConfig(run=run_dir, series=str(toy_world), revisions=["step0", "step1000"], layer=1,
                          tokens=1024, heldout_tokens=1024, context_len=64, batch_size=16, progress=False))
    store = ActivationStore(run_dir / "activations")
    config = EvaluateConfig(run=run_dir, progress=False, contexts=0)
    labeler = make_labeler(config, store)
    assert labeler.properties == ALL_PROPERTIES
    assert labeler.flags == ("induction", "subject_number", "attractor", "subject_end")
    lo, hi = store.context_range("heldout")
    labels = labeler.labels(np.asarray(store.tokens[lo:hi]))
    assert (labels["subject_end"] == 1).any() and (labels["subject_number"] == 2).any()
    f = torch.from_numpy(labels["subject_end"] == 1).float()[:, None]
    stats = TypeStats(labeler.properties, 1, labeler.flags)
    stats.update(f, labels)
    assert assign_types(stats, TypeRules(0.5)).types == ["subject_end"]
    d = store.d_model
    save_crosscoder(run_dir, _random_weights(2, d, 16, seed=1), store.revisions, d=d)
    result = evaluate(config)
    assert result.settings.type_properties == list(ALL_PROPERTIES)
    rows = EVALUATION_FEATURES.read(run_dir / "evaluation", store.revisions)
    scored = [r for r in rows if r["feature_type"] != UNSCORED]
    assert scored and all(r["score_subject_number"] is not None for r in scored)


# -- the series' own labeller ---------------------------------------------------------------------

@dataclass(frozen=True)
class Parity:
    """A planted labeller: ``properties`` each label a token by its id's parity (1 odd, 0 even)."""

    properties: tuple[str, ...]

    def label(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return {p: np.asarray(ids) % 2 for p in self.properties}


def _madeup_series(root, monkeypatch, labeller) -> str:
    """A local series of the made-up family ``madeup`` (series.json and a config per revision: never
    loaded), whose labeller, planted in the registry, is ``labeller``."""
    (root / "step0").mkdir(parents=True)
    (root / "step0" / "config.json").write_text("{}")
    write_series_manifest(root, [Checkpoint("step0", 0, 0)], family="madeup")
    monkeypatch.setitem(series_module.LABELLERS, "madeup", lambda series: labeller)
    return str(root)


def test_the_scorable_properties_are_the_score_columns_of_features_csv():
    assert ALL_PROPERTIES == ("current_token", "previous_token", "induction", "subject_number", "attractor",
                              "subject_end")
    assert [f"score_{p}" for p in ALL_PROPERTIES] == [c.name for c in EVALUATION_FEATURES.columns
                                                      if c.name.startswith("score_")]


def test_a_planted_labeller_is_scored_as_flags_after_the_generic_properties(tmp_path, monkeypatch):
    """A made-up family's labeller naming a scored label (attractor): the store's labels come from it,
    cut to the kept positions, and it is scored by specificity."""
    source = _madeup_series(tmp_path / "s", monkeypatch, Parity(("attractor",)))
    tokens = np.array([[2, 5, 6, 7], [2, 9, 9, 4]])
    store = SimpleNamespace(manifest={"series": {"source": source, "family": "madeup"}}, first_position=1,
                            tokens=tokens)
    labeler = make_labeler(EvaluateConfig(run=tmp_path / "run"), store)
    assert labeler.properties == (*GENERIC_PROPERTIES, "attractor")
    assert labeler.flags == ("induction", "attractor") and labeler.boundary == 2
    labels = labeler.labels(tokens)
    assert labels["attractor"].tolist() == [1, 0, 1, 1, 1, 0]
    assert labels["current_token"].tolist() == [5, 6, 7, 9, 9, 4]
    stats = TypeStats(labeler.properties, 1, labeler.flags)
    stats.update(torch.tensor([[1.0], [0.0], [1.0], [0.0], [0.0], [0.0]]), labels)
    # all of the mass on odd tokens, 4 rows of 6: specificity (1 − 4/6) / (1 − 4/6) = 1, where η² is
    # (S_1²/N_1 − S²/N) / (Σf² − S²/N) = (4/4 − 4/6) / (2 − 4/6) = 1/4
    assert stats.scores()[0, 3].item() == 1.0
    assert stats.sums["attractor"].eta_squared()[0].item() == pytest.approx(0.25)


@pytest.mark.parametrize("properties,message", [
    (("colour",), "labels ['colour'], which evaluation/features.csv has no score column for"),
    (("attractor", "colour"), "score_subject_end); add a score_<property> column"),
    (("induction",), "none named like a generic property"),
    (("attractor", "attractor"), "each label once"),
])
def test_a_labeller_label_without_its_own_score_column_is_refused(tmp_path, monkeypatch, properties, message):
    source = _madeup_series(tmp_path / "s", monkeypatch, Parity(properties))
    labeller = open_series(source).labeller()
    assert labeller == Parity(properties)
    with pytest.raises(ValueError, match="the series labeller Parity labels") as err:
        Labeler(1, 3, None, labeller)
    assert message in str(err.value)


def test_a_hub_series_is_not_opened_for_a_labeller(tmp_path, monkeypatch):
    """A store of a Hub series gets the generic properties without opening the series (which could
    reach the network)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the series was opened")

    monkeypatch.setattr(evaluate_stage, "open_series", refuse)
    store = SimpleNamespace(manifest={"series": {"source": "EleutherAI/pythia-70m", "family": "pythia"}},
                            first_position=1, tokens=np.array([[0, 1, 2]]))
    labeler = make_labeler(EvaluateConfig(run=tmp_path / "run"), store)
    assert labeler.properties == GENERIC_PROPERTIES and labeler.labeller is None


# -- a label's type rests on the labelled rows --------------------------------------------------------

SINGULAR, PLURAL, SPAN, AGAIN, OUTSIDE = range(10, 15), range(15, 20), (30, 31, 32), 33, range(40, 50)


def _grammar_rows(sentences: int = 250) -> dict[str, np.ndarray]:
    """Labelled rows: sentences ``NOUN near the box VERB``, the four words before the verb carrying the
    noun's number (1 singular, 2 plural; nouns cycle through five of each); then as many unlabelled rows
    (-1: outside grammar lines) of other words."""
    cur, number = [], []
    for k in range(sentences):
        plural = k % 2 == 1
        noun = (PLURAL if plural else SINGULAR)[(k // 2) % 5]
        cur += [noun, *SPAN, 60]
        number += [2 if plural else 1] * 4 + [0]
    n = len(cur)
    cur += [OUTSIDE[k % 10] for k in range(n)]
    number += [-1] * n
    cur = np.array(cur)
    return {"current_token": cur, "previous_token": np.concatenate([[-1], cur[:-1]]),
            "induction": np.zeros(len(cur), dtype=np.int64), "subject_number": np.array(number)}


def _label_types(columns: dict[str, np.ndarray], labels: dict[str, np.ndarray], **rules) -> dict[str, str]:
    stats = TypeStats(LABEL_PROPS, len(columns), LABEL_FLAGS)
    stats.update(torch.from_numpy(np.stack(list(columns.values()), axis=1)).float(), labels)
    reading = assign_types(stats, TypeRules(0.5, min_rows=20, margin=0.1, **rules))
    return dict(zip(columns, reading.types)), reading


def test_a_label_type_needs_many_tokens_inside_the_label_not_one_noun():
    labels = _grammar_rows()
    plural = labels["subject_number"] == 2
    columns = {"number": plural.astype(float),                                # the plural span, over 8 tokens
               "one_noun": (labels["current_token"] == PLURAL[0]).astype(float)}  # 'kings' only
    types, reading = _label_types(columns, labels)
    assert reading.scores[1, LABEL_PROPS.index("subject_number")] == 1.0  # the label fits the noun detector…
    assert types == {"number": "subject_number", "one_noun": "current_token"}  # …but it rests on one token
    assert reading.label_tokens.tolist() == [8, 1]


def test_a_label_type_needs_most_of_the_activation_on_labelled_rows():
    labels = _grammar_rows()
    plural = (labels["subject_number"] == 2).astype(float)
    outside = (labels["subject_number"] == -1).astype(float)
    # the same plural span, plus activation outside grammar lines: 3 times the span's mass, or 0.6 times
    mostly_outside = plural + outside * 3 * plural.sum() / outside.sum()
    half_outside = plural + outside * 0.6 * plural.sum() / outside.sum()
    types, reading = _label_types({"outside": mostly_outside, "inside": half_outside}, labels)
    assert reading.labelled_share.tolist() == pytest.approx([0.25, 1 / 1.6])
    assert types["outside"] != "subject_number" and types["inside"] == "subject_number"


def test_a_label_type_needs_enough_labelled_firing_rows():
    labels = _grammar_rows()
    plural_rows = np.flatnonzero(labels["subject_number"] == 2)
    outside_rows = np.flatnonzero(labels["subject_number"] == -1)[:40]
    columns = {}
    for name, n in (("few", 12), ("enough", 24)):  # min_rows 20: 12 labelled firing rows are too few
        f = np.zeros(len(labels["current_token"]))
        f[plural_rows[:n]] = 10.0  # most of the mass on labelled rows…
        f[outside_rows] = 0.1  # …and the rest brings the firing rows over min_rows
        columns[name] = f
    types, reading = _label_types(columns, labels)
    assert reading.labelled_rows.tolist() == [12, 24]
    assert types["few"] != "subject_number" and types["enough"] == "subject_number"


def test_a_label_must_beat_the_simpler_property_on_its_own_rows():
    # a copy-marker detector: fires on every word after 'again', and 'again' opens every other plural span (so
    # the noun alone does not tell); the label fits (all its mass is in plural spans, on all five plural nouns)
    # but the previous token explains it as well on the same rows
    labels = _grammar_rows()
    cur = labels["current_token"].copy()
    starts = np.flatnonzero(labels["subject_number"] == 2)[::4][::2]  # every other plural span's noun
    cur[starts - 1] = AGAIN  # the verb row before the span becomes 'again'
    labels = {**labels, "current_token": cur, "previous_token": np.concatenate([[-1], cur[:-1]])}
    after_again = (labels["previous_token"] == AGAIN).astype(float)
    types, reading = _label_types({"copy": after_again, "number": (labels["subject_number"] == 2).astype(float)},
                                  labels)
    assert reading.scores[0, LABEL_PROPS.index("subject_number")] == 1.0 and reading.label_tokens[0] == 5
    assert types == {"copy": "previous_token", "number": "subject_number"}
