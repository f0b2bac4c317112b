"""Corpus input: documents from a local file, folder or dataset, tokenised and packed into contexts.

Accepted corpus specs (all local, nothing is downloaded):

- a text file (``.txt`` or any other suffix): one document per non-empty line;
- a JSON-lines file (``.jsonl`` / ``.json``): one object per line, text in ``text_column``;
- a Hugging Face ``datasets`` dataset saved with ``save_to_disk`` (a folder with
  ``dataset_info.json`` or ``dataset_dict.json``): the ``text_column`` of its ``train`` split;
- the toy world (or any folder) with ``corpus/train.txt`` (and optionally
  ``corpus/heldout.txt``, used for the held-out split).

Packing (:func:`pack_contexts`). Every document is encoded the way its model saw text in
pretraining: ``tokenizer(text)`` with the tokenizer's own special tokens (the toy tokenizer
prepends ``<bos>``, Pythia's adds nothing). Where the encoding does not already start with
BOS, an EOS separator is appended after each document (the GPT-NeoX/Pythia convention);
the documents are concatenated into one stream and cut into contexts of ``context_len``.
When the tokenizer has a BOS token and ``bos_per_context`` is on (the default), every
context starts with BOS: if the next stream token is already BOS it is used, else BOS is
inserted. Position 0 therefore always holds the same token; it is the attention sink and
the store excludes it by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crosstime.errors import CrosstimeError


class CorpusError(CrosstimeError):
    """A corpus that cannot provide the requested tokens."""


@dataclass(frozen=True)
class Corpus:
    """A resolved corpus: where the training documents (and optional held-out documents) live."""

    kind: str  # "text", "jsonl", "hf_dataset"
    train: Path
    heldout: Path | None = None
    text_column: str = "text"

    def describe(self) -> dict:
        return {"kind": self.kind, "train": str(self.train), "heldout": str(self.heldout) if self.heldout else None,
                "text_column": self.text_column}


def _kind_of(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return "hf_dataset"
        raise CorpusError(
            f"corpus folder {path} is neither a saved Hugging Face dataset (dataset_info.json / dataset_dict.json) "
            "nor a folder with corpus/train.txt; pass a .txt, .jsonl or a datasets.save_to_disk folder"
        )
    if path.suffix in (".jsonl", ".json"):
        return "jsonl"
    return "text"


def resolve_corpus(spec: str | Path, text_column: str = "text") -> Corpus:
    """Resolve a corpus spec (file, dataset folder, or a folder holding ``corpus/train.txt``)."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise CorpusError(f"corpus {spec} does not exist; pass a .txt, .jsonl, a saved dataset folder or a toy world folder")
    for base in (path / "corpus", path):
        if base.is_dir() and (base / "train.txt").is_file():
            heldout = base / "heldout.txt"
            return Corpus("text", (base / "train.txt").resolve(), heldout.resolve() if heldout.is_file() else None, text_column)
    return Corpus(_kind_of(path), path.resolve(), None, text_column)


def iter_documents(path: Path, kind: str, text_column: str = "text") -> Iterator[str]:
    """Yield the non-empty documents of one corpus file or dataset, in order.

    A file that is not UTF-8 is a :class:`CorpusError` naming the first bad line."""
    if kind in ("text", "jsonl"):
        try:
            yield from (_text_lines if kind == "text" else _jsonl_records)(path, text_column)
        except UnicodeDecodeError as err:
            raise _not_utf8(path, err) from None
    elif kind == "hf_dataset":
        yield from _dataset_texts(path, text_column)
    else:  # pragma: no cover
        raise CorpusError(f"unknown corpus kind {kind!r}")


def _text_lines(path: Path, _text_column: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.strip():
                yield line


def _jsonl_records(path: Path, text_column: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{path}:{lineno} is not valid JSON ({err})") from err
            if not isinstance(record, dict) or text_column not in record:
                raise CorpusError(f"{path}:{lineno} has no {text_column!r} field; set text_column to the field holding the text")
            text = record[text_column]
            if text is None:  # a missing text, as a dataset's None: no document
                continue
            if not isinstance(text, str):
                raise CorpusError(f"{path}:{lineno}: the {text_column!r} field is a {type(text).__name__}, not a string; "
                                  "write the text as a JSON string")
            if text.strip():
                yield text


def _not_utf8(path: Path, err: UnicodeDecodeError) -> CorpusError:
    """The error of a corpus file that is not UTF-8, naming its first bad line."""
    fix = "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)"
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                return CorpusError(f"{path}:{lineno} is not UTF-8 text (byte {raw[bad.start:bad.start + 1]!r} at column "
                                   f"{bad.start + 1}: {bad.reason}); {fix}")
    return CorpusError(f"{path} is not UTF-8 text ({err.reason}); {fix}")


def _dataset_texts(path: Path, text_column: str) -> Iterator[str]:
    import datasets  # lazy: optional extra crosstime[datasets], for a save_to_disk corpus only

    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if "train" not in data:
            raise CorpusError(f"dataset {path} has splits {list(data)}, none named 'train'")
        data = data["train"]
    if text_column not in data.column_names:
        raise CorpusError(f"dataset {path} has columns {data.column_names}, no {text_column!r}; set text_column")
    for batch in data.iter(batch_size=1000):
        for text in batch[text_column]:
            if text and str(text).strip():
                yield str(text)


def _token_stream(documents: Iterator[str], tokenizer, batch_docs: int = 256) -> Iterator[np.ndarray]:
    """Encoded documents (each with its separator) as int arrays, in order."""
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id
    batch: list[str] = []

    def flush():
        for ids in tokenizer(batch, add_special_tokens=True)["input_ids"]:
            if not (bos is not None and ids and ids[0] == bos) and eos is not None and (not ids or ids[-1] != eos):
                ids = [*ids, eos]
            yield np.asarray(ids, dtype=np.int64)

    for doc in documents:
        batch.append(doc)
        if len(batch) >= batch_docs:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def pack_contexts(
    documents: Iterator[str],
    tokenizer,
    n_contexts: int,
    context_len: int,
    bos_per_context: bool = True,
    name: str = "corpus",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Pack documents into ``int32 [n_contexts, context_len]`` (see the module docstring).

    ``out``: a zero-filled int32 array of that shape to pack into (e.g. a memory-mapped file, so
    the token ids of a long run need not be held in memory); default a new in-memory array.
    Stops reading as soon as enough tokens are packed. Raises :class:`CorpusError` naming
    how many contexts the corpus holds when it is empty or too short.
    """
    if n_contexts <= 0:
        return np.zeros((0, context_len), dtype=np.int32)
    bos = tokenizer.bos_token_id if bos_per_context else None
    if bos is not None and context_len < 2:
        raise CorpusError("context_len must be at least 2 when each context starts with BOS")
    if out is None:
        out = np.zeros((n_contexts, context_len), dtype=np.int32)
    elif out.shape != (n_contexts, context_len) or out.dtype != np.int32:
        raise ValueError(f"out must be int32 [{n_contexts}, {context_len}], got {out.dtype} {list(out.shape)}")
    row, col = 0, 0
    n_docs = 0
    n_stream = 0
    for ids in _token_stream(documents, tokenizer):
        n_docs += 1
        n_stream += len(ids)
        i = 0
        while i < len(ids) and row < n_contexts:
            if col == 0 and bos is not None:
                out[row, 0] = bos
                col = 1
                if ids[i] == bos:  # the document's own BOS serves as the context's BOS
                    i += 1
                    continue
            take = min(context_len - col, len(ids) - i)
            out[row, col : col + take] = ids[i : i + take]
            col += take
            i += take
            if col == context_len:
                row, col = row + 1, 0
        if row >= n_contexts:
            return out
    if n_docs == 0:
        raise CorpusError(f"{name} is empty: it has no non-empty documents")
    raise CorpusError(
        f"{name} is too short: its {n_docs} documents give {n_stream} tokens = {row} full contexts of "
        f"{context_len} tokens, but {n_contexts} contexts ({n_contexts * context_len} tokens) were asked for. "
        f"Ask for at most {row * context_len} tokens (tokens + held-out tokens) or use a larger corpus."
    )
