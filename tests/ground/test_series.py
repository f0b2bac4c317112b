"""Checkpoint series: revision grids, token counts, selection, local round trip, bad input."""

import errno
import json
import re
import shutil
import socket
import time

import numpy as np
import pytest
import torch

from conftest import make_tiny_series, make_word_tokenizer, tiny_model
import crosstime.series as series_module
from crosstime.checkpoints import Checkpoint, format_tokens, write_series_manifest
from crosstime.series import PYTHIA_TOKENS_PER_STEP, SeriesError, looks_local, open_series, parse_olmo_revision
from crosstime.toy.labels import context_labels


def test_pythia_grid_and_tokens():
    s = open_series("EleutherAI/pythia-1b-deduped")
    assert s.family == "pythia" and not s.is_local
    revs = s.revisions
    assert len(revs) == 155  # step0, 10 powers of two, 143 thousands, main
    assert revs[:12] == ["step0", "step1", "step2", "step4", "step8", "step16", "step32", "step64",
                         "step128", "step256", "step512", "step1000"]
    assert revs[-3:] == ["step142000", "step143000", "main"]
    assert s.get("step1000").tokens == 1000 * 2_097_152
    assert s.get("main").tokens == s.get("step143000").tokens == 143000 * PYTHIA_TOKENS_PER_STEP
    assert s.get("step64").label == "134M"
    assert s.get("main").label == "300B"


def test_olmo_revisions_parse_tokens_from_name():
    s = open_series("allenai/OLMo-1B-0724-hf", revisions=["step20000-tokens84B", "step2000-tokens4B", "step1454000-tokens3048B"])
    assert s.revisions == ["step2000-tokens4B", "step20000-tokens84B", "step1454000-tokens3048B"]  # ordered by tokens
    assert s.get("step2000-tokens4B") == Checkpoint("step2000-tokens4B", 2000, 4_000_000_000)
    assert s.get("step1454000-tokens3048B").label == "3.0T"
    assert parse_olmo_revision("step5-tokens0.5B").tokens == 500_000_000
    with pytest.raises(SeriesError, match="stepN-tokensXB"):
        open_series("allenai/OLMo-1B-hf", revisions=["main2"])
    with pytest.raises(SeriesError, match="pass them explicitly"):
        open_series("allenai/OLMo-1B-hf")


def test_bloom_intermediate_steps_and_tokens():
    s = open_series("bigscience/bloom-1b1-intermediate")
    assert s.revisions[0] == "global_step1000" and s.revisions[-1] == "global_step600000"
    assert s.get("global_step10000").tokens == 10000 * 550_000
    assert s.get("global_step10000").label == "5.5B"
    custom = open_series("bigscience/bloom-560m-intermediate", revisions=["global_step2"], tokens_per_step=1000)
    assert custom.get("global_step2").tokens == 2000


@pytest.mark.parametrize("tokens,label", [(0, "0"), (950, "950"), (128_000_000, "128M"), (4_000_000_000, "4B"),
                                          (286_000_000_000, "286B"), (2_500_000, "2.5M"), (None, "?")])
def test_token_labels(tokens, label):
    assert format_tokens(tokens) == label


def test_selection_by_name_step_and_nearest_tokens():
    s = open_series("EleutherAI/pythia-70m")
    picked = s.select(revisions=["main", "step512"], steps=[2000], tokens=[3.1e9])
    assert [c.revision for c in picked] == ["step512", "step1000", "step2000", "main"]  # 3.1e9 → step1000 (2.1B)
    assert s.nearest_tokens(130e6).revision == "step64"
    assert s.nearest_step(1600).revision == "step2000"
    with pytest.raises(SeriesError, match="nearest: step2000"):
        s.by_step(1900)


def test_unknown_revision_lists_nearest_valid_ones():
    s = open_series("EleutherAI/pythia-70m")
    with pytest.raises(SeriesError, match=r"unknown revision 'step1500'.*nearest valid: step1000, step2000"):
        s.get("step1500")
    with pytest.raises(SeriesError, match="nearest valid"):
        open_series("EleutherAI/pythia-70m", revisions=["steps12"])


