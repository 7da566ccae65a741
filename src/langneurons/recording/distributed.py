"""torch.distributed glue: rank/world from torchrun or accelerate, and the per-round gather of partials.

``torchrun`` and ``accelerate launch`` both set WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; that is all this module reads. Backend: nccl when CUDA is available, else gloo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from langneurons.errors import LangneuronsError
from langneurons.recording.counter import Partial


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world_size() -> int:
    """How many processes the launcher started (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_device() -> str:
    """The device this process should use under a launcher: cuda:LOCAL_RANK when CUDA is there."""
    if not torch.cuda.is_available():
        return "cpu"
    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= count:
        raise LangneuronsError(
            f"this is process {local} on its node but the node has {count} GPU(s): start at most {count} "
            "processes per node (--nproc-per-node), or pass --device cpu"
        )
    return f"cuda:{local}"


def init_world(device: str | None = None) -> World:
    """Join the process group that torchrun / accelerate launch set up: nccl when this process runs on a
    GPU (``device`` cuda…, or None with CUDA present), else gloo."""
    size = launched_world_size()
    if size <= 1:
        return World()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if not dist.is_initialized():
        if on_gpu:
            torch.cuda.set_device(torch.device(local_device() if device in (None, "auto", "cuda") else device))
            dist.init_process_group(backend="nccl")  # each rank talks from its own GPU, set above
        else:
            dist.init_process_group(backend="gloo")
    return World(dist.get_rank(), dist.get_world_size(), local)


def _comm_device(world: World) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_partials(partial: Partial, world: World) -> list[Partial]:
    """Every rank's partial of this round, in rank order (a single-process run returns its own)."""
    if world.size == 1:
        return [partial]
    partial = partial.to(_comm_device(world))
    out = [partial.zeros_like() for _ in range(world.size)]
    for i, tensor in enumerate(partial.tensors()):
        dist.all_gather([p.tensors()[i] for p in out], tensor.contiguous())
    return out


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank if it is True on any (e.g. 'Ctrl-C was pressed'): all stop at the same round."""
    if world.size == 1:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=_comm_device(world))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_across(tensors: list[torch.Tensor], world: World) -> None:
    """Sum each tensor over the ranks, in place: every rank ends with the totals (e.g. float64 sums of its
    share of batches; the order of the additions differs from one process's, so equal to float64 rounding)."""
    if world.size == 1:
        return
    device = _comm_device(world)
    for tensor in tensors:
        buffer = tensor.reshape(-1).to(device, copy=True)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        tensor.copy_(buffer.reshape(tensor.shape).to(tensor.device))


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def broadcast_flag(flag: bool, world: World) -> bool:
    """Rank 0's decision, for all ranks (e.g. 'a finished run exists')."""
    if world.size == 1:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=_comm_device(world))
    dist.broadcast(t, 0)
    return bool(t.item())


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's picklable object (e.g. the resumed checkpoint, or the error reading it), for all ranks."""
    if world.size == 1:
        return obj
    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, 0, device=_comm_device(world))
    return box[0]


def share(n: int, world: World) -> list[int]:
    """This rank's indices of ``n`` equal jobs, round-robin (rank r takes r, r + size, …)."""
    return list(range(world.rank, n, world.size))


def gather_to_main(obj: Any, world: World) -> list[Any] | None:
    """Every rank's picklable ``obj`` in rank order on rank 0 (None on the others)."""
    if world.size == 1:
        return [obj]
    box: list[Any] | None = [None] * world.size if world.is_main else None
    dist.gather_object(obj, box, dst=0)  # nccl: uses the current CUDA device, set by init_world
    return box


def shutdown(world: World) -> None:
    """Leave the process group (avoids the 'destroy_process_group was not called' warning)."""
    if world.size > 1 and dist.is_initialized():
        # Meet on the rendezvous store, not on gloo: a rank that tears its sockets down while a peer
        # still finishes a collective can make that peer abort ("terminate called without an active
        # exception") after the results are written.
        store = dist.distributed_c10d._get_default_store()
        store.set(f"langneurons/shutdown/{world.rank}", "1")
        store.wait([f"langneurons/shutdown/{r}" for r in range(world.size)])
        dist.destroy_process_group()
