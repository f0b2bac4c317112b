"""Other codebases' crosscoder files: read them into a crosstime :class:`Crosscoder`, write them back.

    from crosstime.interop.formats import read, write, known_formats, formats_supporting

    imported = read("cct", "checkpoints/version_3/20.pt")        # .model, .notes, .source
    write(model, "llamascopium", "out/")                          # the format's files
    formats_supporting("topk")                                    # ['hub', 'neuronpedia']

One module per format (:mod:`.cct`, :mod:`.llamascopium`, :mod:`.dictionary_learning`,
:mod:`.saelens`, :mod:`.hub`, :mod:`.neuronpedia`), each registering a :class:`~.base.Format`
with :func:`~.base.register_format`; every module of this package is imported here, so a new
format is one new file. Each declares the inference rules it can hold, so which variants it
supports comes from the variants' registered rules (:mod:`.base`). The key names, shapes and
traps of each format are in its module docstring.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from crosstime.crosscoder import Crosscoder
from crosstime.interop.formats.base import (
    FORMATS,
    ExportInfo,
    Format,
    Imported,
    formats_supporting,
    get_format,
    known_formats,
    register_format,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def read(format: str, path: str | Path, revisions: list[str] | None = None,
         scales: list[float] | None = None) -> Imported:
    """The crosscoder saved at ``path`` in ``format`` (normalised space, eval mode, revisions and scales
    recorded). ``revisions``/``scales``: for formats that do not record them (an error says when)."""
    return get_format(format, "read").read(Path(path), revisions, scales)


def write(model: Crosscoder, format: str, out: str | Path, info: ExportInfo | None = None) -> list[Path]:
    """Write ``model`` in ``format`` into the folder ``out``; the paths written. A variant the format
    cannot hold is one error naming the formats that can."""
    return get_format(format, "write").write(model, Path(out), info or ExportInfo())


__all__ = ["FORMATS", "ExportInfo", "Format", "Imported", "formats_supporting", "get_format", "known_formats",
           "read", "register_format", "write"]
