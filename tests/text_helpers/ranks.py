"""Run ``caption_dataset`` as one rank of a multi-process (torchrun-like) job, for the sharding test."""

from __future__ import annotations

import json
import os
from pathlib import Path


def caption_as_rank(rank: int, world_size: int, port: int, root: str, out: str) -> None:
    """Set torchrun's environment for ``rank`` and caption ``root`` with the offline pipeline."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch

    torch.set_num_threads(1)
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    report = caption_dataset(root, captioner=CaptionerConfig(name="basic", batch_size=2),
                             encoder=TextEncoderConfig(name="hashing"), device="cpu")
    Path(out).write_text(json.dumps(report.to_dict()))
