"""The evaluate stage's passes over data: encode (reconstruction metrics) and splice (downstream).

Both read the store's rows of the *crosscoder's* checkpoints only (``model.revisions``, which
may be a subset of the store's), in the crosscoder's order.

- :func:`encode_pass`: the held-out contexts of the plan, normalised with the crosscoder's own
  scales (``x = s_m · x_raw``, as trained), encoded and decoded in normalised space; the
  reconstruction metrics over the reconstruction contexts (:class:`ReconstructionStats`), the
  firing counts topped up with train rows up to ``dead_tokens`` (:func:`top_up_firing`), and
  the sparse latents ``f [rpc, F]`` of the downstream contexts, kept so each checkpoint's
  splice decodes without re-encoding; and, over the same reconstruction contexts, the
  latent-scaling sums (:class:`~crosstime.evaluate.scaling.ScalingStats`) and the typed-emergence
  sums (:class:`~crosstime.evaluate.types.TypeStats`, labels of the contexts' token ids) and the
  activations' moments for their effective rank (:class:`~crosstime.evaluate.geometry.SpectrumStats`).
- :func:`splice_checkpoint`: checkpoint m's forward pass with its site replaced by the raw-space
  reconstruction ``x̂_m = f · W_dec[:, m] + b_dec[m]`` of the folded crosscoder
  (:meth:`Crosscoder.folded`: ``x̂_raw = x̂_norm / s_m``) at the kept positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from crosstime.crosscoder import Crosscoder
from crosstime.evaluate.geometry import SpectrumStats
from crosstime.evaluate.metrics import DownstreamStats, ReconstructionStats
from crosstime.evaluate.scaling import ScalingStats
from crosstime.evaluate.types import Labeler, TypeStats
from crosstime.progress import Bar
from crosstime.series import CheckpointSeries
from crosstime.store import ActivationStore

# Tokens per forward pass of a checkpoint when ``context_batch_size`` is not given.
SPLICE_TOKENS_PER_BATCH = 2048


@dataclass
class Encoded:
    """What the encode pass measured: ``stats`` (reconstruction sums and firing counts), ``scaling``
    (latent-scaling sums over the same rows), ``types`` (η² sums of the labeler's properties over the
    same rows), ``spectrum`` (the activations' moments over the same rows) and ``latents`` (held-out
    context -> sparse ``f [rpc, F]``, COO on the CPU, downstream contexts only)."""

    stats: ReconstructionStats
    scaling: ScalingStats
    types: TypeStats
    spectrum: SpectrumStats
    latents: dict[int, torch.Tensor]


def progress_bar(total: int, desc: str, enabled: bool, unit: str):

    return Bar(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, leave=False)


def raw_rows(store: ActivationStore, revisions: list[str], contexts: np.ndarray) -> torch.Tensor:
    """Raw stored activations of whole contexts for ``revisions``: ``[n · rpc, M, d]`` float32."""
    rpc = store.rows_per_context
    parts = []
    for rev in revisions:
        blocks = [store.read_block(rev, int(c) * rpc, rpc) for c in contexts]
        parts.append(torch.cat(blocks))
    return torch.stack(parts, dim=1)


def input_scales(model: Crosscoder, device: torch.device) -> torch.Tensor:
    """The crosscoder's factors s_m as ``[1, M, 1]`` float32: normalised x = s_m · raw x."""
    return torch.tensor(model.scales, dtype=torch.float32, device=device).view(1, model.n_checkpoints, 1)


@torch.no_grad()
def encode_pass(store: ActivationStore, model: Crosscoder, recon_contexts: np.ndarray, down_contexts: np.ndarray,
                device: torch.device, batch_rows: int, progress: bool, labeler: Labeler) -> Encoded:
    """Encode every context of ``recon_contexts ∪ down_contexts`` once (batches of whole contexts,
    about ``batch_rows`` rows); reconstruction, scaling and type sums over ``recon_contexts`` only
    (``labeler`` labels their rows). ``model`` is on ``device``."""
    rpc = store.rows_per_context
    recon_set = set(recon_contexts.tolist())
    down_set = set(down_contexts.tolist())
    contexts = np.array(sorted(recon_set | down_set), dtype=np.int64)
    per_batch = max(1, batch_rows // rpc)
    stats = ReconstructionStats(model.n_checkpoints, model.d_model, model.n_features)
    scaling = ScalingStats(model.W_dec, model.b_dec)  # normalised space, like x here
    types = TypeStats(labeler.properties, model.n_features, labeler.flags)
    spectrum = SpectrumStats(model.n_checkpoints, model.d_model)
    latents: dict[int, torch.Tensor] = {}
    s = input_scales(model, device)
    bar = progress_bar(len(contexts) * rpc, "evaluate: encode", progress, "tok")
    for b in range(0, len(contexts), per_batch):
        ctx = contexts[b : b + per_batch]
        x = raw_rows(store, model.revisions, ctx).to(device) * s  # [n · rpc, M, d]
        f = model.encode(x)  # [n · rpc, F]
        x_hat = model.decode(f)
        in_recon = torch.tensor([int(c) in recon_set for c in ctx]).repeat_interleave(rpc)
        if in_recon.all():
            stats.update(x, x_hat, f)
            scaling.update(x, x_hat, f)
            spectrum.update(x)
            types.update(f, labeler.labels(store.tokens[ctx]))
        elif in_recon.any():
            keep = in_recon.to(device)
            stats.update(x[keep], x_hat[keep], f[keep])
            scaling.update(x[keep], x_hat[keep], f[keep])
            spectrum.update(x[keep])
            types.update(f[keep], labeler.labels(store.tokens[[c for c in ctx if int(c) in recon_set]]))
        for k, c in enumerate(ctx):
            if int(c) in down_set:
                latents[int(c)] = f[k * rpc : (k + 1) * rpc].to("cpu").to_sparse()
        bar.update(len(ctx) * rpc)
    bar.close()
    return Encoded(stats, scaling, types, spectrum, latents)


@torch.no_grad()
def top_up_firing(store: ActivationStore, model: Crosscoder, stats: ReconstructionStats, device: torch.device,
                  dead_tokens: int, batch_rows: int, seed: int, progress: bool) -> None:
    """Count firing on train rows until ``dead_tokens`` tokens are counted (dead latents are a
    property of the dictionary, not of generalisation, so train rows serve)."""
    need = dead_tokens - stats.n_firing
    if need <= 0 or store.n_rows("train") == 0:
        return
    s = input_scales(model, device)
    bar = progress_bar(min(need, store.n_rows("train")), "evaluate: dead-latent window", progress, "tok")
    for x in store.batches(model.revisions, batch_size=batch_rows, split="train", normalise=False, seed=seed):
        x = x[:need].to(device) * s
        stats.update_firing(model.encode(x))
        need -= len(x)
        bar.update(len(x))
        if need <= 0:
            break
    bar.close()


def raw_decoder(model: Crosscoder) -> tuple[torch.Tensor, torch.Tensor]:
    """The folded (raw-space) decoder on the CPU: ``W_dec [F, M, d]``, ``b_dec [M, d]`` float32."""
    folded = model.folded()
    return folded.W_dec.detach().float().cpu(), folded.b_dec.detach().float().cpu()


@torch.no_grad()
def splice_checkpoint(store: ActivationStore, series: CheckpointSeries, revision: str, W: torch.Tensor,
                      b: torch.Tensor, contexts: np.ndarray, latents: dict[int, torch.Tensor], *,
                      model_dtype: str, context_batch_size: int | None, device: torch.device,
                      progress: bool) -> dict:
    """Clean / spliced / zero-ablated CE and KL of checkpoint ``revision`` over ``contexts``.

    ``W [F, d]``, ``b [d]``: that checkpoint's raw-space decoder (from :func:`raw_decoder`);
    the splice writes ``x̂ = f W + b`` at the store's kept positions.
    """
    lm = series.load_model(revision, dtype=model_dtype, device=device)
    lm.eval()
    rpc, first = store.rows_per_context, store.first_position
    stats = DownstreamStats()
    bs = context_batch_size or max(1, SPLICE_TOKENS_PER_BATCH // store.context_len)
    bar = progress_bar(len(contexts), f"evaluate: splice {revision}", progress, "ctx")
    for i in range(0, len(contexts), bs):
        ctx = contexts[i : i + bs]
        ids = torch.from_numpy(np.asarray(store.tokens[ctx], dtype=np.int64)).to(device)
        # x̂_m (raw) at the kept positions: sparse f [rpc, F] @ W [F, d] + b
        x_hat = torch.stack([torch.sparse.mm(latents[int(c)], W) + b for c in ctx]).to(device)
        stats.update(lm, store.layer, ids, x_hat.view(len(ctx), rpc, -1), first)
        bar.update(len(ctx))
    bar.close()
    del lm
    return stats.result()
