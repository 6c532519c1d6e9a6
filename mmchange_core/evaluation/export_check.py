"""``mmchange export`` as a library call: the ONNX export, int8 calibrated on real pairs, checked against fp32.

:func:`run_export` writes the ``.onnx`` file (:func:`mmchange_core.inference.backends.export_model_file`);
``--quantize int8`` calibrates onnxruntime's static quantisation on windows of a dataset's pairs
(:func:`calibration_reader`), and ``check`` predicts a labelled split with the plain fp32 torch
network and with the exported model (:func:`~mmchange_core.inference.drift.measure_drift`): mask
agreement, F1 of both, and seconds per pair of both, so what quantisation costs is measured, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


from mmchange_core.config import choice, non_negative, positive, required, setting, validate
from mmchange_core.data.layouts import detect_layout, resolve_dataset_root
from mmchange_core.inference.drift import DriftReport, measure_drift
from mmchange_core.errors import InputError
from mmchange_core.inference.backends import export_model_file, open_model
from mmchange_core.inference.int8 import Calibration, calibration_batches, calibration_reader, make_int8
from mmchange_core.models.export import (
    DEFAULT_OPSET,
    QUANTIZE_MODES,
    ExportResult,
    check_export_options,
    check_export_output,
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
    certificate: Any = None
    """The int8 export's accuracy certificate (``--quantize int8`` of a torch checkpoint; in ``NAME.int8.json``)."""

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
        data["certificate"] = None if self.certificate is None else self.certificate.to_dict()
        data["check"] = None if self.check is None else {**to_dict(self.check),
                                                         "f1_diff_points": self.check.f1_diff_points,
                                                         "speedup_vs_torch_fp32": self.speedup}
        return data


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
    certificate = None
    if options.quantize == "int8" and model.backend.name == "torch":  # certified, with its record beside it
        source = Calibration(options.calibrate, options.calibrate_split, options.calibration_windows, options.captions)
        made = make_int8(model, source, check_export_output(options.output))
        result, certificate = made.export, made.certificate
        windows = certificate.calibration_windows
        pairs = min(windows, len(source.layout.pairs(options.calibrate_split)))
    else:
        if options.quantize == "int8":  # an fp32 .onnx quantised: calibrated, not certified (no torch network)
            feeds, pairs = calibration_batches(model.meta, options.calibrate, options.calibrate_split,
                                               windows=options.calibration_windows, captions=options.captions)
            windows = len(feeds)
            calibration = calibration_reader(feeds)
        result = export_model_file(model, options.output, opset=options.opset, quantize=options.quantize,
                                   calibration=calibration)
    check = None
    if options.check:
        check = measure_drift(options.checkpoint, options.check, options.check_split, device="cpu",
                              overlap=options.overlap, captions=options.captions, candidate=result.path)
    return ExportReport(result, check, pairs, windows, certificate)
