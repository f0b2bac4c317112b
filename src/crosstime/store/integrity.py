"""Verified reads: a store file's bytes are used only once they are known to be what the harvest wrote.

Before a reader uses a chunk ``.bin`` it checks, with the file open:

1. the manifest's entry: ``checksums[i]`` of the checkpoint (the reference);
2. the sidecar: readable, sealed, of this chunk and revision, with that same sha256;
3. the size: ``rows × d × itemsize``;
4. the bytes: when the file's record (size, mtime, ctime, inode; see
   :func:`crosstime.store.layout.file_record`) equals the one the harvest wrote into the
   sidecar right after renaming the chunk into place, the harvest hashed exactly these
   bytes; else a record of a hash this process made, or ``STORE/.verified.json`` (written
   atomically by readers: a copied store, with new records, is hashed once, not at every
   open); else the file is hashed now (and recorded), and compared with the manifest.

``tokens.npy`` is checked the same way against ``tokens_sha256`` (its record is in the
manifest). Any mismatch stops with :class:`StoreError` naming the file and the fix. So a
file is hashed at most once per process, and in the normal case (the harvest's own files)
never by a reader. After reading, the reader compares the open files' records again
(:meth:`Verifier.recheck`), so a file written to while it was open is caught too.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

from crosstime.files import write_json
from crosstime.store.layout import (
    TOKENS,
    VERIFIED,
    StoreError,
    chunk_paths,
    chunk_rows,
    file_record,
    itemsize,
    load_sidecar,
    plan_of,
    sidecar_fits,
)

# (absolute path, file record as a tuple) -> sha256 of the bytes: what this process has hashed
_HASHED: dict[tuple[str, tuple], str] = {}
CACHE_FORMAT = "crosstime-verified"
FLUSH_EVERY_S = 1.0


def hash_fd(fd: int, block: int = 1 << 22) -> str:
    """sha256 of an open file's bytes, read with ``pread`` (the file offset is left alone)."""
    digest = hashlib.sha256()
    offset = 0
    while data := os.pread(fd, block, offset):
        digest.update(data)
        offset += len(data)
    return digest.hexdigest()


def _key(record: dict) -> tuple:
    return tuple(record[k] for k in ("size", "mtime_ns", "ctime_ns", "ino"))


