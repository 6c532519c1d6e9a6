"""Multi-process runs under ``torchrun``: this process's rank and device, and the few collectives we use.

``torchrun --nproc_per_node N -m mmchange_cli train|caption|predict ...`` starts N processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment. Training shards every epoch and
averages gradients (DDP); captioning gives each rank a disjoint shard of the images; prediction gives
each rank whole pairs, or blocks of window rows of one large pair. Process 0 alone logs and merges. GPU runs take ``cuda:LOCAL_RANK``; the backend is NCCL on GPUs and gloo otherwise, unless
the caller asks for one (captioning uses gloo so its long barriers need no GPU).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from mmchange_core.device import resolve_device
from mmchange_core.errors import MMChangeError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """Whether several processes take part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Process 0: the one that logs, validates, merges and writes."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op in a single process)."""
        if self.enabled:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every process, in rank order, on every process."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, obj: Any) -> Any:
        """Process 0's ``obj`` on every process."""
        if not self.enabled:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``values`` over all processes (a copy; the input is left alone)."""
        if not self.enabled:
            return values.clone()
        out = values.detach().clone().to(self.device)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise MMChangeError(f"environment variable {name}={value!r} is not an integer; "
                            "start multi-process runs with torchrun") from exc


def launch_position() -> tuple[int, int]:
    """``(rank, world_size)`` of this process as torchrun set them; ``(0, 1)`` for a plain process."""
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


def _rank_device(device: str, local_rank: int, world_size: int) -> torch.device:
    wanted = resolve_device(device)
    if world_size <= 1 or wanted.type != "cuda":
        return wanted
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise MMChangeError(f"process with LOCAL_RANK {local_rank} needs GPU {local_rank} but only {visible} "
                            "are visible; lower --nproc_per_node or use --device cpu")
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def distributed_session(device: str = "auto", backend: str | None = None,
                        timeout: datetime.timedelta = datetime.timedelta(hours=1)) -> Iterator[DistributedContext]:
    """Join the process group torchrun describes (if any) for the duration of the block.

    ``backend`` None picks NCCL for GPU devices and gloo otherwise. A group this call created is
    destroyed on exit (after a final barrier on success, so no rank leaves while others still talk).
    """
    rank, world_size = launch_position()
    local_rank = _env_int("LOCAL_RANK", 0)
    resolved = _rank_device(device, local_rank, world_size)
    ctx = DistributedContext(rank, world_size, local_rank, resolved)
    owns_group = False
    if ctx.enabled and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        chosen = backend or ("nccl" if resolved.type == "cuda" else "gloo")
        dist.init_process_group(backend=chosen, timeout=timeout)
        owns_group = True
    try:
        yield ctx
        if owns_group:
            dist.barrier()
    finally:
        if owns_group:
            dist.destroy_process_group()


#: Torch threads of each CPU process under torchrun (default: the node's cores shared equally).
CPU_THREADS_ENV = "MMCHANGE_CPU_THREADS"


def share_cpu_threads(ctx: DistributedContext) -> int | None:
    """Give each CPU process of this node an equal share of its cores (torch threads); returns the count set.

    torchrun sets ``OMP_NUM_THREADS=1`` for every process, which leaves most cores of a big node idle,
    while torch's own default (all cores per process) oversubscribes them N times. ``MMCHANGE_CPU_THREADS``
    sets the count explicitly; an ``OMP_NUM_THREADS`` other than 1 is kept; a single process or a GPU
    process is left alone (``None``). CPU results depend on the thread count in their last bits, so
    a run is bit-identical to a single process that uses the same count.
    """
    if not ctx.enabled or ctx.device.type != "cpu":
        return None
    if os.environ.get(CPU_THREADS_ENV):
        threads = _env_int(CPU_THREADS_ENV, 1)
    elif os.environ.get("OMP_NUM_THREADS", "1") != "1":
        return None
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // max(_env_int("LOCAL_WORLD_SIZE", 1), 1))
    torch.set_num_threads(threads)
    return threads
