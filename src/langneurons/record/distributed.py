"""torch.distributed glue: rank/world from torchrun or accelerate, and the per-round gather of partials."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from langneurons.record.counter import Partial


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world() -> World:
    """Join the process group that torchrun / accelerate launch set up (gloo on CPU, nccl on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return World(dist.get_rank(), dist.get_world_size(), local)


def gather_partials(partial: Partial, world: World) -> list[Partial]:
    """Every rank's partial of this round, in rank order (a single-process run returns its own)."""
    if world.size == 1:
        return [partial]
    out = [Partial.zeros(*partial.count.shape, device=partial.count.device) for _ in range(world.size)]
    for i, tensor in enumerate(partial.tensors()):
        dist.all_gather([p.tensors()[i] for p in out], tensor.contiguous())
    return out


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def broadcast_flag(flag: bool, world: World) -> bool:
    """Rank 0's decision, for all ranks (e.g. 'a finished run exists')."""
    if world.size == 1:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, 0)
    return bool(t.item())
