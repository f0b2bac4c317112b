"""crosstime's own layout as a Hub-ready folder, and reading it back from a folder or the Hugging Face Hub.

A folder: ``model.safetensors`` + ``config.json`` (exactly :meth:`Crosscoder.save`, checksums
included), ``README.md`` (a model card whose YAML metadata states the series, revisions, site,
variant and F, and the evaluation table per checkpoint when the run has one) and
``index.json`` (every file with its size, sha256 and what it holds). Read back with
``crosstime.interop.formats.read("hub", PATH or "owner/name[:sub/folder]")``; a download honours
``HF_HUB_OFFLINE`` and fails with one line when the Hub cannot be reached.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from crosstime.crosscoder import Crosscoder, CrosscoderError, load
from crosstime.crosscoder.model import CONFIG_FILE, WEIGHTS_FILE
from crosstime.files import sha256_file, write_json, write_text
from crosstime.hub import hub_offline, hub_unreachable
from crosstime.interop.formats.base import ExportInfo, Format, Imported, register_format

CARD, INDEX = "README.md", "index.json"
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
TABLE_COLUMNS = ("revision", "step", "tokens_seen", "explained_variance", "mse", "delta_ce", "ce_recovered", "kl")


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
        model = load(folder).unfold_scales().eval()
        for given, recorded, what in ((revisions, model.revisions, "revisions"), (scales, model.scales, "scales")):
            if given is not None and list(given) != list(recorded or []):
                raise CrosscoderError(f"--{what} {given} differ from the {what} {folder / CONFIG_FILE} records "
                                      f"({recorded}); leave --{what} out")
        return Imported(model, ["crosstime's own files, checksum verified"], {"format": self.name, "path": str(path)})

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
        self.check_supports(model)
        out.mkdir(parents=True, exist_ok=True)
        model.unfolded().save(out, extra={"training": info.training} if info.training else None)
        write_text(out / CARD, card(model, info))
        files = [out / WEIGHTS_FILE, out / CONFIG_FILE, out / CARD]
        what = {WEIGHTS_FILE: "weights (W_enc [M, d, F], W_dec [F, M, d], b_enc [F], b_dec [M, d], variant buffers)",
                CONFIG_FILE: "architecture, revisions, scales; size and sha256 of model.safetensors",
                CARD: "model card (YAML metadata + evaluation per checkpoint)"}
        write_json(out / INDEX, {"format": "crosstime-crosscoder", "variant": model.config.variant,
                                 "files": [{"file": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p),
                                            "content": what[p.name]} for p in files]})
        return [*files, out / INDEX]


def card(model: Crosscoder, info: ExportInfo) -> str:
    """README.md: YAML metadata (series, revisions, site, variant, F), then the evaluation table."""
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
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
