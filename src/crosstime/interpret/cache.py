"""Every LLM prompt and reply on disk, keyed by the request's hash: a re-run is free, a killed
run resumes, and nothing already paid for is lost.

One file per request, ``FOLDER/<key>.json``, where ``key`` is the sha256 of the canonical JSON of
``{"model": backend model id, "messages": [...], "params": {...}}`` (sorted keys, UTF-8). The file
holds the request, the reply (text, tokens, the model id the server reported) and the sha256 of
both; it is written atomically (:func:`crosstime.files.write_json`) the moment the reply arrives,
before anything parses it. A read verifies the hash: a damaged entry is moved aside to
``<key>.corrupt`` (kept for inspection), recorded in :attr:`ReplyCache.corrupt`, and fetched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crosstime.files import remove_stale_temps, write_json
from crosstime.interpret.backends import Message, Reply

CACHE_FORMAT = 1  # the entry layout below; a reader refuses another


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def request_key(model_id: str, messages: Sequence[Message], params: dict[str, Any]) -> str:
    """The sha256 (hex) that names a request's cache entry: backend model id, messages, sampling params."""
    return hashlib.sha256(_canonical({"model": model_id, "messages": list(messages), "params": params})).hexdigest()


@dataclass(frozen=True)
class Prices:
    """US dollars per million prompt and completion tokens; None = not given (the cost is then
    reported as 0 and marked unknown, never guessed)."""

    prompt_per_million: float | None = None
    completion_per_million: float | None = None

    @property
    def known(self) -> bool:
        return self.prompt_per_million is not None and self.completion_per_million is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        if not self.known:
            return 0.0
        return (prompt_tokens * self.prompt_per_million + completion_tokens * self.completion_per_million) / 1e6


UNPRICED = Prices()  # no prices given: cost 0, marked unknown


class ReplyCache:
    """The replies of one run's LLM requests, in ``folder`` (e.g. ``RUN/interpret/llm-cache``).

    Safe to use from several threads: each entry is its own file, written atomically."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.folder)  # a killed writer's half-written temporary files
        self.corrupt: list[dict[str, str]] = []  # {"key", "reason", "moved_to"} of each damaged entry met
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> Reply | None:
        """The cached reply of request ``key``, or None (never asked, or damaged: then recorded and moved aside)."""
        path = self.path(key)
        if not path.is_file():
            return None
        entry, reason = _read_entry(path, key)
        if entry is None:
            moved = path.with_suffix(".corrupt")
            with contextlib.suppress(FileNotFoundError):  # another thread asking for the same request moved it
                os.replace(path, moved)
            with self._lock:
                self.corrupt.append({"key": key, "reason": reason, "moved_to": str(moved)})
            return None
        return Reply(**entry["reply"])

    def put(self, key: str, model_id: str, messages: Sequence[Message], params: dict[str, Any], reply: Reply) -> None:
        """Write one reply (atomically) under ``key``, with its request and the sha256 that verifies both."""
        body = {"key": key, "request": {"model": model_id, "messages": list(messages), "params": params},
                "reply": asdict(reply)}
        write_json(self.path(key), {"format": CACHE_FORMAT, **body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()})

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every verified entry on disk (damaged ones are skipped here; :meth:`get` records them)."""
        for path in sorted(self.folder.glob("*.json")):
            entry, _ = _read_entry(path, path.stem)
            if entry is not None:
                yield entry


def _read_entry(path: Path, key: str) -> tuple[dict[str, Any] | None, str]:
    """The entry in ``path`` if it is whole and is request ``key``'s; else None and why."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not JSON ({err})"
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
        return None, f"not a format-{CACHE_FORMAT} cache entry"
    body = {name: entry.get(name) for name in ("key", "request", "reply")}
    if entry.get("sha256") != hashlib.sha256(_canonical(body)).hexdigest():
        return None, "content does not match its sha256"
    request = body["request"]
    if body["key"] != key or request_key(request["model"], request["messages"], request["params"]) != key:
        return None, "the request is not the one its name says"
    return entry, ""


def summarize(cache: ReplyCache, prices: Prices = UNPRICED) -> dict[str, Any]:
    """Tokens and cost of every reply in the cache, per backend model id, with the damaged entries
    met. ``cost_usd`` is 0 with ``cost_known`` false when no prices were given."""
    models: dict[str, dict[str, Any]] = {}
    for entry in cache.entries():
        reply = entry["reply"]
        row = models.setdefault(entry["request"]["model"], {"replies": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                            "replies_without_usage": 0, "served_by": []})
        row["replies"] += 1
        if reply["prompt_tokens"] is None or reply["completion_tokens"] is None:
            row["replies_without_usage"] += 1
        row["prompt_tokens"] += reply["prompt_tokens"] or 0
        row["completion_tokens"] += reply["completion_tokens"] or 0
        row["served_by"] = sorted({*row["served_by"], reply["model"]})
    prompt = sum(row["prompt_tokens"] for row in models.values())
    completion = sum(row["completion_tokens"] for row in models.values())
    return {"models": models, "prompt_tokens": prompt, "completion_tokens": completion,
            "cost_usd": prices.cost(prompt, completion), "cost_known": prices.known,
            "prices_per_million": {"prompt": prices.prompt_per_million, "completion": prices.completion_per_million},
            "corrupt_entries": list(cache.corrupt)}
