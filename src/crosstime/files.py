"""Crash-safe file writing: write under a temporary name, then rename.

A kill at any moment leaves either the old file or the complete new one, never a
half-written file that looks complete. The temporary name is ``.<name>.tmp-<pid>``
(:data:`TEMP_NAME`); a kill leaves it behind, and :func:`remove_stale_temps` (called by
the next writer of the folder) removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>[0-9]+)$")  # what atomic_path names its temporary file


def temp_path(path: Path) -> Path:
    """The temporary sibling :func:`atomic_path` writes ``path`` under (this process's)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success it is renamed to ``path``.

    An OSError of the write (a full disk, …) names ``path``: a failed ``write`` on an open file
    names no file, and the temporary name means nothing to whoever reads the message."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.filename not in (None, str(tmp)):
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        if tmp.exists():
            tmp.unlink()


def not_a_file(path: str | Path) -> str:
    """Why ``path`` is not a regular file, for a message: "does not exist", "is a folder", "is a named
    pipe (FIFO)", "is a character device (e.g. /dev/zero)", … A link is described by what it points to."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"is a symbolic link to {os.readlink(path)}, which does not exist" if path.is_symlink() else "does not exist"
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    via = f" (through the symbolic link to {os.readlink(path)})" if path.is_symlink() else ""
    return f"is {kind}{via}, not a regular file"


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 checks without signalling)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` in ``folder`` whose writer is dead.

    A process killed during a write leaves ``.<name>.tmp-<pid>`` (as large as the file it was
    writing); nothing renames it any more. A file whose pid is alive is left alone (it may be
    another writer's file in progress, or a reused pid: leaving it is the safe side). Returns
    the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        match = TEMP_NAME.match(entry.name)
        if match is None or not entry.is_file():
            continue
        pid = int(match["pid"])
        if pid < 1 or pid > 2**22 or _alive(pid):  # 2**22: Linux's largest pid; anything else is not ours
            continue
        entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed

