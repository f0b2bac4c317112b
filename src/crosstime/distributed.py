"""PyTorch distributed, as launched by ``torchrun``: gloo on CPU, NCCL on GPU.

Every function works unchanged in a single process (rank 0 of world size 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place: from the initialised process group, else from torchrun's env."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def init(device: str = "cpu") -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); no-op otherwise."""
    w = world()
    if w.size > 1 and not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(w.local_rank)
    return world()


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """'auto' → this rank's GPU if there is one, else the CPU; 'cuda' → this rank's GPU."""
    rank = world().local_rank if local_rank is None else local_rank
    if name == "auto":
        return torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        return torch.device(f"cuda:{rank}")
    return torch.device(name)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard(items: list, w: World | None = None) -> list:
    """This rank's share of ``items`` (round robin)."""
    w = w or world()
    return items[w.rank :: w.size]
