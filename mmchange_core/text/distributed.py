"""Multi-process captioning under ``torchrun``: rank, world size, barriers and the per-rank device.

``torchrun --nproc_per_node N -m mmchange_cli caption ROOT ...`` starts N processes; each captions a
disjoint shard of the images (every N-th image) into its own shard file beside the store, and
rank 0 merges the shards into the store once all ranks are done. Barriers use the gloo backend, so
this also works on CPU-only machines.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

#: Ranks can finish their shards far apart (uneven images, slow disks): wait up to a day.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


@dataclass
class DistributedContext:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, which merges shards and reports."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.active:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order, on every rank."""
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def device(self, spec: str) -> str:
        """The device of this rank: ``auto``/``cuda`` become ``cuda:<local rank>`` when GPUs exist."""
        if not self.active:
            return spec
        spec = (spec or "auto").strip().lower()
        if spec in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return spec


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@contextlib.contextmanager
def distributed_context() -> Iterator[DistributedContext]:
    """The context from torchrun's environment; initialises (and later ends) a gloo group if needed."""
    world_size = _env_int("WORLD_SIZE", 1)
    context = DistributedContext(_env_int("RANK", 0), world_size, _env_int("LOCAL_RANK", 0))
    owns_group = False
    if context.active and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        owns_group = True
    try:
        yield context
    finally:
        if owns_group:
            dist.destroy_process_group()
