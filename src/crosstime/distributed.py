"""PyTorch distributed, as launched by ``torchrun``: gloo on CPU, NCCL on GPU.

Every function works unchanged in a single process (rank 0 of world size 1).
"""

from __future__ import annotations

import atexit
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


def join(device: str | torch.device = "cpu") -> World:
    """This process's :class:`World`; under torchrun (WORLD_SIZE > 1) it joins the process group once.

    The group is destroyed when the process exits (``atexit``), on a normal end as on an
    error: a process that exits with its group alive can abort in the backend's destructor
    ("terminate called without an active exception"). It is not destroyed between two
    stages of one process: re-creating the default group over the same rendezvous store can
    deadlock, one rank reading the keys the other left from the first group.
    """
    w = world()
    if w.size > 1 and not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(w.local_rank)
        dist.init_process_group(backend=backend)
        atexit.register(leave)
    return world()


def leave() -> None:
    """Destroy the process group, if this process is in one (registered at exit by :func:`join`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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
