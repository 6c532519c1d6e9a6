"""mmchange: remote-sensing change detection with images and text (MMChange).

The library API (imported on first use, so ``import mmchange_core`` stays light)::

    from mmchange_core import ChangeDetector
    detector = ChangeDetector.from_checkpoint("best.safetensors", device="auto")
    result = detector.predict("2019.tif", "2021.tif")   # .probability, .mask, .georef

and the functions behind ``mmchange train``, ``eval`` and ``robustness``: :func:`train`,
:func:`run_evaluation` / :func:`evaluate`, :func:`run_robustness`.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmchange_core.environment import __version__
from mmchange_core.errors import MMChangeError

#: Public names and the modules that define them (loaded lazily by :func:`__getattr__`).
_LAZY = {
    "ChangeDetector": "mmchange_core.inference.detector",
    "Prediction": "mmchange_core.inference.detector",
    "DetectorSettings": "mmchange_core.inference.settings",
    "open_model": "mmchange_core.inference.backends",
    "CheckpointMeta": "mmchange_core.models.checkpoint",
    "load_checkpoint": "mmchange_core.models.checkpoint",
    "predict_pair": "mmchange_core.inference.predict",
    "predict_folder": "mmchange_core.inference.predict",
    "predict_paths": "mmchange_core.inference.predict",
    "PredictConfig": "mmchange_core.inference.predict",
    "predict_series": "mmchange_core.inference.series",
    "SeriesResult": "mmchange_core.inference.series",
    "read_series": "mmchange_core.data.series",
    "summarize_change": "mmchange_core.inference.summary",
    "Imagery": "mmchange_core.io.imagery",
    "Radiometry": "mmchange_core.io.imagery",
    "ClassScheme": "mmchange_core.io.classes",
    "load_class_file": "mmchange_core.io.classes",
    "DecisionRule": "mmchange_core.inference.decision",
    "read_images": "mmchange_core.io.raster",
    "evaluate": "mmchange_core.evaluation.evaluate",
    "run_evaluation": "mmchange_core.evaluation.run",
    "EvalOptions": "mmchange_core.evaluation.run",
    "run_robustness": "mmchange_core.evaluation.robustness",
    "RobustnessConfig": "mmchange_core.evaluation.robustness",
    "train": "mmchange_core.training.loop",
    "TrainConfig": "mmchange_core.training.config",
    "load_config": "mmchange_core.config",
}

__all__ = ["MMChangeError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmchange_core' has no attribute {name!r}")
