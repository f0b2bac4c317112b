"""The ``crosstime`` command line: one command per pipeline stage.

Every command is a thin shell over a stage function and its typed config, so the
Python API and the CLI do the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import yaml

from crosstime import __version__

app = typer.Typer(
    help="crosstime: sparse crosscoders over pretraining checkpoints — when does a model learn what?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"crosstime {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """crosstime: sparse crosscoders over pretraining checkpoints."""


@app.command()
def series(
    source: str = typer.Argument(..., help="A local series folder or a Hugging Face repo id."),
    revisions: Optional[list[str]] = typer.Option(None, "--revisions", help="Revision names (repeat or comma-separate); needed for OLMo."),
    tokens_per_step: Optional[int] = typer.Option(None, "--tokens-per-step", help="Label an unknown family's steps by tokens."),
) -> None:
    """List the checkpoints of a series: revision, step, tokens seen."""
    from rich.console import Console
    from rich.table import Table

    from crosstime.series import SeriesError, open_series

    names = [r for item in revisions or [] for r in item.split(",") if r] or None
    try:
        s = open_series(source, revisions=names, tokens_per_step=tokens_per_step)
    except SeriesError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(2) from err
    table = Table(title=f"{s.source} ({s.family}, {len(s)} checkpoints)")
    for col in ("revision", "step", "tokens", "label"):
        table.add_column(col, justify="right" if col != "revision" else "left")
    for c in s:
        table.add_row(c.revision, str(c.step), str(c.tokens), c.label)
    Console().print(table)


@app.command()
def scan(
    series: str = typer.Argument(..., help="A local series folder or a Hugging Face repo id."),
    tasks: Optional[list[str]] = typer.Option(None, "--tasks", help="Task names or .jsonl paths (repeat or comma-separate); 'toy' = the four toy tasks. Default: the series' pairs/, else subjectverb."),
    layer: int = typer.Option(..., "--layer", help="Decoder block whose output is compared across checkpoints."),
    out: Path = typer.Option(..., "--out", help="Run directory; results go to OUT/scan/."),
    revisions: Optional[list[str]] = typer.Option(None, "--revisions", help="Scan only these revisions (repeat or comma-separate)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Held-out text, one document per line (default: <series>/corpus/heldout.txt)."),
    train_corpus: Optional[Path] = typer.Option(None, "--train-corpus", help="Training text for unigram/bigram statistics (default: <series>/corpus/train.txt)."),
    similarity_source: str = typer.Option("tasks", "--similarity-on", help="Token positions for similarity: 'tasks' (task sentences) or 'corpus'."),
    n_suggest: int = typer.Option(3, "--suggest", help="How many checkpoints to suggest."),
    batch_size: int = typer.Option(64, "--batch-size"),
    device: str = typer.Option("cpu", "--device"),
    dtype: str = typer.Option("float32", "--dtype"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: 1 for small models on CPU, else torch's own)."),
    sentence_metric: bool = typer.Option(True, "--sentence/--no-sentence", help="Also the whole-sentence log-likelihood accuracy (lm-eval style)."),
) -> None:
    """Scan every checkpoint: task accuracy, representation similarity, training dynamics; suggest checkpoints."""
    from crosstime.scan import print_scan_summary, scan as run_scan, ScanConfig
    from pydantic import ValidationError

    from crosstime.scan import ScanError
    from crosstime.tasks import TaskError

    split = lambda items: [p.strip() for item in items or [] for p in item.split(",") if p.strip()] or None  # noqa: E731
    try:
        config = ScanConfig(series=series, tasks=split(tasks), layer=layer, out=out, revisions=split(revisions),
                            corpus=corpus, train_corpus=train_corpus, similarity_source=similarity_source,
                            n_suggest=n_suggest, batch_size=batch_size, device=device, dtype=dtype,
                            threads=threads, sentence_metric=sentence_metric)
        result = run_scan(config)
    except (ScanError, TaskError, ValidationError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    print_scan_summary(result)


@app.command()
def attribute(
    run: Path = typer.Argument(..., help="Run directory with activations/ and crosscoder/."),
    task: str = typer.Option(..., "--task", help="Task name (toy task, BLiMP paradigm, 'subjectverb') or a .jsonl path."),
    method: str = typer.Option("ig", "--method", help="IE estimator: ig (integrated gradients), atp, exact."),
    steps: int = typer.Option(10, "--steps", help="Integrated-gradient steps (midpoint rule)."),
    top_k: int = typer.Option(10, "--top-k", help="Features reported per checkpoint (by |IE|)."),
    baseline: str = typer.Option("zero", "--baseline", help="Ablation value: zero, or mean (the feature's mean on the task)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Zero per-token effects with |e| <= this (paper: 0.1)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per forward."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples over pairs (0: no CIs)."),
    ablation: bool = typer.Option(True, "--ablation/--no-ablation", help="Exact single-feature ablation of the reported features."),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Use only the first N pairs."),
    device: str = typer.Option("cpu", "--device"),
    dtype: str = typer.Option("float32", "--dtype"),
) -> None:
    """Per-checkpoint indirect effects of the crosscoder's features on a task; RelIE; ablation check."""
    from pydantic import ValidationError

    from crosstime.attribution.stage import AttributeConfig, AttributionError, attribute as run_attribute, print_attribution
    from crosstime.tasks import TaskError

    try:
        config = AttributeConfig(run=run, task=task, method=method, steps=steps, top_k=top_k, baseline=baseline,
                                 threshold=threshold, batch_size=batch_size, bootstrap=bootstrap, ablation=ablation,
                                 max_pairs=max_pairs, device=device, dtype=dtype)
        result = run_attribute(config)
    except (AttributionError, TaskError, ValidationError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    print_attribution(result)


def _count(text: str) -> int:
    """'1M' -> 1_000_000, '250K' -> 250_000, '2e6' -> 2_000_000."""
    text = text.strip().upper().replace("_", "")
    scale = {"K": 10**3, "M": 10**6, "B": 10**9}.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if scale > 1 else text) * scale)
    except ValueError as err:
        raise typer.BadParameter(f"{text!r} is not a token count (e.g. 1000000, 1M, 250K)") from err