def test_local_series_round_trip_logits_identical(tmp_path):
    tok = make_word_tokenizer()
    models = {}
    for step in (0, 4):
        models[step] = tiny_model("gpt_neox", vocab_size=len(tok), seed=step)
        models[step].save_pretrained(tmp_path / f"step{step}")
        tok.save_pretrained(tmp_path / f"step{step}")
    write_series_manifest(tmp_path, [Checkpoint("step4", 4, 400), Checkpoint("step0", 0, 0)])
    s = open_series(tmp_path)
    assert s.is_local and s.revisions == ["step0", "step4"]
    ids = tok("the dogs near the cat", return_tensors="pt").input_ids
    for step in (0, 4):
        reloaded = s.load_model(f"step{step}")
        with torch.no_grad():
            assert torch.equal(reloaded(ids).logits, models[step](ids).logits)
    assert s.load_tokenizer().convert_ids_to_tokens(ids[0].tolist()) == ["the", "dogs", "near", "the", "cat"]
    assert s.check_compatible() == 32


def test_local_series_loads_with_zero_network_calls(tiny_series, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network call attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # must hold even without the offline switch
    s = open_series(tiny_series)
    s.load_model("step10")
    s.load_tokenizer("step10")


def test_folder_that_is_not_a_series(tmp_path):
    (tmp_path / "step0").mkdir()
    with pytest.raises(SeriesError, match="not a checkpoint series.*series.json.*step0"):
        open_series(tmp_path)
    with pytest.raises(SeriesError, match="does not exist"):
        open_series(tmp_path / "missing")
    (tmp_path / "series.json").write_text(json.dumps({"checkpoints": [{"revision": "step0", "step": 0, "tokens": 0}]}))
    with pytest.raises(SeriesError, match="no saved model: step0"):
        open_series(tmp_path)
    (tmp_path / "series.json").write_text("{not json")
    with pytest.raises(SeriesError, match="malformed"):
        open_series(tmp_path)


def test_series_whose_checkpoints_differ_in_width_or_tokenizer(tmp_path):
    root = make_tiny_series(tmp_path / "s", steps=(0, 1))
    wide = tiny_model("gpt_neox", vocab_size=len(make_word_tokenizer()), d=48, seed=2)
    wide.save_pretrained(root / "step2")
    make_word_tokenizer().save_pretrained(root / "step2")
    write_series_manifest(root, [Checkpoint("step0", 0, 0), Checkpoint("step1", 1, 10), Checkpoint("step2", 2, 20)])
    s = open_series(root)
    with pytest.raises(SeriesError, match="differ in width.*step2: d=48"):
        s.check_compatible()
    assert s.check_compatible(["step0", "step1"]) == 32

    from conftest import WORDS

    other_tok = make_word_tokenizer(words=[f"w{i}" for i in range(len(WORDS))])  # same size, other words
    shutil.rmtree(root / "step2")
    tiny_model("gpt_neox", vocab_size=len(other_tok), seed=2).save_pretrained(root / "step2")
    other_tok.save_pretrained(root / "step2")
    with pytest.raises(SeriesError, match="do not share one tokenizer: step2"):
        open_series(root).check_compatible()


# -- bad input: names, counts, local paths, the Hub ------------------------------------------

def _manifest(root, entries):
    root.mkdir(parents=True, exist_ok=True)
    (root / "series.json").write_text(json.dumps({"checkpoints": entries}))
    return root / "series.json"


@pytest.mark.parametrize("entry,why", [
    ({"revision": 5, "step": 5, "tokens": 50}, "5 is not a string but an int"),
    ({"revision": "../x", "step": 1, "tokens": 10}, "'../x' cannot be used as a folder name: it contains a path separator"),
    ({"revision": "../../x", "step": 1, "tokens": 10}, "path separator"),
    ({"revision": "", "step": 1, "tokens": 10}, "it is empty"),
    ({"revision": "..", "step": 1, "tokens": 10}, "names a folder itself"),
    ({"revision": ".hidden", "step": 1, "tokens": 10}, "starts with a dot"),
    ({"revision": "a\x00b", "step": 1, "tokens": 10}, "control character"),
    ({"revision": "step1", "step": -1, "tokens": 10}, "(step1): step is -1, a negative count"),
    ({"revision": "step1", "step": 1, "tokens": -10}, "(step1): tokens is -10, a negative count"),
    ({"revision": "step1", "step": 1.5, "tokens": 10}, "(step1): step is 1.5, not an integer"),
    ({"revision": "step1", "step": 1, "tokens": "10"}, "(step1): tokens is '10', not an integer"),
    ({"revision": "step1", "step": True, "tokens": 10}, "(step1): step is True, not an integer"),
    ("step1", "is 'step1', not an entry with a revision"),
])
def test_series_json_entries_are_checked(tmp_path, entry, why):
    """A revision becomes RUN/activations/<revision>/: it must be one plain folder name; steps and
    token counts are whole numbers ≥ 0. The error names the file, the entry and what is wrong."""
    path = _manifest(tmp_path / "s", [{"revision": "step0", "step": 0, "tokens": 0}, entry])
    with pytest.raises(SeriesError) as err:
        open_series(tmp_path / "s")
    assert f"{path}, checkpoint 1" in str(err.value) and why in str(err.value)


def test_series_json_shape_and_encoding(tmp_path):
    path = _manifest(tmp_path / "s", [])
    path.write_text(json.dumps([{"revision": "step0"}]))
    with pytest.raises(SeriesError, match="no list 'checkpoints'"):
        open_series(tmp_path / "s")
    path.write_bytes(b'{"checkpoints": [{"revision": "caf\xe9"}]}')
    with pytest.raises(SeriesError, match=r"series.json is not UTF-8"):
        open_series(tmp_path / "s")


def test_requested_revisions_are_checked_names(tiny_series):
    for bad in ("../../x", "", ".x", "a/b"):
        with pytest.raises(SeriesError, match="requested revision"):
            open_series(tiny_series, revisions=[bad])
        with pytest.raises(SeriesError, match="requested revision"):
            open_series("EleutherAI/pythia-70m", revisions=["step0", bad])
    with pytest.raises(SeriesError, match="tokens_per_step -5 must be a positive integer"):
        open_series("bigscience/bloom-560m-intermediate", tokens_per_step=-5)


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network call attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_a_path_is_never_sent_to_the_hub(tmp_path, monkeypatch):
    """Local means local: a mistyped folder is an error that says so, with no network call."""
    _no_network(monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for source in ("toy-typo", "./toy-typo", "runs/x", "~/surely-not-here-crosstime", "a/b/c", "org/../x",
                   "file.txt", str(tmp_path / "nope")):
        with pytest.raises(SeriesError, match="no such series folder .*a Hugging Face repo id looks like org/name"):
            open_series(source, revisions=["step1"])
    with pytest.raises(SeriesError, match="it is a file, not a folder"):
        open_series("file.txt")
    assert looks_local("toy-typo") and looks_local("runs/x") and looks_local(tmp_path)
    assert not looks_local("EleutherAI/pythia-70m") and not looks_local("org/name")


def test_a_hub_id_offline_and_not_cached_is_one_line_fast(monkeypatch):
    """HF_HUB_OFFLINE=1 and a repo that is not in the cache: a SeriesError naming the repo, the
    revision and the fixes, at once (no retries, no network)."""
    _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # huggingface_hub read it at import: conftest set it before
    s = open_series("crosstime-test/not-cached", revisions=["step1"])
    for load in (lambda: s.load_config("step1"), lambda: s.load_tokenizer("step1"), lambda: s.load_model("step1")):
        start = time.perf_counter()
        with pytest.raises(SeriesError) as err:
            load()
        assert time.perf_counter() - start < 5.0  # measured: ~0.9 s the first time (imports), ms after
        msg = str(err.value)
        assert "\n" not in msg
        assert "'crosstime-test/not-cached' at revision 'step1'" in msg and "HF_HUB_OFFLINE is set" in msg
        assert "HF_HUB_OFFLINE=0" not in msg and "hf download crosstime-test/not-cached --revision step1" in msg
        assert "local series folder" in msg


def _hub_error(cls, message):
    from types import SimpleNamespace

    return cls(message, response=SimpleNamespace(headers={}, request=None))


@pytest.mark.parametrize("error,expected", [
    ("repo", "no Hugging Face repo 'org/name'"),
    ("revision", "has no revision 'step1'"),
    ("transformers", "cannot load the config of 'org/name' at revision 'step1' (OSError: Can't load the"),
])
def test_hub_failures_name_the_repo_and_the_fix(monkeypatch, error, expected):
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    from transformers import AutoConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(series_module, "hub_unreachable", lambda: None)  # the Hub answers; the load fails

    def fail(*args, **kwargs):
        if error == "transformers":
            raise OSError("Can't load the configuration of 'org/name'.\nIf you were trying to load it from ...")
        cls = RepositoryNotFoundError if error == "repo" else RevisionNotFoundError
        try:
            raise _hub_error(cls, "404 Client Error")
        except cls as inner:  # transformers re-raises the hub's error as an OSError
            raise OSError("org/name is not a local folder and is not a valid model identifier") from inner

    monkeypatch.setattr(AutoConfig, "from_pretrained", fail)
    with pytest.raises(SeriesError, match=re.escape(expected)) as err:
        open_series("org/name", revisions=["step1"]).load_config("step1")
    assert "\n" not in str(err.value)


def test_disk_full_while_loading_is_not_a_series_error(monkeypatch):
    """A download that fills the disk is the disk's problem: it passes on (the CLI says so)."""
    from transformers import AutoConfig

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/blob")

    monkeypatch.setattr(AutoConfig, "from_pretrained", full)
    with pytest.raises(OSError) as err:
        open_series("org/name", revisions=["step1"]).load_config("step1")
    assert err.value.errno == errno.ENOSPC and not isinstance(err.value, SeriesError)


def test_a_damaged_local_checkpoint_names_the_folder(tmp_path):
    root = make_tiny_series(tmp_path / "s", steps=(0, 1))
    (root / "step1" / "config.json").write_text("{not json")
    s = open_series(root)
    with pytest.raises(SeriesError, match=re.escape(f"revision 'step1' from {root.resolve() / 'step1'}")):
        s.load_config("step1")
    assert s.load_config("step0").hidden_size == 32


# -- "toy": the built-in toy world by name -------------------------------------------------------

def test_toy_is_the_cached_toy_world_from_any_folder(toy_world, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # an empty folder: no ./toy here
    series = open_series("toy", revisions=["step64", "step512"])
    assert series.local_root == toy_world.resolve() and series.source == str(toy_world.resolve())
    assert series.revisions == ["step64", "step512"]
    err = capsys.readouterr().err
    assert f"built-in toy world in {toy_world}" in err and "CROSSTIME_CACHE" in err
    assert list(tmp_path.iterdir()) == []  # nothing written where it was asked from


def test_a_local_folder_named_toy_wins_over_the_toy_world(tmp_path, monkeypatch, capsys):
    make_tiny_series(tmp_path / "toy", steps=(0, 10))
    monkeypatch.chdir(tmp_path)
    series = open_series("toy")
    assert series.local_root == (tmp_path / "toy").resolve() and series.revisions == ["step0", "step10"]
    assert "toy world" not in capsys.readouterr().err
    (tmp_path / "toy" / "series.json").unlink()  # an existing ./toy that is not a series is an error, not a fallback
    with pytest.raises(SeriesError, match="no series.json"):
        open_series("toy")


def test_toy_builds_the_toy_world_when_not_cached_and_says_where(tmp_path, monkeypatch, capsys):
    from crosstime.toy import pretrain

    built = []

    def fake_build(out, config, progress=True, overwrite=False):  # a stand-in for the 2-minute build
        built.append(out)
        make_tiny_series(out, steps=(0, 1))
        (out / "build.json").write_text("{}")
        return out

    monkeypatch.setenv("CROSSTIME_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrain, "build_toy_world", fake_build)
    monkeypatch.chdir(tmp_path)
    series = open_series("toy")
    where = tmp_path / "cache" / "toy" / pretrain.ToyConfig().key()
    assert built == [where] and series.local_root == where.resolve()
    err = capsys.readouterr().err
    assert f"building the toy world in {where}" in err and f"built-in toy world in {where}" in err
    open_series("toy")  # cached now: no second build
    assert built == [where]


def test_loading_a_local_checkpoint_draws_no_transformers_bar(tiny_series, capfd):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    open_series(tiny_series).load_model("step10")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # switched off for the load only


# -- a series' own token labeller ---------------------------------------------------------------

def test_the_toy_series_labels_its_tokens_with_the_grammar(toy_world):
    """The toy family's labeller, built from the series' tokenizer: on a context of a fragment (its
    line not complete: unlabelled) and a sentence with a PP attractor, the grammar's labels by hand."""
    series = open_series(toy_world)
    labeller = series.labeller()
    tok = series.load_tokenizer()
    ids = np.array(tok("cat runs .").input_ids + tok("the dogs near the cat run .").input_ids)
    assert labeller.properties == ("subject_number", "attractor", "subject_end")
    got = labeller.label(ids)
    unlabelled = [-1] * 5  # <bos> cat runs . <bos>
    assert got["subject_number"].tolist() == unlabelled + [0, 2, 2, 2, 2, 0, 0]
    assert got["attractor"].tolist() == unlabelled + [0, 0, 1, 1, 1, 0, 0]
    assert got["subject_end"].tolist() == unlabelled + [0, 0, 0, 0, 1, 0, 0]
    expected = context_labels(ids, tok.convert_ids_to_tokens(list(range(len(tok)))), tok.bos_token_id)
    assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in expected.items()}


def test_a_series_family_without_a_labeller_has_none(tiny_series, monkeypatch):
    """A local series (family local) and a Hub one (no network: the family alone decides) have none."""
    assert open_series(tiny_series).labeller() is None
    _no_network(monkeypatch)
    pythia = open_series("EleutherAI/pythia-70m")
    assert pythia.family == "pythia" and pythia.labeller() is None
