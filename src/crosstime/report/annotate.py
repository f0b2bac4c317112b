"""Human annotation of reported features: export a CSV, fill in ``description``, import it back.

    crosstime annotate RUN --export features.csv    # one row per reported feature, description empty
    crosstime annotate RUN --import features.csv    # descriptions -> RUN/report/annotations.json

The import validates the whole file first and names every bad line (a malformed row, a
quote that is never closed, a NUL or other control character — a line break included — in a
cell, a feature id that is not written in ASCII digits or not in the crosscoder, a feature given
twice); nothing is written unless the file is clean. The file must be UTF-8 (a BOM is fine).
Columns other than ``feature`` and ``description`` that the exported file did not have (e.g. a
``languages`` column you add) are kept as extra fields of the annotation, at most
:data:`MAX_EXTRA_COLUMNS` of them; two columns whose names differ only in case are an error. An
empty description removes that feature's annotation. When the run already has a dashboard, it
is re-rendered with the new descriptions, from ``report/data.json`` as the report stage wrote it
(its checksum is in the report's record; an edited file is refused, not re-rendered).

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (CSV
injection), so the export writes such a text cell with a ``'`` in front, as spreadsheets do
themselves; the import drops that one ``'`` again, so a round trip keeps the text.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from pathlib import Path
from typing import Any

from crosstime import stage
from crosstime.artifacts import (
    REPORT_ANNOTATIONS,
    REPORT_DATA,
    Annotations,
    FeatureEvidence,
    FeatureTables,
    ReportData,
    RunDir,
    read_model,
    write_model,
)
from crosstime.errors import CrosstimeError
from crosstime.files import not_a_file, write_text
from crosstime.ranking import reported_features
from crosstime.report.dashboard import collect, write_report
from crosstime.report.findings import findings
from crosstime.runs import CROSSCODER, REPORT, open_run

# Columns a user may add beyond the exported ones: enough for any annotation scheme, few enough
# that a file with thousands of columns (a paste gone wrong) is refused rather than stored.
MAX_EXTRA_COLUMNS = 32
FORMULA_START = ("=", "+", "-", "@")  # a cell a spreadsheet would run as a formula
FEATURE_ID = re.compile(r"-?[0-9]+")  # ASCII digits only: int() would also read '٥' and '1_0'

# Columns written by export (context for the annotator); never stored as annotation extras.
CONTEXT_COLUMNS = ("feature", "rank", "reldec_class", "trajectory", "onset", "relie_class", "relie_peak",
                   "top_tokens", "promoted_tokens", "description")


class AnnotationError(CrosstimeError):
    """A malformed annotation CSV; the message names the file and every bad line."""


def annotations_path(run: RunDir) -> Path:
    return run.report / REPORT_ANNOTATIONS


def read_annotations(run: RunDir | str | Path) -> dict[int, dict[str, Any]]:
    """``{feature: {"description": str, **extra}}`` from ``RUN/report/annotations.json`` (empty if none)."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    path = annotations_path(run)
    if not path.is_file():
        return {}
    return dict(read_model(Annotations, path).features)


def _report_data(run: RunDir) -> ReportData | None:
    """The last report's ``data.json``, or None before the first report."""
    opened = open_run(run.root)
    return opened.read(REPORT) if opened.has(REPORT) else None


def export_annotations(run: RunDir | str | Path, path: str | Path, n_features: int = 100) -> Path:
    """Write the reported features (those of the last ``crosstime report``, else the top
    ``n_features`` by the report's ranking) to ``path`` with a ``description`` column,
    pre-filled with existing annotations."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.root.is_dir():
        raise AnnotationError(f"run directory {run.root} does not exist")
    if Path(path).is_dir():
        raise AnnotationError(f"{path} is a folder; export to a file in it, e.g. {Path(path) / 'features.csv'}")
    existing = read_annotations(run)
    data = _report_data(run)
    if data is not None:
        listed = [(f, f.evidence) for f in data.features]
        ck = [c.revision for c in data.checkpoints]
        task = (data.tasks or [None])[0]
        vocab = data.vocab
    else:

        opened = open_run(run.root)
        base = collect(opened)
        ck = base.revisions
        task = (base.tasks or [None])[0]
        listed = [(base.features[i], None) for i in reported_features(opened, None, n_features)]
        vocab = {}
    if not listed:
        raise AnnotationError(f"{run.root} has no features to annotate: run `crosstime report {run.root}` "
                              "(or the evaluate/attribute stages) first")
    extras = sorted({k for a in existing.values() for k in a if k not in ("description",) and k not in CONTEXT_COLUMNS})
    header = list(CONTEXT_COLUMNS[:-1]) + extras + ["description"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for rank, (f, evidence) in enumerate(listed):
        ann = existing.get(int(f.id), {})
        row = _context(f, evidence, rank, ck, task, vocab) + [ann.get(k, "") for k in extras] + [ann.get("description", "")]
        writer.writerow([_escape_formula(cell) for cell in row])
    return write_text(path, buf.getvalue())


def _escape_formula(cell: object) -> object:
    """A text cell a spreadsheet would run as a formula, with ``'`` in front (numbers stay numbers)."""
    return "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_START) else cell


def _unescape_formula(cell: str) -> str:
    """The text of a cell :func:`_escape_formula` wrote (its one ``'`` dropped)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def _context(f: FeatureTables, evidence: FeatureEvidence | None, rank: int, ck: list[str], task: str | None,
             vocab: dict) -> list:
    """The ``CONTEXT_COLUMNS`` cells of one listed feature (before the extras and the description)."""
    t = f.tasks.get(task)
    relie = t.relie if t is not None else None
    peak = max(range(len(relie)), key=lambda m: relie[m] if relie[m] is not None else -1) if relie else None
    top = (evidence.top.get("all") or []) if evidence is not None else []
    at_max = list(dict.fromkeys(_token(vocab, w.tokens[w.position - w.start]) for w in top))
    top_tokens = " | ".join(at_max[:5])  # the first five distinct tokens at the top activations
    last = evidence.logit_lens.get(ck[-1]) if evidence is not None and ck else None
    promoted = " ".join(_token(vocab, p[0]) for p in (last.promoted[:5] if last is not None else []))
    onset = f.onset
    return [f.id, rank + 1, f.reldec_class or "", f.trajectory or "",
            ck[onset] if isinstance(onset, int) and 0 <= onset < len(ck) else "",
            (t.relie_class if t is not None else None) or "", ck[peak] if peak is not None and peak < len(ck) else "",
            top_tokens, promoted]


def _token(vocab: dict, token_id: int) -> str:
    return str(vocab.get(str(token_id), vocab.get(token_id, f"#{token_id}"))).strip() or repr(vocab.get(str(token_id), ""))


def _read_text(path: Path) -> str:
    """The CSV's text (UTF-8; a BOM from spreadsheet programs is dropped)."""
    if not path.is_file():
        raise AnnotationError(f"annotation file {path} {not_a_file(path)}; give the CSV file to import")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise AnnotationError(f"{path}, line {line}: not UTF-8 text (byte {data[err.start:err.start + 1]!r}); save "
                              "the CSV as UTF-8 (\"CSV UTF-8\" in spreadsheet programs)") from None


def _control_characters(row: list[str], names: list[str]) -> str | None:
    """What is wrong with the first cell holding a NUL or other control character (a line
    break included: a quote left open runs on into the next rows), or None."""
    for name, cell in zip(names, row):
        bad = sorted({c for c in cell if unicodedata.category(c) == "Cc"})
        if bad:
            shown = ", ".join(repr(c) for c in bad)
            hint = (" — a quote opened in this row is closed only rows later; close it (write \"\" for a quote "
                    "inside a quoted cell)" if "\n" in bad or "\r" in bad else "; remove it")
            return f"column {name or '(unnamed)'} contains the control character(s) {shown}{hint}"
    return None


