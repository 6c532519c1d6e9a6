"""Checkpoint files and run outputs as earlier versions or other commands wrote them, for the model tests.

``hub_cache``: a Hugging Face Hub cache laid out on disk; ``reference_fixture``: the authors'-format
state dict filled by the spec's deterministic rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save

#: The scores of the metrics.json that :func:`eval_json` writes.
METRICS = {"precision": 0.8125, "recall": 0.625, "f1": 0.7065, "iou": 0.5462, "oa": 0.9731, "kappa": 0.6925,
           "tp": 130, "fp": 30, "fn": 78, "tn": 3800}


def eval_json(path: Path, **changes) -> Path:
    """A metrics.json as ``mmchange eval`` writes it into its run folder."""
    data = {"metrics": METRICS, "split": "test", "pairs": 8, "threshold": 0.5, "threshold_tuning": None,
            "checkpoint": "runs/train/exp/best.safetensors", "model": {"backbone": "resnet18",
                                                                        "variant": "image-only", "text_dim": 512},
            "dataset": "/data/LEVIR-CD", "layout": "split-folders", "tile_size": 256, "overlap": 0}
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def write_v1(path: Path, model: torch.nn.Module, meta: dict, model_config: dict | None = None) -> Path:
    """A checkpoint as the previous format (format_version 1) wrote it."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    config = model_config or {"backbone": "resnet18", "variant": "full", "text_dim": 64, "width": 64}
    header = {"format": "mmchange-checkpoint", "format_version": "1", "model_config": json.dumps(config),
              "meta": json.dumps(meta)}
    path.write_bytes(save(state, metadata=header))
    return path
