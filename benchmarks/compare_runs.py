"""Compare two run directories output by output: bit-identical files, or the one difference named.

    python benchmarks/compare_runs.py RUN_A RUN_B

What is compared (everything a stage writes), and what is left out as not part of the output:
- every file under activations/, crosscoder/ (weights compared tensor by tensor), evaluation/,
  attribution/, scan/, report/: byte for byte;
- JSON files (evaluation.json, summary.json, report/data.json, the store's manifest, the
  crosscoder's config.json): parsed, with wall-clock fields dropped (``timing``, ``seconds``,
  ``generated``, ``run`` paths, ``*_s`` timings, absolute paths) before comparing; the raw bytes are
  compared too and a difference there is reported as "json-equal, bytes differ";
- config.yaml is not compared (its format is the stage records' own, not an output); nor is the
  store's ``.verified.json`` (a reader's cache of the files it has checked).
Exit status 0 when every output is identical, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.numpy import load_file

VOLATILE_KEYS = {"timing", "seconds", "generated", "run", "since", "host", "pid", "crosscoder_path", "store_path",
                 "written_at", "created", "elapsed_s", "wall_s",
                 # a store's file records: the identity of the file on this file system (inode, times), and the
                 # seal, a checksum of its record including them; the bytes' own sha256 is compared
                 "ctime_ns", "mtime_ns", "ino", "seal"}


def scrub(value, roots: tuple[str, str]):
    """``value`` without wall-clock fields, with the two runs' absolute paths made equal."""
    if isinstance(value, dict):
        return {k: scrub(v, roots) for k, v in value.items() if k not in VOLATILE_KEYS and not k.endswith("_s")}
    if isinstance(value, list):
        return [scrub(v, roots) for v in value]
    if isinstance(value, str):
        return value.replace(roots[0], "RUN").replace(roots[1], "RUN")
    return value


def compare_file(a: Path, b: Path, roots: tuple[str, str]) -> str | None:
    """None when equal, else how they differ."""
    if a.read_bytes() == b.read_bytes():
        return None
    if a.suffix == ".safetensors":
        ta, tb = load_file(str(a)), load_file(str(b))
        if ta.keys() != tb.keys():
            return f"tensors differ in names: {sorted(ta.keys() ^ tb.keys())}"
        bad = [k for k in ta if ta[k].tobytes() != tb[k].tobytes() or ta[k].shape != tb[k].shape]
        if bad:
            return f"tensors differ: {bad}"
        with safe_open(str(a), "np") as fa, safe_open(str(b), "np") as fb:
            same_meta = fa.metadata() == fb.metadata()
        # safetensors writes its metadata map in hash order, which changes from one process to the next
        return ("tensors bit-identical, metadata equal; its order in the header differs" if same_meta else
                "tensors bit-identical; metadata differs")
    if a.suffix == ".jsonl":
        ra = [scrub(json.loads(line), roots) for line in a.read_text().splitlines() if line.strip()]
        rb = [scrub(json.loads(line), roots) for line in b.read_text().splitlines() if line.strip()]
        return "json-equal once wall-clock fields are dropped; bytes differ" if ra == rb else "jsonl differs"
    if a.suffix == ".json":
        ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
        if scrub(ja, roots) == scrub(jb, roots):
            return "json-equal once wall-clock fields and run paths are dropped; bytes differ"
        return "json differs"
    return "bytes differ"


def main(a: str, b: str) -> int:
    ra, rb = Path(a).resolve(), Path(b).resolve()
    roots = (str(ra), str(rb))
    files_a = {p.relative_to(ra) for p in ra.rglob("*") if p.is_file()}
    files_b = {p.relative_to(rb) for p in rb.rglob("*") if p.is_file()}
    skip = {Path("config.yaml"), Path(".crosstime.lock"), Path("activations/.verified.json")}
    worst = 0
    for rel in sorted((files_a | files_b) - skip):
        if rel not in files_a or rel not in files_b:
            print(f"only in {'A' if rel in files_a else 'B'}: {rel}")
            worst = 1
            continue
        how = compare_file(ra / rel, rb / rel, roots)
        if how is not None:
            print(f"{rel}: {how}")
            worst = max(worst, 0 if how.startswith(("json-equal", "tensors bit-identical, metadata equal")) else 1)
    print(f"{len(files_a)} files in A, {len(files_b)} in B: " + ("identical outputs" if worst == 0 else "DIFFERENT"))
    return worst


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