def _settings(items: list[str] | None, config_cls, reserved: tuple[str, ...] = ()) -> dict:
    """``--set FIELD=VALUE`` options -> {field: value} for ``config_cls`` (values read as YAML: 0.5,
    true, [a, b]); the config validates them. Unknown or reserved fields are refused, listing the known."""
    known = sorted(set(config_cls.model_fields) - set(reserved))
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            why = "expected FIELD=VALUE" if not sep else f"{key!r} is not a setting here"
            raise typer.BadParameter(f"--set {item!r}: {why}; settings: {', '.join(known)}")
        out[key] = yaml.safe_load(value) if value.strip() else None
    return out


@app.command()
def harvest(
    series: str = typer.Argument(..., help="A local series folder or a Hugging Face repo id."),
    revisions: Optional[list[str]] = typer.Option(None, "--revisions", help="Checkpoints to harvest (repeat or comma-separate; default: all). Adding one to an existing store harvests only it."),
    layer: int = typer.Option(..., "--layer", help="Site: the output of decoder block L (= hidden_states[L+1])."),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Text (one document per line), .jsonl, saved HF dataset, or a folder with corpus/train.txt (default: the series folder)."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Training tokens to store, e.g. 1M (default: the existing store's, else 1M)."),
    heldout_tokens: Optional[str] = typer.Option(None, "--heldout-tokens", help="Held-out tokens (default: 5% of --tokens; the corpus' heldout.txt if it has one)."),
    out: Path = typer.Option(..., "--out", help="Run directory; the store goes to OUT/activations/."),
    context_len: Optional[int] = typer.Option(None, "--context-len", help="Tokens per context (default: min(1024, model positions))."),
    keep_first_position: Optional[bool] = typer.Option(None, "--keep-first-position/--drop-first-position", help="Keep position 0 (the attention sink); dropped by default."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Storage dtype: float16 (default) or bfloat16."),
    batch_size: int = typer.Option(16, "--batch-size", help="Contexts per forward pass."),
    chunk_contexts: Optional[int] = typer.Option(None, "--chunk-contexts", help="Contexts per chunk file (default: ~64 MiB)."),
    device: str = typer.Option("auto", "--device"),
    model_dtype: str = typer.Option("float32", "--model-dtype"),
    text_column: str = typer.Option("text", "--text-column", help="Text field of a JSONL file or dataset."),
) -> None:
    """Harvest site activations of checkpoints into a token-aligned store (resumable; works under torchrun)."""
    from pydantic import ValidationError

    from crosstime import distributed
    from crosstime.store.corpus import CorpusError
    from crosstime.rundir import RunDir
    from crosstime.series import SeriesError
    from crosstime.sites import LayerOutOfRange
    from crosstime.store import HarvestConfig, StoreError, harvest as run_harvest, resolve_config

    split = lambda items: [p.strip() for item in items or [] for p in item.split(",") if p.strip()] or None  # noqa: E731
    run = RunDir(out)
    try:
        config = HarvestConfig(series=series, revisions=split(revisions), layer=layer, corpus=corpus,
                               tokens=_count(tokens) if tokens else None,
                               heldout_tokens=_count(heldout_tokens) if heldout_tokens else None, context_len=context_len,
                               keep_first_position=keep_first_position, text_column=text_column, out=str(run.activations),
                               dtype=dtype, batch_size=batch_size, chunk_contexts=chunk_contexts, device=device,
                               model_dtype=model_dtype)
        config = resolve_config(config)  # unset settings from the existing store, else defaults
        if distributed.world().is_main:
            run.save_stage_config("harvest", config)
        store = run_harvest(config)
        if distributed.world().is_main:  # record every checkpoint the store now holds
            run.save_stage_config("harvest", config.model_copy(update={"revisions": store.revisions}))
    except (StoreError, CorpusError, SeriesError, LayerOutOfRange, ValidationError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    if distributed.world().is_main:
        typer.echo(f"{store.root}: {', '.join(store.revisions)}; layer {store.layer}, d={store.d_model}, "
                   f"{store.n_rows('train'):,} train + {store.n_rows('heldout'):,} held-out rows, "
                   f"{store.bytes_per_token:.0f} bytes/token, scales "
                   + ", ".join(f"{r}={s:.4g}" for r, s in store.scales.items()))


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory with activations/ and crosscoder/."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Held-out activation rows for reconstruction metrics, e.g. 100K (default: all)."),
    contexts: Optional[int] = typer.Option(None, "--contexts", help="Held-out contexts for ΔCE/KL (default: all; 0 skips splicing)."),
    crosscoder: Optional[Path] = typer.Option(None, "--crosscoder", help="Crosscoder folder (default: RUN/crosscoder)."),
    store: Optional[Path] = typer.Option(None, "--store", help="Activation store (default: RUN/activations)."),
    presence: float = typer.Option(0.5, "--presence", help="Trajectory presence threshold (share of a feature's max norm)."),
    dead_tokens: str = typer.Option("100K", "--dead-tokens", help="Tokens over which a never-firing latent is dead (held-out, topped up with train rows)."),
    context_batch_size: Optional[int] = typer.Option(None, "--context-batch-size", help="Contexts per forward pass (default: ~2048 tokens)."),
    device: str = typer.Option("auto", "--device"),
    model_dtype: str = typer.Option("float32", "--model-dtype"),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out context sample."),
) -> None:
    """Reconstruction (EV, L0, dead), splicing (ΔCE, KL) per checkpoint, RelDec classes and emergence."""
    from pydantic import ValidationError
    from rich.console import Console

    from crosstime.evaluate import EvaluateConfig, EvaluationError, evaluate as run_evaluate, format_table, paper_row

    try:
        config = EvaluateConfig(run=str(run), tokens=_count(tokens) if tokens else None, contexts=contexts,
                                crosscoder=str(crosscoder) if crosscoder else None, store=str(store) if store else None,
                                presence=presence, dead_tokens=_count(dead_tokens),
                                context_batch_size=context_batch_size, device=device, model_dtype=model_dtype,
                                plots=plots, seed=seed)
        result = run_evaluate(config)
    except (EvaluationError, ValidationError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    console = Console()
    console.print(format_table(result))
    console.print(paper_row(result))
    if result["summary"]["dead_window_tokens"] < _count(dead_tokens):
        console.print(f"[yellow]note: the store has only {result['summary']['dead_window_tokens']:,} tokens to count "
                      f"dead latents over (--dead-tokens {dead_tokens})[/yellow]")
    console.print(f"wrote {Path(run) / 'evaluation.json'} and {Path(run) / 'evaluation'}/")


@app.command()
def report(
    run: Path = typer.Argument(..., help="Run directory (any stages present are shown; missing ones are listed)."),
    features: Optional[list[str]] = typer.Option(None, "--features", help="Report exactly these feature ids (repeat or comma-separate)."),
    n_features: int = typer.Option(100, "--n-features", help="Features to report when --features is not given (largest Σ|IE|, else decoder norm)."),
    n_top: int = typer.Option(10, "--n-top", help="Top activating contexts per feature and checkpoint view."),
    split: str = typer.Option("heldout", "--split", help="Store split to stream over: heldout, train or all."),
    max_contexts: Optional[int] = typer.Option(4000, "--max-contexts", help="Stream at most this many contexts (0 = the whole split)."),
    per_checkpoint: bool = typer.Option(True, "--per-checkpoint/--joint-only", help="Also show each checkpoint encoded alone (M more encodes per batch)."),
    logit_lens: str = typer.Option("mean_activation", "--logit-lens", help="mean_activation, norm_weight or none."),
    series: Optional[str] = typer.Option(None, "--series", help="Checkpoint series for tokenizer and logit lens (default: the store's)."),
    device: str = typer.Option("cpu", "--device"),
    title: Optional[str] = typer.Option(None, "--title"),
) -> None:
    """Write RUN/report/index.html: one self-contained dashboard (overview + feature browser)."""
    from pydantic import ValidationError

    from crosstime.report import EvidenceConfig, ReportConfig, ReportError, report as run_report

    try:
        ids = [int(p) for item in features or [] for p in item.split(",") if p.strip()] or None
        config = ReportConfig(run=str(run), features=ids, n_features=n_features, series=series, title=title,
                              evidence=EvidenceConfig(n_top=n_top, split=split, max_contexts=max_contexts or None,
                                                      per_checkpoint=per_checkpoint, logit_lens=logit_lens, device=device))
        out = run_report(config)
    except (ReportError, ValidationError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(f"open {out}")


@app.command()
def annotate(
    run: Path = typer.Argument(..., help="Run directory."),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the reported features to this CSV (fill in `description`)."),
    import_: Optional[Path] = typer.Option(None, "--import", help="Read descriptions from this CSV into the run and its dashboard."),
    n_features: int = typer.Option(100, "--n-features", help="Features to export when the run has no report yet."),
) -> None:
    """Export reported features for annotation, or import the annotated CSV back."""
    from crosstime.report import AnnotationError, export_annotations, import_annotations

    if (export is None) == (import_ is None):
        typer.echo("error: give exactly one of --export FILE or --import FILE", err=True)
        raise typer.Exit(2)
    try:
        if export is not None:
            path = export_annotations(run, export, n_features=n_features)
            typer.echo(f"wrote {path}: fill in the `description` column, then `crosstime annotate {run} --import {path}`")
        else:
            merged = import_annotations(run, import_)
            typer.echo(f"imported {import_}: {len(merged)} annotated features in {Path(run) / 'report' / 'annotations.json'}")
    except AnnotationError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


@app.command()
def train(
    run: Path = typer.Argument(..., help="Run directory: reads RUN/activations, writes RUN/crosscoder."),
    revisions: Optional[list[str]] = typer.Option(None, "--revisions", help="Checkpoints to train on (default: all in the store; comma-separated or repeated)."),
    variant: str = typer.Option("relu", "--variant", help="relu | topk | batchtopk | jumprelu"),
    n_features: Optional[int] = typer.Option(None, "--features", help="Dictionary size F (default: expansion × d)."),
    expansion: int = typer.Option(8, "--expansion", help="F = expansion × d when --features is not given."),
    k: int = typer.Option(32, "--k", help="topk/batchtopk: active features per token."),
    l1_norm: str = typer.Option("sum", "--l1-norm", help="relu: sum of per-checkpoint decoder norms (papers) or concat."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: --tokens // --batch-size)."),
    tokens: str = typer.Option("400M", "--tokens", help="Training rows when --steps is not given (e.g. 400M)."),
    batch_size: int = typer.Option(4096, "--batch-size", help="Global batch (rows), split across torchrun ranks."),
    lr: float = typer.Option(5e-5, "--lr"),
    sparsity_coeff: float = typer.Option(2.0, "--sparsity-coeff", help="L1 (relu) / L0 (jumprelu) coefficient."),
    recon_reduce: str = typer.Option("sum", "--recon-reduce", help="sum (papers) or mean over checkpoints."),
    seed: int = typer.Option(0, "--seed"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 (autocast matmuls)."),
    device: str = typer.Option("cpu", "--device"),
    save_every: int = typer.Option(500, "--save-every", help="Steps between resume states."),
    val_every: int = typer.Option(100, "--val-every", help="Steps between held-out validations (0: never)."),
    wandb_project: Optional[str] = typer.Option(None, "--wandb", help="Also log to this Weights & Biases project."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to TensorBoard (RUN/crosscoder/tensorboard)."),
    settings: Optional[list[str]] = typer.Option(
        None, "--set", help="Any other training setting as FIELD=VALUE, repeatable (e.g. --set jumprelu_threshold_init=0.5 "
        "--set dead_tokens=1000000); the fields of crosstime.crosscoder.TrainConfig."),
) -> None:
    """Train a crosscoder on the run's activation store (resumes when re-run; works under torchrun)."""
    from pydantic import ValidationError

    from crosstime import distributed
    from crosstime.crosscoder import CrosscoderError, DataError, TrainConfig
    from crosstime.crosscoder import train as run_train
    from crosstime.rundir import RunDir

    split = lambda items: [p.strip() for item in items or [] for p in item.split(",") if p.strip()] or None  # noqa: E731
    rd = RunDir(run)
    try:
        from crosstime.store import StoreError
    except ImportError:  # pragma: no cover
        StoreError = DataError  # noqa: N806
    try:
        if not (rd.activations / "manifest.json").exists():
            raise DataError(f"{run} has no activation store (activations/manifest.json); run `crosstime harvest` first")
        flags = dict(variant=variant, n_features=n_features, expansion=expansion, k=k, l1_norm=l1_norm, steps=steps,
                     tokens=_count(tokens), batch_size=batch_size, lr=lr, sparsity_coeff=sparsity_coeff,
                     recon_reduce=recon_reduce, seed=seed, precision=precision, device=device,
                     revisions=split(revisions), save_every=save_every, val_every=val_every,
                     wandb_project=wandb_project, tensorboard=tensorboard)
        config = TrainConfig(**{**flags, **_settings(settings, TrainConfig, reserved=("out",))}, out=str(rd.crosscoder))
        if distributed.world().is_main:
            rd.save_stage_config("train", config)
        model = run_train(rd.activations, config)
    except (DataError, CrosscoderError, StoreError, ValidationError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    if distributed.world().is_main:
        typer.echo(f"{rd.crosscoder}: {model.config.variant} crosscoder, M={model.n_checkpoints} "
                   f"({', '.join(model.revisions or [])}), d={model.d_model}, F={model.n_features}")


toy_app = typer.Typer(help="The embedded toy world: agreement grammar, minimal pairs, tiny pretrained GPT-NeoX.",
                      no_args_is_help=True)
app.add_typer(toy_app, name="toy")


@toy_app.command("build")
def toy_build(
    out: Path = typer.Option(..., "--out", help="Folder to create (a local checkpoint series plus corpus/, pairs/, build.json)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the grammar, pairs, weights and data order (same seed: same weights)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Pretraining steps (default: ToyConfig's)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (fixed for determinism; default 1, robust on a busy machine; 2 is faster on idle cores)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Build the toy world: grammar corpus, minimal pairs, and a tiny GPT-NeoX pretrained at Pythia-style steps."""
    from crosstime.toy import ToyConfig, build_toy_world, read_build

    settings = {"seed": seed, **({"steps": steps} if steps else {}), **({"threads": threads} if threads else {})}
    config = ToyConfig(**settings)
    if out.exists() and not force:
        raise typer.BadParameter(f"{out} already exists; choose another --out or pass --force", param_hint="--out")
    root = build_toy_world(out, config, progress=progress, overwrite=force)
    build = read_build(root)
    final = list(build["accuracy"])[-1]
    accs = ", ".join(f"{k} {v:.0%}" for k, v in build["accuracy"][final].items())
    typer.echo(f"toy world in {root} ({build['timing']['total_s']:.0f} s); {final}: {accs}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory (re-running reuses finished stages)."),
    tasks: Optional[list[str]] = typer.Option(None, "--tasks", help="Toy tasks to attribute (default: all four)."),
    train_steps: Optional[int] = typer.Option(None, "--train-steps", help="Crosscoder training steps."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run the whole pipeline on the toy world and open the door to its dashboard."""
    from rich.console import Console
    from rich.table import Table

    from crosstime.demo import DemoConfig
    from crosstime.demo import demo as run_demo

    settings = {"out": out, "progress": progress}
    if tasks:
        settings["tasks"] = [t for item in tasks for t in item.split(",") if t]
    if train_steps:
        settings["train_steps"] = train_steps
    console = Console()
    result = run_demo(DemoConfig(**settings), console=console)
    table = Table(title="time by stage")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in result.timings.items():
        table.add_row(name + (" (reused)" if name in result.reused else ""), f"{seconds:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(result.timings.values()):.1f}")
    console.print(table)
    console.print("\n[bold]Findings[/bold]")
    for i, line in enumerate(result.findings, 1):
        console.print(f"{i}. {line}")
    console.print(f"\nDashboard: [bold]{result.dashboard.resolve()}[/bold]")


if __name__ == "__main__":  # pragma: no cover
    app()
