"""PyTorch distributed, as launched by ``torchrun``: gloo on CPU, NCCL on GPU.

Every function works unchanged in a single process (rank 0 of world size 1).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from crosstime.errors import CrosstimeError


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


@dataclass(frozen=True)
class Mesh:
    """A 2-D layout of the world: ``data × checkpoint``, ``size = data_size · checkpoint_size``.

    Rank ``r`` holds checkpoint shard ``r % checkpoint_size`` of data share ``r // checkpoint_size``:
    the ranks of one checkpoint group (``checkpoint_group``) read the same rows and hold
    disjoint checkpoints; those of one data group (``data_group``) hold the same checkpoints
    and read disjoint rows. A group is None when its axis has size 1 (nothing to reduce).
    """

    world: World
    checkpoint_size: int = 1
    checkpoint_group: object = None
    data_group: object = None

    @property
    def data_size(self) -> int:
        return self.world.size // self.checkpoint_size

    @property
    def checkpoint_rank(self) -> int:
        return self.world.rank % self.checkpoint_size

    @property
    def data_rank(self) -> int:
        return self.world.rank // self.checkpoint_size


def mesh(w: World, checkpoint_size: int = 1) -> Mesh:
    """The :class:`Mesh` of ``w`` with a checkpoint axis of ``checkpoint_size`` ranks.

    Every rank creates every group, in the same order (``new_group`` is collective)."""
    if checkpoint_size < 1 or w.size % checkpoint_size:
        raise CrosstimeError(f"checkpoint_parallel = {checkpoint_size} does not divide the {w.size} processes; launch a "
                         f"multiple of {checkpoint_size} processes (torchrun --nproc_per_node) or change it")
    if w.size == 1:
        return Mesh(w)
    data_size = w.size // checkpoint_size
    mine: dict[str, object] = {"checkpoint": None, "data": None}
    for d in range(data_size):  # the checkpoint groups: ranks d·P … d·P + P − 1
        ranks = list(range(d * checkpoint_size, (d + 1) * checkpoint_size))
        group = dist.new_group(ranks) if checkpoint_size > 1 else None
        if w.rank in ranks:
            mine["checkpoint"] = group
    for c in range(checkpoint_size):  # the data groups: ranks c, c + P, …
        ranks = list(range(c, w.size, checkpoint_size))
        group = dist.new_group(ranks) if data_size > 1 else None
        if w.rank in ranks:
            mine["data"] = group
    return Mesh(w, checkpoint_size, mine["checkpoint"], mine["data"])
