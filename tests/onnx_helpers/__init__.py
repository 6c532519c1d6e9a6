"""Tiny checkpoints exported to ONNX once per test session (the dynamo exporter takes tens of seconds).

``MMCHANGE_TEST_ONNX_DIR=DIR`` keeps the exports in DIR and reuses them in later sessions (for quick
reruns while working on code that does not change the export; never set in CI).
"""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from mmchange_core.io.classes import ClassScheme
from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint
from mmchange_core.inference.backends import export_model_file
from mmchange_core.models.export import ExportResult

_ROOT: Path | None = None
_CACHE: dict[str, "Exported"] = {}


@dataclass(frozen=True)
class Exported:
    """A checkpoint, its ``.onnx`` export and what the export reported."""

    checkpoint: Path
    onnx: Path
    result: ExportResult
    meta: CheckpointMeta


def tiny_meta(kind: str) -> tuple[torch.nn.Module, CheckpointMeta]:
    """A random resnet18 model (BatchNorm statistics randomised, so folding matters) and its metadata."""
    torch.manual_seed(3)
    classes = None
    if kind == "image":
        model = build_model("resnet18", "image-only")
        text = None
    else:
        from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline

        if kind == "classes":  # a K-class text model: 3 change classes
            classes = ClassScheme.from_dict([{"value": 0, "name": "no change"}, {"value": 1, "name": "new building"},
                                             {"value": 2, "name": "demolished building"},
                                             {"value": 5, "name": "vegetation lost"}])
        model = build_model("resnet18", "full", text_dim=64, num_classes=4 if classes else 2)
        text = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing", dim=64),
                            device="cpu").describe()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    meta = CheckpointMeta(model=model.config, tile_size=64, threshold=0.45, text_description=text,
                          training={"note": "test"}, classes=classes)
    return model.eval(), meta


def exported(kind: str) -> Exported:
    """The ``image`` (image-only), ``text`` (full, text_dim 64) or ``classes`` (``text`` with 4 classes) tiny model,
    saved and exported once per session."""
    global _ROOT
    if kind not in _CACHE:
        keep = os.environ.get("MMCHANGE_TEST_ONNX_DIR")
        if _ROOT is None:
            _ROOT = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="mmchange-onnx-tests-"))
            _ROOT.mkdir(parents=True, exist_ok=True)
            if not keep:
                atexit.register(shutil.rmtree, _ROOT, True)
        kept = _ROOT / f"{kind}.pickle"
        if keep and kept.is_file():
            _CACHE[kind] = pickle.loads(kept.read_bytes())
            return _CACHE[kind]
        model, meta = tiny_meta(kind)
        checkpoint = save_checkpoint(_ROOT / f"{kind}.safetensors", model, meta)
        result = export_model_file(checkpoint, _ROOT / f"{kind}.onnx")
        _CACHE[kind] = Exported(checkpoint, result.path, result, meta)
        if keep:
            kept.write_bytes(pickle.dumps(_CACHE[kind]))
    return _CACHE[kind]
