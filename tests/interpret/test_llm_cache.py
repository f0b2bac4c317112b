"""The LLM reply cache on its own: verified reads, damaged entries, stale temporary files, the summary."""

from __future__ import annotations

from crosstime.interpret.backends import Reply
from crosstime.interpret.cache import Prices, ReplyCache, request_key, summarize

PARAMS = {"temperature": 0.0, "max_tokens": 8}


def _put(cache, content, reply):
    messages = [{"role": "user", "content": content}]
    key = request_key("m", messages, PARAMS)
    cache.put(key, "m", messages, PARAMS, reply)
    return key


def test_round_trip_and_summary(tmp_path):
    cache = ReplyCache(tmp_path)
    a = _put(cache, "explain ünïcode", Reply("one", 10, 2, "m-1"))
    _put(cache, "b", Reply("two", None, None, "m-2"))  # a server that reports no usage
    assert cache.get(a) == Reply("one", 10, 2, "m-1") and cache.get("0" * 64) is None
    summary = summarize(ReplyCache(tmp_path), Prices(1.0, 2.0))
    assert summary["models"] == {"m": {"replies": 2, "prompt_tokens": 10, "completion_tokens": 2,
                                       "replies_without_usage": 1, "served_by": ["m-1", "m-2"]}}
    assert summary["cost_usd"] == (10 * 1.0 + 2 * 2.0) / 1e6 and summary["corrupt_entries"] == []


def test_truncated_and_misnamed_entries_are_moved_aside(tmp_path):
    cache = ReplyCache(tmp_path)
    a = _put(cache, "a", Reply("one", 1, 1, "m"))
    b = _put(cache, "b", Reply("two", 1, 1, "m"))
    text = cache.path(a).read_text()
    cache.path(a).write_text(text[: len(text) // 2])  # a disk that lost the end
    cache.path(b).write_text(text)  # a whole entry, but a's, under b's name
    assert cache.get(a) is None and cache.get(b) is None
    reasons = {c["key"]: c["reason"] for c in cache.corrupt}
    assert reasons[a].startswith("not JSON") and reasons[b] == "the request is not the one its name says"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{a}.corrupt", f"{b}.corrupt"])


def test_a_dead_writers_temporary_file_is_removed(tmp_path):
    stale = tmp_path / f".{'f' * 64}.json.tmp-4194000"  # a pid below Linux's maximum that is not running
    stale.write_text("{half")
    ReplyCache(tmp_path)
    assert not stale.exists()
