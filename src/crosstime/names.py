"""Names that become path components: checked before they touch the file system.

A revision becomes ``RUN/activations/<revision>/``, a task ``RUN/attribution/<task>/``. Such a
name must be one plain path component: not empty, no ``/`` or ``\\``, not ``.`` or ``..``, no
leading dot (hidden files, and ``...``), no NUL or other control character.
"""

from __future__ import annotations

from crosstime.errors import CrosstimeError


class UnsafeName(CrosstimeError):
    """A name that cannot be used as a path component."""


def check_name(value: object, what: str) -> str:
    """``value`` if it is a safe single path component, else :class:`UnsafeName` saying which rule it breaks.

    ``what`` names the input in the message, e.g. ``"revision in /data/series.json"``."""
    if not isinstance(value, str):
        raise UnsafeName(f"{what} {value!r} is not a string but {_article(type(value).__name__)}; write it in quotes")
    why = None
    if not value:
        why = "it is empty"
    elif "/" in value or "\\" in value:
        why = "it contains a path separator"
    elif value in (".", ".."):
        why = "it names a folder itself"
    elif value.startswith("."):
        why = "it starts with a dot"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        why = "it contains a control character (NUL, newline, …)"
    if why:
        raise UnsafeName(f"{what} {value!r} cannot be used as a folder name: {why}. Use a plain name such as "
                         "'step1000' (letters, digits, '-', '_', '.' not first)")
    return value


def _article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun
