"""``mmchange export`` as a library call: the ONNX export, int8 calibrated on real pairs, checked against fp32.

:func:`run_export` writes the ``.onnx`` file (:func:`mmchange_core.inference.backends.export_model_file`);
``--quantize int8`` calibrates onnxruntime's static quantisation on windows of a dataset's pairs
(:func:`calibration_reader`), and ``check`` predicts a labelled split with the plain fp32 torch
network and with the exported model (:func:`~mmchange_core.inference.drift.measure_drift`): mask
agreement, F1 of both, and seconds per pair of both, so what quantisation costs is measured, not assumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmchange_core.config import choice, non_negative, positive, required, setting, validate
from mmchange_core.data.dataset import read_labelled_pair
from mmchange_core.io.raster import read_images
from mmchange_core.data.layouts import detect_layout, resolve_dataset_root
from mmchange_core.data.normalize import normalize_batch
from mmchange_core.data.windows import TileGrid, iter_window_batches
from mmchange_core.inference.drift import DriftReport, measure_drift
from mmchange_core.text.features import checkpoint_text_provider
from mmchange_core.errors import InputError
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.inference.backends import export_model_file, open_model
from mmchange_core.models.export import (
    DEFAULT_OPSET,
    QUANTIZE_MODES,
    ExportResult,
    check_export_options,
    check_export_output,
    import_onnx_module,
)


@dataclass
class ExportOptions:
    """Settings of ``mmchange export``."""

    checkpoint: str = setting("", required("give the checkpoint to export"))
    output: str = setting("", required("give the output file with -o model.onnx"))
    opset: int = DEFAULT_OPSET
    quantize: str | None = setting(None, choice(*QUANTIZE_MODES))
    calibrate: str | None = None  # a dataset whose pairs calibrate --quantize int8
    calibrate_split: str = "train"
    calibration_windows: int = setting(32, positive())
    check: str | None = None  # a labelled dataset to compare the export with the fp32 torch network on
    check_split: str = "test"
    captions: str | None = None  # caption store for text models (default: the dataset's)
    overlap: int = setting(32, non_negative())


@dataclass
class ExportReport:
    """The export and, when asked, its check against the fp32 torch network."""

    export: ExportResult
    check: DriftReport | None = None
    calibration_pairs: int = 0
    calibration_windows: int = 0

    @property
    def speedup(self) -> float | None:
        """Seconds per pair of the fp32 torch network / of the export (check only)."""
        if self.check is None or not self.check.seconds_fast:
            return None
        return self.check.seconds_reference / self.check.seconds_fast

    def to_dict(self) -> dict[str, Any]:
        """The export as ``mmchange export --json`` prints it: the file, its check and its calibration."""
        from mmchange_core.config import to_dict

        data = to_dict(self.export)
        data["speedup"] = self.export.speedup
        data["calibration"] = {"pairs": self.calibration_pairs, "windows": self.calibration_windows}
        data["check"] = None if self.check is None else {**to_dict(self.check),
                                                         "f1_diff_points": self.check.f1_diff_points,
                                                         "speedup_vs_torch_fp32": self.speedup}
        return data


def calibration_batches(meta: CheckpointMeta, dataset: str | Path, split: str = "train", *, windows: int = 32,
                        captions: str | None = None) -> tuple[list[dict[str, np.ndarray]], int]:
    """Up to ``windows`` normalised tile-size windows of ``split``'s pairs as onnxruntime feeds (one window each),
    taken evenly across the pairs; text models get the pairs' caption embeddings. Returns (feeds, pairs used)."""
    root = resolve_dataset_root(dataset)
    layout = detect_layout(root)
    pairs = layout.pairs(split)
    per_pair = max(1, -(-windows // len(pairs)))
    pairs = pairs[:windows]
    provider = checkpoint_text_provider(meta, root, captions, pairs)
    emb_a = emb_b = None
    if provider is not None:
        emb_a, emb_b = provider(pairs)
    norm = meta.normalization
    feeds: list[dict[str, np.ndarray]] = []
    for i, pair in enumerate(pairs):
        image_a, image_b, _ = read_labelled_pair(pair, meta.imagery) if pair.label is not None else \
            (*read_images([pair.image_a, pair.image_b], None, meta.imagery), None)
        grid = TileGrid.plan(image_a.shape[0], image_a.shape[1], meta.tile_size, 0)
        step = max(1, len(grid) // per_pair)
        taken = 0
        for batch in iter_window_batches(grid, lambda y, h: image_a[y:y + h], lambda y, h: image_b[y:y + h], 1):
            index = batch.rows[0] * grid.columns + batch.cols[0]
            if index % step or taken >= per_pair:
                continue
            feed = {name: normalize_batch(torch.from_numpy(arr).permute(0, 3, 1, 2), norm.mean, norm.std).numpy()
                    for name, arr in (("image_a", batch.image_a), ("image_b", batch.image_b))}
            if emb_a is not None and emb_b is not None:
                feed["text_a"] = np.asarray(emb_a[i], dtype=np.float32).reshape(1, -1)
                feed["text_b"] = np.asarray(emb_b[i], dtype=np.float32).reshape(1, -1)
            feeds.append(feed)
            taken += 1
        if len(feeds) >= windows:
            break
    return feeds[:windows], min(len(pairs), i + 1)


def calibration_reader(feeds: list[dict[str, np.ndarray]]) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over ``feeds``."""
    import_onnx_module("onnxruntime", "--quantize int8")
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    return _Reader()


def run_export(options: ExportOptions) -> ExportReport:
    """Export ``options.checkpoint`` to ONNX; calibrate int8 on ``calibrate`` and check on ``check`` when given."""
    validate(options)
    if options.quantize == "int8" and not options.calibrate:
        raise InputError("--quantize int8 (static, onnxruntime's fast int8 kernels) needs calibration pairs: give "
                         "--calibrate DATASET (a folder of image pairs like the ones you will predict), or use "
                         "--quantize int8-dynamic (no calibration; slower than fp32 on CPUs, see the docs)")
    if options.calibrate and options.quantize != "int8":
        raise InputError("--calibrate is used by --quantize int8 only; add --quantize int8 or drop --calibrate")
    calibration, pairs, windows = None, 0, 0
    check_export_options(options.opset, options.quantize)  # before the model is read
    check_export_output(options.output)
    if options.check:  # refused before the export is written
        detect_layout(resolve_dataset_root(options.check)).require_labels(options.check_split)
    model = open_model(options.checkpoint)  # resolved once for the export and the check
    if options.quantize == "int8":
        meta = model.meta
        feeds, pairs = calibration_batches(meta, options.calibrate, options.calibrate_split,
                                           windows=options.calibration_windows, captions=options.captions)
        windows = len(feeds)
        calibration = calibration_reader(feeds)
    result = export_model_file(model, options.output, opset=options.opset, quantize=options.quantize,
                               calibration=calibration)
    check = None
    if options.check:
        check = measure_drift(options.checkpoint, options.check, options.check_split, device="cpu",
                              overlap=options.overlap, captions=options.captions, candidate=result.path)
    return ExportReport(result, check, pairs, windows)
