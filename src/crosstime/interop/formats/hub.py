"""crosstime's own layout as a Hub-ready folder, and reading it back from a folder or the Hugging Face Hub.

A folder: ``model.safetensors`` + ``config.json`` (exactly :meth:`Crosscoder.save`, checksums
included), ``README.md`` (a model card whose YAML metadata states the series, revisions, site,
variant and F, the evaluation table per checkpoint when the run has one, and what ``crosstime
interpret`` found when it ran), ``interpret/explanations.csv`` and ``interpret/analysis.json`` (the
run's own, when ``crosstime interpret`` ran) and ``index.json`` (every file with its size, sha256
and what it holds). Read back with ``crosstime.interop.formats.read("hub", PATH or
"owner/name[:sub/folder]")``, which checks every file index.json lists against its sha256 (but the
card: a model card is edited on the Hub); a download honours ``HF_HUB_OFFLINE`` and fails with one
line when the Hub cannot be reached.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from crosstime.artifacts import INTERPRET, INTERPRET_ANALYSIS, INTERPRET_EXPLANATIONS
from crosstime.crosscoder import Crosscoder, CrosscoderError, load
from crosstime.crosscoder.model import CONFIG_FILE, WEIGHTS_FILE
from crosstime.evidence import ALL
from crosstime.files import sha256_file, write_bytes, write_json, write_text
from crosstime.hub import hub_offline, hub_unreachable
from crosstime.interop.formats.base import ExportInfo, Format, Imported, read_json_object, register_format
from crosstime.runs import INTERPRETATION, Interpretation, open_run

CARD, INDEX = "README.md", "index.json"
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
TABLE_COLUMNS = ("revision", "step", "tokens_seen", "explained_variance", "mse", "delta_ce", "ce_recovered", "kl")
# the interpret stage's outputs a Hub folder carries, at the paths they have in the run, and what they hold
INTERPRET_FILES = {
    f"{INTERPRET}/{INTERPRET_EXPLANATIONS.file}": "one row per feature and view (joint 'all', each checkpoint where "
                                                  "present): explanation, complexity 1-5, source, detection and "
                                                  "fuzzing balanced accuracy with shuffled baselines",
    f"{INTERPRET}/{INTERPRET_ANALYSIS}": "complexity against emergence onset and RelIE peak, scores per view",
}


def network_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises when the Hub is unreachable or refuses (its HTTP client varies by version)."""

    out: list[type[BaseException]] = [HfHubHTTPError, OSError]
    for module in ("httpx2", "httpx"):  # the transport's errors are not OSErrors
        try:
            out.append(__import__(module).HTTPError)
        except ImportError:
            continue
    return tuple(out)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def resolve(spec: str) -> Path:
    """The local folder ``spec`` names, or ``owner/name[:sub/folder]`` downloaded from the Hub (without a Hub:
    HF_HUB_OFFLINE, or no network, asked at once: from the local cache only, never huggingface_hub's retries)."""
    local = Path(spec)
    if local.exists():
        return local
    repo, _, sub = spec.partition(":")
    if not REPO_ID.match(repo):
        raise CrosscoderError(f"{spec} is neither a local folder nor a Hugging Face repo id (owner/name[:folder])")
    offline = hub_offline()
    unreachable = None if offline else hub_unreachable()
    try:
        root = snapshot_download(repo_id=repo, allow_patterns=[f"{sub.strip('/')}/*"] if sub else None,
                                 local_files_only=offline or unreachable is not None)
    except network_errors() as err:
        if isinstance(err, LocalEntryNotFoundError) and (offline or unreachable is not None):  # the cache was all
            why = ("HF_HUB_OFFLINE is set" if offline else
                   f"no network (cannot reach the Hugging Face Hub: {unreachable}; HF_HUB_OFFLINE=1 reads the cache "
                   "without trying the network)")
            raise CrosscoderError(f"cannot download {repo}: {why}, and {spec} is not in the local Hugging Face cache; "
                                  f"import a local folder, or download it where the Hub can be reached (`hf download "
                                  f"{repo}`)") from None
        raise CrosscoderError(f"could not download {repo} from the Hugging Face Hub ({first_line(err)}); check the "
                              "repo id, your network and token, or import a local folder") from err
    return Path(root) / sub.strip("/")


