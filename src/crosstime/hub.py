"""Whether the Hugging Face Hub may be used now, and whether it can be reached, asked at once.

Without network huggingface_hub retries for tens of seconds before it fails (or falls back to its
cache); every command that goes to the Hub (loading a series, ``crosstime import hub``,
``crosstime push``) asks here first, and without a Hub reads the local cache only or stops with one
line: :func:`hub_offline` (``HF_HUB_OFFLINE`` set, read now) and :func:`hub_unreachable` (one TCP
connection to ``HF_ENDPOINT`` with a short timeout, no retries).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from huggingface_hub import constants as hub_constants

# A reachable Hub accepts a TCP connection well within this; without network huggingface_hub would
# retry for tens of seconds before falling back to its cache.
HUB_CONNECT_TIMEOUT_S = 2.0


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set now (huggingface_hub reads it once, at import; this reads it at each ask)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub (``HF_ENDPOINT``) cannot be reached now, in words (``huggingface.co:443:
    Network is unreachable``), or None: one TCP connection with a short timeout
    (:data:`HUB_CONNECT_TIMEOUT_S`), no retries."""
    endpoint = urlsplit(hub_constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=HUB_CONNECT_TIMEOUT_S):
            return None
    except OSError as err:  # no route, no DNS, refused, timed out: all mean no Hub now
        return f"{host}:{port}: {err.strerror or err}"