class Verifier:
    """Checks of one store's files against its manifest (see the module docstring)."""

    def __init__(self, root: Path, manifest: dict, command: str):
        self.root, self.manifest, self.command = Path(root), manifest, command
        self.plan = plan_of(manifest) if manifest.get("version", 1) >= 2 else None  # version 1: no plans to compare
        self._cache: dict[str, dict] | None = None  # .verified.json: {relative path: {record, sha256}}
        self._good: dict[tuple[str, int], dict] = {}  # (revision, chunk) -> record of the version found good
        self._dirty = False
        self._last_flush = 0.0
        self._warned = False

    # -- chunks ----------------------------------------------------------------------
    def chunk(self, revision: str, index: int, fd: int) -> dict:
        """The record of the open chunk file ``fd`` once its bytes are known good, else :class:`StoreError`."""
        bin_path, side_path = chunk_paths(self.root, revision, index)
        st = os.fstat(fd)
        if self._good.get((revision, index)) == file_record(st):  # reopened (the reader keeps 256 files open)
            return self._good[(revision, index)]
        rel = f"{revision}/{bin_path.name}"
        redo = (f"re-harvest that checkpoint: `{self.command} --revisions {revision}` redoes damaged chunks")
        expected = self._checksum(revision, index)
        side = load_sidecar(side_path)
        rows = chunk_rows(self.manifest, index)
        if side is None or not sidecar_fits(side, revision, index, rows):
            why = "missing" if not side_path.exists() else "damaged (unreadable, edited, or of another chunk)"
            raise StoreError(f"{self.root / rel}: its sidecar {revision}/{side_path.name} is {why}; {redo}")
        if self.plan is not None and "plan" in side and side["plan"] != self.plan:
            raise StoreError(f"{self.root / rel}: its sidecar {revision}/{side_path.name} records another plan than "
                             f"manifest.json (the manifest is not this store's, or the chunk is another store's); "
                             f"re-harvest into a new run, or move the foreign files away and re-run `{self.command}`")
        if side["sha256"] != expected:
            raise StoreError(f"{self.root / rel}: its sidecar {revision}/{side_path.name} and manifest.json disagree "
                             f"about its checksum; {redo}")
        size = rows * self.manifest["d_model"] * itemsize(self.manifest["dtype"])
        if st.st_size != size:
            raise StoreError(f"{self.root / rel} has {st.st_size} bytes, the harvest wrote {size} (truncated or "
                             f"replaced); {redo}")
        record = file_record(st)
        if side.get("file") != record:  # not the harvest's own bytes untouched: hash (once)
            self._check_bytes(rel, fd, record, expected, f"{self.root / rel} does not match the checksum the harvest "
                                                         f"recorded in manifest.json (its bytes changed); {redo}")
        self._good[(revision, index)] = record
        return record

    def _checksum(self, revision: str, index: int) -> str:
        sums = self.manifest["checkpoints"][revision].get("checksums")
        if not isinstance(sums, list) or len(sums) != len(self.manifest["chunks"]) or not isinstance(sums[index], str):
            raise StoreError(f"{self.root / 'manifest.json'} has no checksum of chunk {index} of {revision}: the "
                             f"manifest is damaged; re-run `{self.command}` to rebuild it from the chunk sidecars")
        return sums[index]

    # -- tokens ----------------------------------------------------------------------------
    def tokens(self, fd: int) -> dict:
        """The record of the open ``tokens.npy`` once its bytes match ``tokens_sha256``, else :class:`StoreError`."""
        record = file_record(os.fstat(fd))
        if self.manifest.get("tokens_file") != record:
            self._check_bytes(TOKENS, fd, record, self.manifest["tokens_sha256"],
                              f"{self.root / TOKENS} does not match the checksum the harvest recorded in "
                              f"manifest.json (tokens_sha256: damaged or replaced). A store's tokens cannot be repaired in place unless the corpus is "
                              f"unchanged: re-run `{self.command}` (it re-packs tokens.npy from the corpus and keeps "
                              f"it only if it matches), else harvest a new store")
        return record

    # -- hashing and the record of verified files ----------------------------------------------
    def _check_bytes(self, rel: str, fd: int, record: dict, expected: str, message: str) -> None:
        path, key = str((self.root / rel).resolve()), _key(record)
        known = _HASHED.get((path, key))
        if known is None:
            entry = self._cached().get(rel)
            if isinstance(entry, dict) and entry.get("file") == record and entry.get("sha256") == expected:
                _HASHED[(path, key)] = expected
                return
            known = _HASHED[(path, key)] = hash_fd(fd)
            if known == expected:
                self._cached()[rel] = {"file": record, "sha256": known}
                self._dirty = True
        if known != expected:
            raise StoreError(message)

    def _cached(self) -> dict[str, dict]:
        if self._cache is None:
            self._cache = read_cache(self.root)
        return self._cache

    def flush(self, force: bool = False) -> None:
        """Write ``.verified.json`` (at most every :data:`FLUSH_EVERY_S` unless ``force``)."""
        if not self._dirty or (not force and time.monotonic() - self._last_flush < FLUSH_EVERY_S):
            return
        if not self.root.is_dir():  # the store was moved or deleted: never re-create its folder
            return
        merged = {**read_cache(self.root), **(self._cache or {})}  # other readers' entries survive
        try:
            write_json(self.root / VERIFIED, {"format": CACHE_FORMAT, "files": merged})
        except OSError as err:  # a read-only store: correct, only slower (every process hashes again)
            if not self._warned:
                warnings.warn(f"cannot record verified files in {self.root / VERIFIED} ({err.strerror}); every new "
                              "process will hash the store's copied files again", stacklevel=3)
                self._warned = True
        self._dirty = False
        self._last_flush = time.monotonic()


def read_cache(root: Path) -> dict[str, dict]:
    """``.verified.json``'s entries; an unreadable one is empty (it only ever saves a hash, see ``_check_bytes``)."""
    try:
        data = json.loads((Path(root) / VERIFIED).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]