@register_format
class HubFormat(Format):
    name = "hub"
    summary = "crosstime's own files (model.safetensors + config.json) with a model card and index.json"
    activations = None  # crosstime's own files hold every registered variant

    def read(self, path: Path, revisions: list[str] | None = None, scales: list[float] | None = None) -> Imported:
        folder = resolve(str(path))
        verify_index(folder)
        model = load(folder).unfold_scales().eval()
        for given, recorded, what in ((revisions, model.revisions, "revisions"), (scales, model.scales, "scales")):
            if given is not None and list(given) != list(recorded or []):
                raise CrosscoderError(f"--{what} {given} differ from the {what} {folder / CONFIG_FILE} records "
                                      f"({recorded}); leave --{what} out")
        return Imported(model, ["crosstime's own files, checksum verified"], {"format": self.name, "path": str(path)})

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
        self.check_supports(model)
        out.mkdir(parents=True, exist_ok=True)
        interpretation = interpretation_of(info)
        model.unfolded().save(out, extra={"training": info.training} if info.training else None)
        write_text(out / CARD, card(model, info, interpretation))
        what = {WEIGHTS_FILE: "weights (W_enc [M, d, F], W_dec [F, M, d], b_enc [F], b_dec [M, d], variant buffers)",
                CONFIG_FILE: "architecture, revisions, scales; size and sha256 of model.safetensors",
                CARD: "model card (YAML metadata + evaluation per checkpoint)"}
        if interpretation is not None and info.run is not None:
            what |= INTERPRET_FILES
            for name in INTERPRET_FILES:  # the run's files as they are (read above, so checked against the record)
                write_bytes(out / name, (Path(info.run) / name).read_bytes())
        files = [out / name for name in what]
        write_json(out / INDEX, {"format": "crosstime-crosscoder", "variant": model.config.variant,
                                 "files": [{"file": name, "bytes": (out / name).stat().st_size,
                                            "sha256": sha256_file(out / name), "content": content}
                                           for name, content in what.items()]})
        return [*files, out / INDEX]


def interpretation_of(info: ExportInfo) -> Interpretation | None:
    """What ``crosstime interpret`` wrote in the exported run (None: no run given, or interpret did not run)."""
    if info.run is None:
        return None
    run = open_run(info.run)
    return run.read(INTERPRETATION) if run.has(INTERPRETATION) else None


def verify_index(folder: Path) -> None:
    """Every file ``folder``'s index.json lists is there with the sha256 it records (the card aside: a model
    card is meant to be edited on the Hub). A folder without index.json (saved by :meth:`Crosscoder.save`
    alone) has only the weights' own checksums in config.json, which loading checks."""
    index = folder / INDEX
    if not index.is_file():
        return
    for entry in read_json_object(index).get("files", []):
        name = str(entry["file"])
        if name == CARD:
            continue
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CrosscoderError(f"{index} lists {name!r}, which is not a file inside {folder}; the index is damaged")
        if not path.is_file():
            raise CrosscoderError(f"{path} is listed in {index} but missing; download the whole folder again")
        if sha256_file(path) != entry["sha256"]:
            raise CrosscoderError(f"{path} differs from the sha256 {index} records (changed after export); "
                                  "download the folder again")


def card(model: Crosscoder, info: ExportInfo, interpretation: Interpretation | None = None) -> str:
    """README.md: YAML metadata (series, revisions, site, variant, F), the evaluation table, then what
    ``crosstime interpret`` found (when it ran)."""
    c = model.config
    meta = {"library_name": "crosstime", "tags": ["crosscoder", "sparse-autoencoder", "interpretability"],
            "crosstime": {"series": info.model_name, "revisions": c.revisions, "site": info.site, "layer": info.layer,
                          "variant": c.variant, "n_features": c.n_features, "n_checkpoints": c.n_checkpoints,
                          "d_model": c.d_model, "scales": c.scales}}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
             f"# crosscoder over {c.n_checkpoints} checkpoints of {info.model_name or 'a model'}", "",
             f"A {c.variant} crosscoder with F = {c.n_features} features over d = {c.d_model} activations at "
             f"{info.site or 'an unrecorded site'}, trained jointly on checkpoints {', '.join(c.revisions or [])}.",
             "", "Load it with crosstime: `crosstime.interop.formats.read(\"hub\", \"REPO_ID\").model`, or "
             "`crosstime import hub REPO_ID --out RUN`.", "", "## Evaluation per checkpoint", ""]
    evaluation = info.evaluation
    if not evaluation:
        lines.append("The run had no evaluation (`crosstime evaluate RUN` before exporting adds it).")
    else:
        lines += ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
        lines += ["| " + " | ".join(_cell(row.get(k)) for k in TABLE_COLUMNS) + " |" for row in evaluation]
    if interpretation is not None:
        lines += ["", *interpret_section(interpretation)]
    return "\n".join(lines) + "\n"


def interpret_section(interpretation: Interpretation) -> list[str]:
    """The card's lines on the explanations: how many features are explained, by what, and the analysis's reading."""
    joint = [r for r in interpretation.explanations if r["view"] == ALL and r["explanation"]]
    by_source: dict[str, int] = {}
    for r in joint:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    per_view = sum(1 for r in interpretation.explanations if r["view"] != ALL and r["explanation"])
    sources = ", ".join(f"{n} by {source}" for source, n in sorted(by_source.items()))
    return ["## Explanations", "",
            (f"{len(joint)} of the {interpretation.analysis.n_features} features `crosstime interpret` chose have "
             f"an explanation of their joint activation ({sources or 'none'}), and {per_view} an explanation of a "
             "checkpoint alone; each with a complexity 1-5 and detection and fuzzing balanced accuracy on held-out "
             "contexts, in `interpret/explanations.csv` (the analysis in `interpret/analysis.json`)."), "",
            f"Complexity against emergence: {interpretation.analysis.reading}"]


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