def parse_annotations(path: str | Path, n_features: int | None = None) -> dict[int, dict[str, Any]]:
    """Validate and read an annotation CSV; raises :class:`AnnotationError` naming every bad line."""
    path = Path(path)
    text = _read_text(path)
    # strict: a stray quote is an error, not a cell that swallows the rows after it
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise AnnotationError(f"{path} is empty; export a template with `crosstime annotate RUN --export {path}`") from None
    except csv.Error as err:
        raise AnnotationError(f"{path}, line 1: {err}") from None
    names = [h.strip() for h in header]
    extra_cols = _check_header(path, names)
    lower = [h.lower() for h in names]
    i_feature, i_desc = lower.index("feature"), lower.index("description")
    errors: list[str] = []
    seen: dict[int, int] = {}
    out: dict[int, dict[str, Any]] = {}
    while True:
        line = reader.line_num + 1  # where the row starts (a quoted cell may span lines)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            errors.append(f"line {line}: malformed CSV ({err}, at line {reader.line_num}); check the quotes of this "
                          "row: a quote opened in a cell must be closed in it")
            break  # the reader cannot find where the next row starts
        if not row or all(not c.strip() for c in row):
            continue  # blank lines are fine
        control = _control_characters(row, names)
        if control is not None:
            errors.append(f"line {line}: {control}")
            continue
        if len(row) != len(names):
            errors.append(f"line {line}: expected {len(names)} fields ({', '.join(names)}), got {len(row)}"
                          + (" — quote descriptions that contain commas" if len(row) > len(names) else ""))
            continue
        feature = _feature_id(row[i_feature].strip(), line, n_features, seen, errors)
        if feature is None:
            continue
        seen[feature] = line
        entry: dict[str, Any] = {"description": _unescape_formula(row[i_desc].strip())}
        for k, name in extra_cols:
            if row[k].strip():
                entry[name] = _unescape_formula(row[k].strip())
        out[feature] = entry
    if errors:
        shown = errors[:20] + ([f"… and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise AnnotationError(f"{path} has {len(errors)} bad line(s); nothing was imported: " + "; ".join(shown))
    return out


def _check_header(path: Path, names: list[str]) -> list[tuple[int, str]]:
    """The extra columns ``(index, name)`` of a header whose columns are all known once; else the error."""
    lower = [n.lower() for n in names]
    missing = [c for c in ("feature", "description") if c not in lower]
    if missing:
        raise AnnotationError(f"{path}, line 1: the header lacks the column(s) {', '.join(missing)} "
                              f"(found: {', '.join(names) or 'nothing'}); export a template with `crosstime annotate RUN --export`")
    twice = sorted({n for n in lower if n and lower.count(n) > 1})
    if twice:
        shown = "; ".join(" and ".join(repr(n) for n in names if n.lower() == t) for t in twice)
        raise AnnotationError(f"{path}, line 1: the header names a column twice (names differing only in case are "
                              f"one column): {shown}; keep one of each")
    extra = [(k, n) for k, n in enumerate(names) if n.lower() not in CONTEXT_COLUMNS and n]
    if len(extra) > MAX_EXTRA_COLUMNS:
        raise AnnotationError(f"{path}, line 1: {len(extra)} extra columns beside the exported ones (at most "
                              f"{MAX_EXTRA_COLUMNS} are kept as annotation fields); remove the columns you did not mean to add")
    return extra


def _feature_id(raw: str, line: int, n_features: int | None, seen: dict[int, int], errors: list[str]) -> int | None:
    """The feature id of an annotation row, or None after appending what is wrong with it to ``errors``."""
    if not FEATURE_ID.fullmatch(raw):
        errors.append(f"line {line}: feature {raw!r} is not an integer feature id (write it in the digits 0-9)")
        return None
    feature = int(raw)
    if feature < 0 or (n_features is not None and feature >= n_features):
        bound = f"0..{n_features - 1}" if n_features is not None else "≥ 0"
        errors.append(f"line {line}: feature {feature} is out of range (the crosscoder's features are {bound})")
        return None
    if feature in seen:
        errors.append(f"line {line}: feature {feature} is listed again (first on line {seen[feature]})")
        return None
    return feature


def import_annotations(run: RunDir | str | Path, path: str | Path) -> dict[int, dict[str, Any]]:
    """Bring the descriptions of ``path`` into ``RUN/report/annotations.json`` and the dashboard.

    Features in the file replace their earlier annotation (an empty description removes
    it); features not in the file keep theirs. Returns the merged annotations.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.root.is_dir():
        raise AnnotationError(f"run directory {run.root} does not exist")
    data = _report_data(run)
    n_features = data.n_features_total if data is not None else _crosscoder_features(run)
    parsed = parse_annotations(path, n_features)
    with stage.lock(run, "annotate --import"):  # one writer per run directory
        merged = read_annotations(run)
        for feature, entry in parsed.items():
            if entry.get("description") or any(k != "description" for k in entry):
                merged[feature] = entry
            else:
                merged.pop(feature, None)
        write_model(Annotations(source=str(Path(path).resolve()), features={k: merged[k] for k in sorted(merged)}),
                    annotations_path(run))
        if data is not None:
            _rerender(run, data, merged)
    return merged


def _rerender(run: RunDir, data: ReportData, annotations: dict[int, dict[str, Any]]) -> None:
    """The dashboard again, with the new descriptions (and findings that quote them)."""

    apply_annotations(data, annotations)
    data.findings = findings(data, n=4)
    write_report(data, run.report)
    stage.rewrote(run, REPORT.ident(None), [run.report / REPORT_DATA])  # the record vouches for this data.json


def apply_annotations(data: ReportData, annotations: dict[int, dict[str, Any]]) -> None:
    """Set ``description`` (and ``annotation`` extras) on the dashboard data's features in place."""
    for f in data.features:
        ann = annotations.get(int(f.id))
        f.description = (ann or {}).get("description") or None
        f.annotation = {k: v for k, v in (ann or {}).items() if k != "description"} or None


def _crosscoder_features(run: RunDir) -> int | None:
    """F of the run's crosscoder (None without one: ids are then only checked to be ≥ 0)."""
    opened = open_run(run.root)
    return opened.crosscoder.n_features if opened.has(CROSSCODER) else None
