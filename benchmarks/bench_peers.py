"""crosstime's training step against the other tools' own training steps, on the same planted data.

    pip install -e '.[peers]'   # or a venv: python -m venv --system-site-packages V && V/bin/pip install ...
    python benchmarks/bench_peers.py                   # both widths; prints one markdown section
    python benchmarks/bench_peers.py --quick           # d = 128 only, few steps (a smoke run, numbers rough)
    python benchmarks/bench_peers.py --sizes d768 --variants topk --reps 2

For every variant crosstime shares with a peer, each contender trains from its own initialisation on
the same batches (planted features from ``benchmarks/planted_variants.py``: K unit directions over
``[M, d]``, ~16 active per row, normalised like the store so E‖x_m‖ = √d):

- ms/step: each contender's whole optimiser step (forward, loss, backward, clipping, optimiser,
  its own bookkeeping), three ways: at initialisation (best of ``--reps`` interleaved rounds), the
  mean over the ``--ev-steps`` training steps (interleaved step by step: what a run of that length
  costs, its early dense steps included), and trained (best of ``--reps`` after those steps). A trained
  crosscoder's code is sparse, and crosstime's ReLU and JumpReLU steps then run sparse products
  (``crosstime.crosscoder.sparse_products``); every peer's step is dense whatever the state.
  ``--peers-untrained`` trains crosstime alone and times the peers at initialisation (d = 768, where
  training every peer costs hours);
- peak memory: in a fresh subprocess per contender, the peak RSS over building the model and
  optimiser and three steps, minus the RSS before building (weights + optimiser state + the step's
  transients);
- held-out EV after ``--ev-steps`` steps (the same batches in the same order for everyone):
  1 − Σ(x̂ − x)² / Σ(x − x̄)² on 4,096 held-out rows, with the L0 it was reached at (mean active
  features per held-out row, eval mode: a dense code buys EV with L0).

Each peer's step is its own code: sae-lens ``SAETrainer.step`` (the public seam its ``fit`` uses);
dictionary-learning ``trainer.update(step, x)``; sparsify the body of its ``Trainer.fit`` step
(first step: ``b_dec`` = the batch mean; ``set_decoder_norm_to_unit_norm``, ``SparseCoder.forward``, the fvu loss, ``backward``,
``remove_gradient_parallel_to_decoder_directions``, its default optimiser); llamascopium the body of
its ``Trainer.fit`` loop (``_training_step`` → ``compute_loss``, backward, its clip, optimiser and
scheduler; metrics logging skipped as ``skip_metrics_calculation=True`` does). Only llamascopium has
a crosscoder; the others train an SAE over the concatenated checkpoints ``[B, M·d]`` (the table's
"kind" column). dictionary-learning 0.1.0 (the only version on PyPI) has no CrossCoder class.
crosstime's step is ``Trainer.train_step`` (what ``fit`` runs each step: the variant's recipe,
metrics moments, clipping, fused Adam, dead-feature bookkeeping), so faster recipes are picked up.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from crosstime import distributed
from crosstime.crosscoder import TrainSettings
from crosstime.crosscoder.training import make_trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # found through sys.path
from planted_variants import planted  # found through sys.path

SIZES = {"d128": {"M": 3, "d": 128, "F": 4096, "B": 1024, "K": 1024},
         "d768": {"M": 4, "d": 768, "F": 16384, "B": 1024, "K": 4096}}
K_ACTIVE = 32  # k of the TopK family
PLANTED_ACTIVE = 16.0  # planted directions active per row (below k, as in a real dictionary's L0)
LR = 1e-3  # every Adam-trained contender; sparsify's default optimiser (signum) keeps its own lr
HELD = 4096
MAX_BATCHES = 320  # distinct training batches (d = 768: 320 × 1,024 rows × 4 × 768 fp32 = 4 GB)
SHARED = {  # variant -> the peers that train it
    "relu": ["dictionary-learning", "sae-lens"],
    "topk": ["sparsify", "sae-lens", "dictionary-learning"],
    "batchtopk": ["sae-lens", "dictionary-learning"],
    "jumprelu": ["llamascopium", "sae-lens", "dictionary-learning"],
    "matryoshka": ["sae-lens", "dictionary-learning"],
}
DIST = {"crosstime": "crosstime", "sae-lens": "sae-lens", "dictionary-learning": "dictionary-learning",
        "sparsify": "eai-sparsify", "llamascopium": "llamascopium"}
CONCAT = "SAE over concat [B, M·d]"


@dataclasses.dataclass
class Contender:
    """One tool's training for one variant: ``step(x [B, M, d])`` runs its own optimiser step,
    ``reconstruct(x [N, M, d])`` its eval-mode reconstruction ``[N, M, d]`` and L0 (mean active features per row)."""

    tool: str
    kind: str
    settings: str
    step: Callable[[torch.Tensor], None]
    reconstruct: Callable[[torch.Tensor], tuple[torch.Tensor, float]]


def l0(f: torch.Tensor) -> float:
    """Mean count of active (> 0) entries per row of ``f [N, F]`` (or ``[N, k]`` for sparsify's top-k)."""
    return float((f > 0).sum(-1).float().mean())


def flat(x: torch.Tensor) -> torch.Tensor:
    """[B, M, d] -> [B, M·d]: the concatenated checkpoints an SAE sees."""
    return x.reshape(x.shape[0], -1)


# -- crosstime -----------------------------------------------------------------------------------

CT_VARIANT = {"relu": {}, "topk": {"k": K_ACTIVE}, "batchtopk": {"k": K_ACTIVE}, "jumprelu": {},
              "matryoshka": {"k": K_ACTIVE}}


def crosstime_contender(variant: str, sz: dict, steps: int, data: torch.Tensor) -> Contender:
    """``Trainer.train_step``, the step ``fit`` runs; the trainer is built by ``make_trainer`` as ``fit`` builds it."""
    s = TrainSettings(variant=variant, variant_settings=CT_VARIANT[variant], n_features=sz["F"], batch_size=sz["B"],
                      steps=steps, lr=LR, lr_decay_frac=0.0, val_every=0, progress=False, device="cpu", seed=0)
    trainer = make_trainer(data, s, None, None, distributed.join("cpu"))
    trainer.model.train()

    def step(x):
        trainer.train_step(x)
        trainer.step += 1

    @torch.no_grad()
    def reconstruct(x):
        trainer.model.eval()
        f = trainer.model.encode(x)
        trainer.model.train()
        return trainer.model.decode(f), l0(f)

    return Contender("crosstime", "crosscoder", f"{variant} {CT_VARIANT[variant]} lr {LR:g}, const lr, λ/θ defaults",
                     step, reconstruct)


# -- sae-lens ------------------------------------------------------------------------------------

def saelens_contender(variant: str, sz: dict, steps: int) -> Contender:
    """sae-lens's training SAE of the variant and its ``SAETrainer.step`` (Adam, clip 1.0, schedulers)."""
    # lazy: an optional extra (peers)
    import sae_lens.saes as S
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    n, F = sz["M"] * sz["d"], sz["F"]
    widths = [F // 16, F // 4, F]  # crosstime matryoshka's default prefixes
    cfg, cls = {
        "relu": (S.StandardTrainingSAEConfig(d_in=n, d_sae=F), S.StandardTrainingSAE),
        "topk": (S.TopKTrainingSAEConfig(d_in=n, d_sae=F, k=K_ACTIVE), S.TopKTrainingSAE),
        "batchtopk": (S.BatchTopKTrainingSAEConfig(d_in=n, d_sae=F, k=K_ACTIVE), S.BatchTopKTrainingSAE),
        "jumprelu": (S.JumpReLUTrainingSAEConfig(d_in=n, d_sae=F), S.JumpReLUTrainingSAE),
        "matryoshka": (S.MatryoshkaBatchTopKTrainingSAEConfig(d_in=n, d_sae=F, k=K_ACTIVE, matryoshka_widths=widths),
                       S.MatryoshkaBatchTopKTrainingSAE),
    }[variant]
    torch.manual_seed(0)
    sae = cls(cfg)
    trainer = SAETrainer(SAETrainerConfig(total_training_samples=steps * sz["B"], train_batch_size_samples=sz["B"],
                                          lr=LR, lr_end=LR), sae, data_provider=iter(()))

    def step(x):
        trainer.step(flat(x))
        trainer.n_training_steps += 1  # as its fit() does after each step

    @torch.no_grad()
    def reconstruct(x):
        sae.eval()
        f = sae.encode(flat(x))
        out = sae.decode(f).view_as(x)
        sae.train()
        return out, l0(f)

    extra = {"matryoshka": f", widths {widths}", "jumprelu": ", step L0, θ₀ 0.01, bandwidth 0.05"}.get(variant, "")
    return Contender("sae-lens", CONCAT, f"{cls.__name__}, defaults{extra}, lr {LR:g} const", step, reconstruct)


# -- dictionary-learning -------------------------------------------------------------------------

def dl_contender(variant: str, sz: dict, steps: int) -> Contender:
    """dictionary-learning's trainer of the variant and its ``update(step, x)``."""
    # lazy: an optional extra (peers)
    from dictionary_learning.trainers import (
        batch_top_k,
        jumprelu,
        matryoshka_batch_top_k,
        standard,
        top_k,
    )

    n, F = sz["M"] * sz["d"], sz["F"]
    warm = max(1, steps // 20)  # their warm-ups (1,000-2,000 steps by default) scaled to this run: 5%, as crosstime's
    common = {"steps": steps, "activation_dim": n, "dict_size": F, "layer": 0, "lm_name": "planted", "seed": 0,
              "device": "cpu", "lr": LR, "warmup_steps": warm}
    trainer = {
        "relu": lambda: standard.StandardTrainer(**common, sparsity_warmup_steps=warm),
        "topk": lambda: top_k.TopKTrainer(**common, k=K_ACTIVE, threshold_start_step=warm),
        "batchtopk": lambda: batch_top_k.BatchTopKTrainer(**common, k=K_ACTIVE, threshold_start_step=warm),
        "jumprelu": lambda: jumprelu.JumpReluTrainer(**common, sparsity_warmup_steps=warm),
        "matryoshka": lambda: matryoshka_batch_top_k.MatryoshkaBatchTopKTrainer(
            **common, k=K_ACTIVE, group_fractions=[1 / 16, 3 / 16, 3 / 4], threshold_start_step=warm),
    }[variant]()
    counter = [0]

    def step(x):
        trainer.update(counter[0], flat(x))
        counter[0] += 1

    @torch.no_grad()
    def reconstruct(x):
        out, f = trainer.ae(flat(x), output_features=True)
        return out.view_as(x), l0(f)

    return Contender("dictionary-learning", CONCAT, f"{type(trainer).__name__}, defaults, lr {LR:g}, warm-ups {warm}",
                     step, reconstruct)


# -- sparsify ------------------------------------------------------------------------------------

def sparsify_contender(variant: str, sz: dict, steps: int) -> Contender:
    """sparsify's SparseCoder (TopK, sparse decoder) and the body of its ``Trainer.fit`` step with its
    default optimiser (signum: ScheduleFreeWrapper(SignSGD), lr 5e-3/√(F/2¹⁴))."""
    # lazy: an optional extra (peers)
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify.sign_sgd import SignSGD

    assert variant == "topk"
    torch.manual_seed(0)
    sae = SparseCoder(sz["M"] * sz["d"], SparseCoderConfig(k=K_ACTIVE, num_latents=sz["F"]), device="cpu")
    lr = 5e-3 / (sae.num_latents / 2**14) ** 0.5  # sparsify.trainer's default for signum
    opt = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95)
    opt.train()

    first = [True]

    def step(x):
        xf = flat(x)
        if first[0]:  # its fit's first step: b_dec = the batch mean (centred pre-activations)
            sae.b_dec.data = xf.mean(0)
            first[0] = False
        sae.set_decoder_norm_to_unit_norm()
        out = sae(xf, dead_mask=None)  # auxk_alpha = 0 by default: no dead mask
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()

    @torch.no_grad()
    def reconstruct(x):
        opt.eval()  # schedule-free: evaluate at the averaged weights, as its checkpoints do
        out = sae(flat(x))
        opt.train()
        return out.sae_out.view_as(x), l0(out.latent_acts)

    return Contender("sparsify", CONCAT, f"SparseCoder k {K_ACTIVE}, fvu loss, signum (default) lr {lr:.2e}",
                     step, reconstruct)


# -- llamascopium --------------------------------------------------------------------------------

def llamascopium_contender(variant: str, sz: dict, steps: int, tmp: Path) -> Contender:
    """llamascopium's Crosscoder (JumpReLU, tanh penalty) and the body of its ``Trainer.fit`` loop."""
    # lazy: an optional extra (peers)
    from llamascopium.initializer import Initializer, InitializerConfig
    from llamascopium.models.crosscoder import Crosscoder, CrosscoderConfig
    from llamascopium.trainer import Trainer, TrainerConfig

    assert variant == "jumprelu"
    M, d, F, B = sz["M"], sz["d"], sz["F"], sz["B"]
    hooks = [f"ckpt{m}" for m in range(M)]
    torch.manual_seed(0)
    cc = Crosscoder(CrosscoderConfig(hook_points=hooks, d_model=d, expansion_factor=F / d, act_fn="jumprelu"))
    bound = math.sqrt(3) * 0.1 / math.sqrt(M * d)  # decoder rows of norm ≈ 0.1 over all checkpoints
    Initializer(InitializerConfig(encoder_uniform_bound=bound, decoder_uniform_bound=bound,
                                  init_log_jumprelu_threshold_value=math.log(0.1))).initialize_parameters(cc)
    cc.set_dataset_average_activation_norm(dict.fromkeys(hooks, math.sqrt(d)))  # the data's own norm: no rescale
    trainer = Trainer(TrainerConfig(lr=LR, lr_warm_up_steps=0, lr_scheduler_name="constant", l1_coefficient=2.0,
                                    sparsity_loss_type="tanh", amp_dtype=torch.float32, skip_metrics_calculation=True,
                                    l1_coefficient_warmup_steps=max(1, steps // 20), total_training_tokens=steps * B, exp_result_path=str(tmp), n_checkpoints=0))

    def as_batch(x):  # [B, M, d] -> its batch: one [B, d] entry per hook point
        return {**{h: x[:, m] for m, h in enumerate(hooks)}, "tokens": torch.zeros(x.shape[0])}

    trainer._initialize_trainer(cc, [{"tokens": torch.zeros(B), "mask": torch.ones(B)}], None)  # reads B only
    trainer._initialize_optimizer(cc)

    def step(x):  # llamascopium.trainer.Trainer.fit's loop body, logging off
        batch = cc.normalize_activations(as_batch(x))
        cc.train()
        ctx = trainer._training_step(cc, batch)
        ctx["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for name, p in cc.named_parameters()
                                        if p.grad is not None and "log_jumprelu_threshold" not in name], math.inf)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        trainer.scheduler.step()
        trainer.cur_step += 1

    @torch.no_grad()
    def reconstruct(x):
        cc.eval()
        inp = cc.prepare_input(cc.normalize_activations(as_batch(x)))[0]
        f = cc.encode(inp)  # [N, M, F]: one shared activation repeated per checkpoint
        return cc.decode(f), l0(f[:, 0])

    return Contender("llamascopium", "crosscoder", f"Crosscoder jumprelu, tanh penalty λ 2 (c 4), θ₀ 0.1, lr {LR:g}",
                     step, reconstruct)


# -- the run -------------------------------------------------------------------------------------

def make(tool: str, variant: str, sz: dict, steps: int, data: torch.Tensor, tmp: Path) -> Contender:
    """The contender ``tool`` for ``variant`` at size ``sz``, trained for ``steps`` steps."""
    if tool == "crosstime":
        return crosstime_contender(variant, sz, steps, data)
    if tool == "sae-lens":
        return saelens_contender(variant, sz, steps)
    if tool == "dictionary-learning":
        return dl_contender(variant, sz, steps)
    if tool == "sparsify":
        return sparsify_contender(variant, sz, steps)
    return llamascopium_contender(variant, sz, steps, tmp)


def make_data(sz: dict, n_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Planted rows: training ``[n_train, M, d]`` and held-out ``[HELD, M, d]``, one normalisation."""
    x, _ = planted(n_train + HELD, K=sz["K"], M=sz["M"], d=sz["d"], active=PLANTED_ACTIVE, seed=0)
    return x[:n_train].contiguous(), x[n_train:].contiguous()


def ev(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Explained variance of ``x [N, M, d]`` about its mean, all checkpoints together."""
    return 1 - float(((x_hat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def timings(cs: dict[str, Contender], batches: list[torch.Tensor], reps: int) -> dict[str, float]:
    """Interleaved: each round runs every contender's step once on the same batch; best seconds per step."""
    best = dict.fromkeys(cs, math.inf)
    for r in range(reps + 1):  # round 0 warms up (first-step costs: lazy state, geometric medians)
        x = batches[r % len(batches)]
        for name, c in cs.items():
            t = time.perf_counter()
            c.step(x)
            if r:
                best[name] = min(best[name], time.perf_counter() - t)
    return best


def rss_kib() -> int:
    """This process's resident set now (KiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def memory_child(tool: str, variant: str, size: str) -> None:
    """In a fresh process: the peak RSS (sampled each millisecond) over building ``tool`` and three steps,
    minus the RSS before (MiB, printed as JSON). A tiny contender is built first so that imports and
    one-off set-up land before the baseline."""
    import tempfile  # lazy: only the memory child needs it
    import threading  # lazy: only the memory child needs it

    sz = SIZES[size]
    data, _ = make_data(sz, 3 * sz["B"])
    tiny = {"M": sz["M"], "d": 8, "F": 4 * K_ACTIVE, "B": 64, "K": 16}
    with tempfile.TemporaryDirectory() as tmp:
        make(tool, variant, tiny, 3, make_data(tiny, 64)[0], Path(tmp)).step(make_data(tiny, 64)[0])
        before, peak, done = rss_kib(), [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib())
                time.sleep(0.001)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        c = make(tool, variant, sz, 3, data, Path(tmp))
        for x in data.split(sz["B"]):
            c.step(x)
        done.set()
        watcher.join()
    print(json.dumps({"mib": (max(peak[0], rss_kib()) - before) / 1024}))


def memory(tool: str, variant: str, size: str) -> float | None:
    """:func:`memory_child` in a subprocess (MiB), or None when it fails (its error is printed)."""
    cmd = [sys.executable, __file__, "--memory-child", tool, variant, size]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800)
    if r.returncode:
        print(f"memory of {tool} {variant} {size} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["mib"]


def train(cs: dict[str, Contender], batches: list[torch.Tensor], steps: int, first: int,
          untrained: set[str]) -> dict[str, float]:
    """``steps`` steps of every contender but ``untrained``, interleaved step by step on the same batches
    (from batch ``first`` on); mean seconds per step over the run (the early, dense steps included)."""
    total = dict.fromkeys(cs, 0.0)
    for i in range(steps):
        x = batches[(first + i) % len(batches)]
        for name, c in cs.items():
            if name in untrained:
                continue
            t = time.perf_counter()
            c.step(x)
            total[name] += time.perf_counter() - t
    return {name: total[name] / steps if steps and name not in untrained else None for name in cs}


def run_variant(variant: str, size: str, tools: list[str], ev_steps: int, reps: int, mem: bool,
                data: torch.Tensor, held: torch.Tensor, tmp: Path, peers_untrained: bool) -> list[dict]:
    """Every contender of ``variant`` at ``size``: timed at initialisation, trained ``ev_steps`` equal steps
    (timed), EV on the held-out rows, timed again (trained). ``peers_untrained``: only crosstime trains."""
    sz = SIZES[size]
    batches = list(data.split(sz["B"]))
    total = ev_steps + 2 * (reps + 1)
    cs = {t: make(t, variant, sz, total, data, tmp) for t in ["crosstime", *tools]}
    at_init = timings(cs, batches, reps)
    untrained = set(tools) if peers_untrained else set()
    run = train(cs, batches, ev_steps, reps + 1, untrained)
    evs = {}
    for name, c in cs.items():
        x_hat, f_l0 = c.reconstruct(held)
        evs[name] = (ev(held, x_hat), f_l0) if ev_steps and name not in untrained else (None, None)
    trained = timings({k: v for k, v in cs.items() if k not in untrained}, batches, reps) if ev_steps else {}
    ct = trained.get("crosstime", at_init["crosstime"])
    rows = []
    for name, c in cs.items():
        now = trained.get(name, at_init[name])  # the peers' dense steps: state-independent (see the d128 rows)
        rows.append({"size": size, "variant": variant, "tool": name, "kind": c.kind, "settings": c.settings,
                     "ms_init": at_init[name] * 1e3, "ms_run": None if run[name] is None else run[name] * 1e3,
                     "ms": now * 1e3, "trained": name in trained, "ratio": ct / now,
                     "ratio_init": at_init["crosstime"] / at_init[name],
                     "ratio_run": run["crosstime"] / run[name] if run[name] and run["crosstime"] else None,
                     "ev": evs[name][0], "l0": evs[name][1], "mib": memory(name, variant, size) if mem else None})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress, in case a later one fails
    return rows


def version(tool: str) -> str:
    return importlib.metadata.version(DIST[tool])


def fmt(v: float | None, spec: str) -> str:
    """``v`` formatted, or a dash where it was not measured."""
    return "–" if v is None else format(v, spec)


def table(rows: list[dict], args: argparse.Namespace, loads: list[float]) -> str:
    """The markdown section: setting, versions, the table and the command."""
    tools = sorted({r["tool"] for r in rows})
    out = [f"### crosstime vs peers ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
           f"CPU {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
           f"threads; os.getloadavg() {loads[0]:.2f} at start, {loads[1]:.2f} at the end. Versions: "
           + ", ".join(f"{DIST[t]} {version(t)}" for t in tools) + ".",
           "", (f"Planted data (planted_variants.planted: K directions, {PLANTED_ACTIVE:g} active per row, E‖x_m‖ = √d); "
           f"k = {K_ACTIVE}; Adam lr {LR:g} constant for every Adam contender; EV on {HELD} held-out rows after "
           f"{args.ev_steps} equal steps (same batches, same order); ms/step best of {args.reps} interleaved rounds; "
           "memory: peak RSS of building + 3 steps in a fresh process, above its baseline. "
           "ratio = crosstime ms / peer ms (below 1: crosstime faster)."), "",
           "| size | variant | tool | kind | ms/step at init | crosstime/peer | ms/step, mean of the run | crosstime/peer "
           "| ms/step trained | crosstime/peer | peak MiB | held-out EV | L0 | settings |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sz = SIZES[r["size"]]
        shape = f"M={sz['M']} d={sz['d']} F={sz['F']} B={sz['B']}"
        peer = r["tool"] != "crosstime"
        trained = f"{r['ms']:.1f}" if r["trained"] else f"(at init) {r['ms']:.1f}"
        out.append(f"| {shape} | {r['variant']} | {r['tool']} | {r['kind']} | {r['ms_init']:.1f} | "
                   f"{fmt(r['ratio_init'] if peer else None, '.2f')} | {fmt(r['ms_run'], '.1f')} | "
                   f"{fmt(r['ratio_run'] if peer else None, '.2f')} | {trained} | {fmt(r['ratio'] if peer else None, '.2f')} | "
                   f"{fmt(r['mib'], '.0f')} | {fmt(r['ev'], '.4f')} | {fmt(r['l0'], '.1f')} | {r['settings']} |")
    out += ["", "Command: `" + " ".join(["python benchmarks/bench_peers.py", *sys.argv[1:]]) + "`"]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="d128 only, 20 EV steps, 2 reps, no memory")
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--variants", nargs="*", default=list(SHARED), choices=list(SHARED))
    ap.add_argument("--tools", nargs="*", default=None, help="peers to run (default: every peer of the variant)")
    ap.add_argument("--ev-steps", type=int, default=300)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--peers-untrained", action="store_true",
                    help="only crosstime trains the --ev-steps (its sparse products need a trained code); the peers, "
                         "whose steps are dense whatever the state, are timed at initialisation (a d768 run's hours)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--memory-child", nargs=3, metavar=("TOOL", "VARIANT", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if args.quick:
        args.sizes, args.ev_steps, args.reps, args.no_memory = ["d128"], 20, 2, True
    import tempfile  # lazy: only the driver needs it

    loads = [os.getloadavg()[0]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            n_batches = min(args.ev_steps + 2 * (args.reps + 1), MAX_BATCHES)  # then the batches repeat
            data, held = make_data(SIZES[size], n_batches * SIZES[size]["B"])
            for variant in args.variants:
                tools = [t for t in SHARED[variant] if args.tools is None or t in args.tools]
                rows += run_variant(variant, size, tools, args.ev_steps, args.reps, not args.no_memory, data, held,
                                    Path(tmp), args.peers_untrained)
    loads.append(os.getloadavg()[0])
    print(table(rows, args, loads))


if __name__ == "__main__":
    main()
