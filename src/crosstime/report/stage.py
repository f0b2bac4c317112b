"""The report stage: ``crosstime report RUN`` -> ``RUN/report/index.html``.

Reads whatever stages the run has (each optional), picks the reported features, gathers
their evidence from the activation store and the crosscoder, and writes:

    RUN/report/index.html      the self-contained dashboard (open it in any browser, offline)
    RUN/report/data.json       the data embedded in it (re-rendered by `crosstime annotate --import`)
    RUN/report/annotations.json (written by `crosstime annotate --import`; read here)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from crosstime.files import write_json
from crosstime.report.annotate import DATA, apply_annotations, read_annotations
from crosstime.report.dashboard import collect, now, rank_features, render
from crosstime.report.evidence import EvidenceConfig, feature_evidence
from crosstime.report.findings import findings, main_task
from crosstime.rundir import RunDir


class ReportError(ValueError):
    pass


class ReportConfig(BaseModel):
    """Settings of the report stage (shared by ``crosstime report`` and the Python API)."""

    run: str = Field(description="run directory")
    features: list[int] | None = Field(None, description="report exactly these feature ids (default: the top n_features)")
    n_features: int = Field(100, ge=1, description="how many features to report when `features` is not given: "
                                                   "the largest Σ_m |IE_m| over tasks, else the largest decoder norms")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    series: str | None = Field(None, description="checkpoint series for the tokenizer and logit lens "
                                                 "(default: the one recorded in the activation store)")
    title: str | None = None
    progress: bool = True


def load_crosscoder(path: Path):
    from crosstime.crosscoder import load

    return load(path)


def _heads(series):
    from crosstime.sites import final_norm, unembedding

    def load(revision: str):
        model = series.load_model(revision)
        return final_norm(model), unembedding(model)

    return load


def token_strings(tokenizer, ids: list[int]) -> dict[str, str]:
    """Display text of each token id. Word-level tokenizers (no decoder) get a leading space
    so that a window of tokens reads as words."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    word_level = backend is not None and backend.decoder is None
    out = {}
    for i in ids:
        text = tokenizer.decode([int(i)], clean_up_tokenization_spaces=False)
        if word_level and text and not text[0].isspace():
            text = " " + text
        out[str(int(i))] = text
    return out


def _normalised_norms(crosscoder, store) -> torch.Tensor:
    """Decoder norms ``[F, M]`` in the normalised space RelDec is defined in.

    A folded decoder holds ``W_dec[i, m] / s_m``; multiplying its norms by ``s_m`` undoes that.
    """
    from crosstime.shares import decoder_norms
    from crosstime.report.evidence import is_folded

    if hasattr(crosscoder, "decoder_norms"):  # crosstime.crosscoder measures them in normalised space
        return crosscoder.decoder_norms().detach().float().cpu()
    norms = decoder_norms(crosscoder.W_dec.detach().float().cpu())
    if store is not None and is_folded(crosscoder):
        norms = norms * torch.tensor([float(store.scales[r]) for r in store.revisions])[None, :]
    return norms


