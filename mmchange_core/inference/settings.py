"""The settings of running a trained detector: one dataclass, one rule per field, nested in every command.

``predict``, ``eval``, ``robustness`` and the demo each hold a :class:`DetectorSettings` under the key
``detector`` (``--set detector.tile_size=128``; the flat ``--set tile_size=128`` still loads, with a
one-line warning). The CLI declares its options once (``mmchange_cli.options.detector_options``), the
library hands it to :meth:`ChangeDetector.load <mmchange_core.inference.detector.ChangeDetector.load>`,
and :func:`settings_record` writes out the values a detector actually ran with (the checkpoint's tile
size and threshold where the settings left them unset) for the manifest, the STAC Item and metrics.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmchange_core.config import DETECTOR_PRECISION, DEVICE, SIZE, THRESHOLD, non_negative, positive, setting, to_dict
from mmchange_core.data.windows import DEFAULT_OVERLAP

#: Windows per network call unless a command says otherwise (the same for every command, so that
#: ``predict`` and ``eval`` batch the windows of a scene identically and give identical masks).
DEFAULT_BATCH_SIZE = 4
#: DataLoader worker processes that read and decode the pairs of ``eval`` and ``robustness``.
DEFAULT_WORKERS = 2


@dataclass
class DetectorSettings:
    """How a trained model runs: where, at which precision, in which windows, at which threshold."""

    device: str = setting("auto", DEVICE)
    """``auto`` (the first GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: str = setting("auto", DETECTOR_PRECISION)
    """``auto`` (bf16 on GPUs; on CPUs a certified int8 export within the bound when the checkpoint has one,
    else fp32), ``fp32``, ``bf16``, ``fp16`` or ``int8`` (CPU: the calibrated, certified int8 export)."""
    calibrate: str | None = None
    """``--precision int8``: the dataset (folder or pair list) whose ``train`` split calibrates the int8 export
    when none is cached; ``None``: the training dataset the checkpoint records."""
    accept_int8_drift: bool = False
    """Run an int8 export whose certificate is below the bound (refused otherwise)."""
    compile: bool = False
    """``torch.compile`` the network (GPU; the compiled code is cached on disk for later runs)."""
    tile_size: int | None = setting(None, SIZE, renamed_from=["tile"])
    """Window side in pixels (a multiple of 32); ``None``: the checkpoint's training crop."""
    overlap: int = setting(DEFAULT_OVERLAP, non_negative())
    """Minimum overlap of neighbouring windows in pixels; logits are blended across it."""
    batch_size: int = setting(DEFAULT_BATCH_SIZE, positive())
    """Windows per network call."""
    threshold: float | None = setting(None, THRESHOLD)
    """Decision threshold on the change probability; ``None``: the checkpoint's (0.5 unless tuned)."""
    workers: int = setting(DEFAULT_WORKERS, non_negative(), renamed_from=["num_workers"])
    """DataLoader worker processes of ``eval`` and ``robustness`` (``predict`` reads with its own thread)."""
    bands: tuple[int, ...] | None = None
    """File bands read, 1-based as GDAL counts (``4,3,2``); ``None``: the checkpoint's (RGB for RGB models).
    A model's band count cannot change: an override of another count is refused."""
    captions: str | None = setting(None, renamed_from=["caption_store"])
    """Captions of text models: a caption store (eval, robustness; default: the dataset folder's) or a
    YAML/JSON file of captions by image name (predict; default: caption on the fly)."""


#: The settings that change a detector's numbers (not where its captions or pairs come from).
OUTPUT_SETTINGS = ("device", "precision", "compile", "tile_size", "overlap", "batch_size", "threshold", "bands")


def settings_record(settings: DetectorSettings, *, backend: str, checkpoint: str, chosen: str | None = None,
                    outputs_only: bool = False, int8: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a detector ran with, as written to the manifest, the STAC Item and metrics.json.

    ``settings`` are the resolved ones (:attr:`ChangeDetector.settings`); ``outputs_only`` keeps the
    keys that change the outputs (:data:`OUTPUT_SETTINGS`), for fingerprints that decide what a rerun redoes.
    ``chosen`` says why this checkpoint when none was named (the most recent training run's). ``int8``: the
    int8 export that ran (its file, sha256 and certificate), under the key ``int8``.
    """
    values = to_dict(settings)
    if outputs_only:  # the kind of device changes the numbers, not which one of a kind (cuda:0 or cuda:1)
        record = {"backend": backend, **{key: values[key] for key in OUTPUT_SETTINGS},
                  "device": str(values["device"]).split(":")[0]}
        if int8 is not None:  # another int8 export gives other numbers
            record["int8_sha256"] = int8.get("sha256")
        return record
    record = {"checkpoint": checkpoint, "backend": backend, **values}
    if chosen is not None:
        record["checkpoint_chosen"] = chosen
    if int8 is not None:
        record["int8"] = int8
    return record

