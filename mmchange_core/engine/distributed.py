"""Multi-process training with torch.distributed: set-up from torchrun's environment, and helpers.

``torchrun --nproc_per_node N -m mmchange_cli train ...`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment. Each process then trains on its shard of every
epoch (DistributedSampler) with gradients averaged by DistributedDataParallel; process 0 alone logs,
validates and writes files. GPUs use NCCL (process ``i`` takes ``cuda:LOCAL_RANK``), CPUs use gloo.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mmchange_core.device import resolve_device
from mmchange_core.errors import MMChangeError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Process 0: the one that logs, validates and writes."""
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(0, 1, 0, resolve_device(device))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = resolve_device(device)
    if wanted.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise MMChangeError(f"process {rank} needs GPU {local_rank} but only {torch.cuda.device_count()} "
                                f"are visible; lower --nproc_per_node or use --device cpu")
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
        backend = "nccl"
    else:
        resolved = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=1))
    return DistributedContext(rank, world_size, local_rank, resolved)


def cleanup_distributed(ctx: DistributedContext) -> None:
    """Leave the process group (no-op for single-process runs)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_object(obj: Any, ctx: DistributedContext) -> Any:
    """Process 0's ``obj`` on every process."""
    if not ctx.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_sum(values: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Element-wise sum of ``values`` over all processes (a copy; the input is left alone)."""
    if not ctx.enabled:
        return values.clone()
    out = values.detach().clone().to(ctx.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out