def report(config: ReportConfig, crosscoder: Any = None, store: Any = None) -> Path:
    """Build ``RUN/report/index.html`` (and ``data.json``); returns the HTML path.

    ``crosscoder`` / ``store`` may be passed in (e.g. by a caller that has them in memory);
    by default they are loaded from ``RUN/crosscoder`` and ``RUN/activations`` when present.
    """
    t0 = time.time()
    run = RunDir(config.run)
    if not run.root.is_dir():
        raise ReportError(f"run directory {run.root} does not exist; run the pipeline first (e.g. `crosstime demo`)")
    base = collect(run)
    ck = base["checkpoints"]
    revisions = [c["revision"] for c in ck]
    missing = list(base["missing"])
    if store is None and (run.activations / "manifest.json").is_file():
        from crosstime.store import ActivationStore

        store = ActivationStore(run.activations)
    if crosscoder is None and (run.crosscoder / "model.safetensors").is_file():
        crosscoder = load_crosscoder(run.crosscoder)
    if crosscoder is not None:
        crosscoder = crosscoder.eval() if hasattr(crosscoder, "eval") else crosscoder
        M_cc = int(crosscoder.W_dec.shape[1])
        if store is not None and M_cc != len(store.revisions):
            raise ReportError(f"the crosscoder in {run.crosscoder} spans {M_cc} checkpoints but the activation store "
                              f"{run.activations} holds {len(store.revisions)} ({', '.join(store.revisions)}); "
                              "re-train the crosscoder on this store or point the run at the matching store")
        recorded = getattr(crosscoder, "revisions", None)
        if store is not None and isinstance(recorded, list) and recorded != list(store.revisions):
            raise ReportError(f"the crosscoder was trained on checkpoints {recorded} but the activation store holds "
                              f"{store.revisions}; use the store it was trained on")
        if ck and M_cc != len(ck):
            raise ReportError(f"the crosscoder spans {M_cc} checkpoints but the run lists {len(ck)} ({', '.join(revisions)})")
    if crosscoder is not None:  # passed in memory: not missing
        missing = [m for m in missing if not m.startswith("crosscoder/")]
    if store is not None:
        missing = [m for m in missing if not m.startswith("activations/")]
    features = base["all_features"]
    norms = _normalised_norms(crosscoder, store) if crosscoder is not None else None
    n_total = int(crosscoder.W_dec.shape[0]) if crosscoder is not None else (max(features) + 1 if features else 0)
    if config.features is not None:
        bad = [i for i in config.features if not 0 <= i < max(n_total, 1)] if n_total else []
        if bad:
            raise ReportError(f"--features {bad[:5]} out of range: the crosscoder has {n_total} features (0..{n_total - 1})")
        chosen = list(dict.fromkeys(int(i) for i in config.features))
    else:
        pool = dict(features)
        if norms is not None:
            for i in range(norms.shape[0]):
                pool.setdefault(i, {"id": i, "tasks": {}})
        norm_map = {i: norms[i].tolist() for i in pool} if norms is not None else None
        chosen = rank_features(pool, base["tasks"], norm_map)[: config.n_features]
    rows = []
    if norms is not None:
        from crosstime.shares import classify_shares, relative_shares, trajectories

        sel = torch.tensor(chosen, dtype=torch.long)
        sub = norms[sel] if len(chosen) else torch.zeros(0, len(revisions))
        shares = relative_shares(sub) if len(chosen) else sub
        classes = classify_shares(shares, revisions) if len(chosen) else []
        traj = trajectories(sub) if len(chosen) else None
    for k, i in enumerate(chosen):
        entry = dict(features.get(i) or {"id": i, "tasks": {}})
        entry["id"] = i
        entry["rank"] = k + 1
        if norms is not None:
            entry["norms"] = [round(float(v), 6) for v in sub[k]]
            entry.setdefault("reldec", None)
            if entry.get("reldec") is None:
                entry["reldec"] = [round(float(v), 6) for v in shares[k]]
                entry["reldec_class"] = entry.get("reldec_class") or classes[k]
            for key, tensor in (("onset", traj.onset), ("peak", traj.peak), ("offset", traj.offset)):
                if entry.get(key) is None and int(tensor[k]) >= 0:
                    entry[key] = int(tensor[k])
            entry.setdefault("trajectory", None)
            entry["trajectory"] = entry["trajectory"] or traj.labels[k]
        rows.append(entry)
    evidence_meta = None
    views: list[str] = []
    token_ids: list[int] = []
    series = None
    source = config.series or (store.manifest.get("series", {}).get("source") if store is not None else None)
    if source:
        try:
            from crosstime.series import open_series

            series = open_series(source, revisions=store.revisions if store is not None else None)
        except Exception as err:  # the series may live on another machine; the report still works
            missing.append(f"checkpoint series {source!r} could not be opened ({err}): no logit lens, token ids shown")
    if store is not None and crosscoder is not None and chosen:
        heads = _heads(series) if series is not None and config.evidence.logit_lens != "none" else None
        if heads is not None:
            try:  # fail early (before streaming) when the checkpoints cannot be loaded here
                heads(store.revisions[0])
            except Exception as err:
                missing.append(f"checkpoints of {source!r} could not be loaded ({err}): no logit lens")
                heads = None
        ev = feature_evidence(store, crosscoder, chosen, config.evidence, heads=heads, progress=config.progress)
        for entry in rows:
            entry["evidence"] = ev["features"].get(str(entry["id"]))
        views = ev["views"]
        token_ids = ev["token_ids"]
        evidence_meta = {k: ev[k] for k in ("n_rows", "n_contexts", "contexts", "logit_lens_method", "config")}
    vocab: dict[str, str] = {}
    if token_ids:
        vocab = {str(i): f" #{i}" for i in token_ids}  # fallback: ids
        if series is not None:
            try:
                tokenizer = series.load_tokenizer(revisions[-1] if revisions else None)
                vocab = token_strings(tokenizer, token_ids)
            except Exception as err:
                missing.append(f"the tokenizer of {source!r} could not be loaded ({err}): token ids shown")
    data = {
        "title": config.title or f"crosstime — {run.root.resolve().name}",
        "generated": now(),
        "run": str(run.root.resolve()),
        "checkpoints": ck,
        "tasks": base["tasks"],
        "missing": missing,
        "overview": base["overview"],
        "features": rows,
        "n_features_total": n_total,
        "views": views,
        "vocab": vocab,
        "evidence_meta": evidence_meta,
    }
    apply_annotations(data, read_annotations(run))
    data["main_task"] = main_task(data)
    data["findings"] = findings(data, n=4)
    write_json(run.report / DATA, data)
    out = render(data, run.report / "index.html")
    run.save_stage_config("report", config)
    if config.progress:
        print(f"wrote {out} ({len(rows)} features, {len(ck)} checkpoints) in {time.time() - t0:.1f}s")
    return out
