"""An int8 export and its accuracy certificate on disk: ``NAME.int8.onnx`` with ``NAME.int8.json`` beside it.

The JSON record binds the int8 graph to the checkpoint it was made from (the checkpoint's sha256)
and to its own bytes (the ``.onnx`` file's sha256), and holds the :class:`Int8Certificate` measured
when it was made. The same pair of files is written beside a trained checkpoint (``train`` makes
``best.int8.onnx``), into the int8 cache (:mod:`mmchange_core.inference.int8`) and into a Hub
model folder (``model.int8.onnx``, ``mmchange push``); :func:`read_int8_record` checks both
bindings, so a record of another checkpoint (stale) or of damaged bytes (corrupt) is never used.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmchange_core.errors import CheckpointError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.hashing import sha256_file
from mmchange_core.io.jsonio import strict_json

#: Suffixes of the two files, after the checkpoint's stem (``best.safetensors`` -> ``best.int8.onnx``).
INT8_ONNX_SUFFIX, INT8_RECORD_SUFFIX = ".int8.onnx", ".int8.json"
RECORD_FORMAT, RECORD_VERSION = "mmchange-int8", 1
#: The documented bound: an int8 model is used without ``--accept-int8-drift`` only when its masks agree
#: with fp32's on at least this share of held-out pixels ...
BOUND_AGREEMENT = 0.995
#: ... and, where the held-out pairs are labelled, its F1 is at most this much below fp32's.
BOUND_F1_DROP = 0.005


@dataclass
class Int8Certificate:
    """What an int8 export was measured to do, when it was made, against the fp32 network it came from."""

    checkpoint_sha256: str
    """sha256 of the checkpoint file the export was made from."""
    calibration: str
    """Where the calibration windows came from (dataset, split, windows)."""
    calibration_windows: int
    held_out: str
    """What it was measured on: a labelled split kept out of calibration, or windows kept out of it."""
    labelled: bool
    windows: int
    """Held-out windows measured."""
    pixels: int
    agreement: float
    """Share of held-out pixels whose change/no-change decision is the same at int8 and fp32."""
    f1_fp32: float | None = None
    """F1 of the fp32 network on the labelled held-out pairs (None without labels)."""
    f1_int8: float | None = None
    max_abs_prob_diff: float = 0.0
    seconds_fp32: float = 0.0
    """Median seconds per held-out pair (or window) of the plain fp32 torch network."""
    seconds_int8: float = 0.0
    calibration_key: str = ""
    """sha256 of the calibration data's identity (files, sizes, times, split, windows)."""
    versions: dict[str, str] = field(default_factory=dict)
    made: str = ""
    bound_agreement: float = BOUND_AGREEMENT
    bound_f1_drop: float = BOUND_F1_DROP

    @property
    def f1_drop(self) -> float | None:
        """How much lower int8's F1 is than fp32's (negative: higher); None without labels."""
        if self.f1_fp32 is None or self.f1_int8 is None:
            return None
        return self.f1_fp32 - self.f1_int8

    def problem(self) -> str | None:
        """Why the export is below the bound (one clause), or None when it is within it."""
        reasons = []
        if self.agreement < self.bound_agreement:
            reasons.append(f"its masks agree with fp32 on {self.agreement:.2%} of held-out pixels, below "
                           f"{self.bound_agreement:.1%}")
        drop = self.f1_drop
        if drop is not None and drop > self.bound_f1_drop:
            reasons.append(f"its F1 is {self.f1_int8:.4f} against fp32's {self.f1_fp32:.4f}, more than "
                           f"{self.bound_f1_drop} lower")
        return "; ".join(reasons) or None

    @property
    def within_bound(self) -> bool:
        """Whether the export may be used without ``--accept-int8-drift``."""
        return self.problem() is None

    def figures(self) -> str:
        """The certificate in a few words: agreement, F1 of both, what it was measured on."""
        text = f"agreement with fp32 {self.agreement:.2%} of {self.pixels:,} held-out pixels"
        if self.f1_fp32 is not None and self.f1_int8 is not None:
            text += f", F1 {self.f1_int8:.4f} (fp32 {self.f1_fp32:.4f})"
        return f"{text} on {self.held_out}"

    def to_dict(self) -> dict[str, Any]:
        """The certificate as JSON data, with its derived figures."""
        return {**dataclasses.asdict(self), "f1_drop": self.f1_drop, "within_bound": self.within_bound}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Int8Certificate:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def int8_files(checkpoint: str | Path) -> tuple[Path, Path]:
    """The int8 export and record that belong beside ``checkpoint`` (``best.safetensors`` -> ``best.int8.*``)."""
    path = Path(checkpoint)
    stem = path.name[:-len(".pth.tar")] if path.name.lower().endswith(".pth.tar") else path.stem
    return path.with_name(stem + INT8_ONNX_SUFFIX), path.with_name(stem + INT8_RECORD_SUFFIX)


def record_of(onnx_path: str | Path) -> Path:
    """The record file beside an int8 export (``x.int8.onnx`` -> ``x.int8.json``; ``x.onnx`` -> ``x.json``)."""
    path = Path(onnx_path)
    name = path.name
    base = name[:-len(INT8_ONNX_SUFFIX)] if name.endswith(INT8_ONNX_SUFFIX) else path.stem
    return path.with_name(base + (INT8_RECORD_SUFFIX if name.endswith(INT8_ONNX_SUFFIX) else ".json"))


def write_int8_record(onnx_path: str | Path, certificate: Int8Certificate, record: str | Path | None = None) -> Path:
    """Write the record of the int8 export at ``onnx_path`` (its sha256 and ``certificate``), atomically."""
    onnx_path = Path(onnx_path)
    data = {"format": RECORD_FORMAT, "version": RECORD_VERSION, "onnx": onnx_path.name,
            "onnx_sha256": sha256_file(onnx_path), "certificate": certificate.to_dict()}
    return atomic_write_text(Path(record) if record is not None else record_of(onnx_path),
                             strict_json(data, indent=2) + "\n")


def read_int8_record(onnx_path: str | Path, checkpoint_sha256: str | None = None,
                     record: str | Path | None = None) -> Int8Certificate:
    """The certificate of the int8 export at ``onnx_path``, after checking that the record is whole, that it
    describes these bytes and (given ``checkpoint_sha256``) this checkpoint.

    Raises :class:`Int8RecordError` with ``stale`` True when the export was made from another checkpoint.
    """
    onnx_path = Path(onnx_path)
    record = Path(record) if record is not None else record_of(onnx_path)
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError("not an mmchange int8 record")
        certificate = Int8Certificate.from_dict(data["certificate"])
        expected = str(data["onnx_sha256"])
    except FileNotFoundError:
        raise Int8RecordError(f"{onnx_path} has no record {record.name} beside it") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Int8RecordError(f"the int8 record {record} is damaged ({type(exc).__name__})") from None
    if checkpoint_sha256 is not None and certificate.checkpoint_sha256 != checkpoint_sha256:
        raise Int8RecordError(f"the int8 export {onnx_path} was made from another version of the checkpoint",
                              stale=True)
    try:
        actual = sha256_file(onnx_path)
    except OSError as exc:
        raise Int8RecordError(f"the int8 export {onnx_path} cannot be read ({exc.strerror or exc})") from None
    if actual != expected:
        raise Int8RecordError(f"the int8 export {onnx_path} does not match its record (damaged or replaced)")
    return certificate


class Int8RecordError(CheckpointError):
    """An int8 export that cannot be trusted: missing or damaged record, changed bytes, or another checkpoint's."""

    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale
