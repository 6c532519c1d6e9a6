"""The onnxruntime backend: an exported ``.onnx`` model behind :class:`InferenceRunner`'s interface.

:class:`OnnxRunner` takes the same normalised image batches and text embeddings as the torch runner
and returns the same main change logits, so :class:`~mmchange_core.inference.detector.ChangeDetector`
windows, blends and thresholds them exactly as for a torch checkpoint; the checkpoint metadata comes
from the model's ``metadata_props`` (see :mod:`mmchange_core.models.export`). onnxruntime is the
optional extra ``onnx``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmchange_core.device import resolve_device
from mmchange_core.errors import CheckpointError, InputError
from mmchange_core.io.images import check_regular_file
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.export import QUANTIZATION_KEY, meta_from_properties, onnx_session

#: The element type and shapes ``mmchange export`` writes (an int: a fixed axis; a letter: a dynamic one;
#: ``D``: the model's text width). Text inputs exist only for models that use text.
_FLOAT = "tensor(float)"
_IMAGE_SHAPE = ("N", "C", "H", "W")  # C: the model's input bands
_OUTPUT_SHAPE = ("N", "O", "H", "W")  # O: 1, or the model's classes
#: T: dynamic (1 or N rows: text shared by the batch or one per image), or fixed at 1 in files exported by
#: earlier mmchange versions (shared text only).
_TEXT_SHAPE = ("T", "D")


class OnnxRunner:
    """Runs an exported mmchange model with onnxruntime on the CPU; ``logits()`` as :class:`InferenceRunner`'s.

    Args:
        path: the ``.onnx`` file written by ``mmchange export``.
        device: ``auto`` or ``cpu`` (onnxruntime's CPU provider; a GPU request is refused in one line).
        precision: ``auto`` or ``fp32``: the graph runs at its own precision (fp32, or int8 when it was
            exported with ``--quantize``); bf16/fp16 are refused.
        compile: must be False (``torch.compile`` does not apply to an onnxruntime graph).
        threads: onnxruntime intra-op threads (default: torch's thread count, so both backends use the
            same cores).
    """

    cuda_graphs = False
    compiled = False
    channels_last = False
    fused_convs = "off"

    def __init__(self, path: str | Path, device: str | torch.device = "auto", precision: str = "auto", *,
                 compile: bool = False, threads: int | None = None) -> None:
        path = Path(path)
        if str(device) != "auto" and resolve_device(device).type != "cpu":
            raise InputError(f"{path.name} is an ONNX model, which mmchange runs with onnxruntime on the CPU; "
                             f"use --device cpu (or auto), or the torch checkpoint for --device {device}")
        if precision not in ("auto", "fp32", "int8"):
            raise InputError(f"--precision {precision} does not apply to the ONNX model {path.name}: it runs at the "
                             f"precision it was exported with (fp32, or int8 with 'mmchange export --quantize int8'); "
                             f"drop --precision")
        if compile:
            raise InputError(f"--compile does not apply to the ONNX model {path.name} (onnxruntime optimises the graph "
                             f"itself); drop --compile")
        try:
            check_regular_file(path, "ONNX model")
        except InputError as exc:
            raise CheckpointError(str(exc)) from None
        try:
            self.session = onnx_session(path, threads=threads or torch.get_num_threads())
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors (InvalidProtobuf, Fail, ...)
            first = " ".join(str(exc).split())[:200]
            raise CheckpointError(f"onnxruntime cannot load {path} ({first}); export it again with "
                                  f"'mmchange export'") from exc
        properties = dict(self.session.get_modelmeta().custom_metadata_map)
        self.path = path
        #: The checkpoint metadata the model carries (tile size, threshold, normalisation, text pipeline).
        self.meta: CheckpointMeta = meta_from_properties(properties, path)
        self.config = self.meta.model
        self.quantization = properties.get(QUANTIZATION_KEY, "none")
        self.precision = "fp32" if self.quantization == "none" else self.quantization
        if precision != "auto" and precision != ("int8" if self.precision.startswith("int8") else "fp32"):
            raise InputError(f"{path.name} is an {self.precision} ONNX model, so --precision {precision} does not apply; "
                             f"drop --precision, or give the torch checkpoint (--precision int8 makes and caches its "
                             f"certified int8 export)")
        #: The accuracy certificate of a certified int8 export (see mmchange_core.inference.int8), else None.
        self.certificate: Any = None
        self.device = torch.device("cpu")
        self.input_names = [i.name for i in self.session.get_inputs()]
        problem = signature_problem(self.session, self.config.uses_text, self.config.text_dim,
                                    self.config.in_channels, self.config.outputs)
        if problem is not None:
            raise CheckpointError(f"{path} {problem}; export it with 'mmchange export'")
        #: Text inputs whose first axis is fixed at 1 (exported by an earlier mmchange): one embedding shared
        #: by the batch, no per-window text.
        self.shared_text_only = {value.name for value in self.session.get_inputs()
                                 if value.name in ("text_a", "text_b") and isinstance((value.shape or [None])[0], int)}
        #: Seconds spent in the first call of each new input shape (onnxruntime's lazy allocations).
        self.warmup_seconds: dict[tuple, float] = {}

    @property
    def uses_text(self) -> bool:
        """Whether the model needs text embeddings."""
        return self.config.uses_text

    def _feed(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None,
              text_b: torch.Tensor | None) -> dict[str, np.ndarray]:
        feed = {"image_a": _array(img_a), "image_b": _array(img_b)}
        if self.uses_text:
            if text_a is None or text_b is None:
                raise InputError(f"this {self.config.variant} model needs text embeddings for both dates")
            batch, dim = feed["image_a"].shape[0], self.config.text_dim
            for name, text in (("text_a", text_a), ("text_b", text_b)):
                text = _array(text)
                if text.ndim == 0 or text.shape[-1] != dim:
                    raise InputError(f"{name} has shape {list(text.shape)}; the ONNX model takes [1, {dim}] (shared "
                                     f"by the batch) or [{batch}, {dim}] (one per window)")
                text = text.reshape(-1, dim)
                if text.shape[0] not in (1, batch):
                    raise InputError(f"{name} has {text.shape[0]} embeddings for a batch of {batch} windows; give one "
                                     f"shared by the batch ([1, {dim}]) or one per window ([{batch}, {dim}])")
                if text.shape[0] != 1 and name in self.shared_text_only:
                    if not (text == text[:1]).all():
                        raise InputError(f"{self.path.name} takes one {name} embedding shared by the batch ([1, "
                                         f"{dim}]: exported by an earlier mmchange); export the model again with "
                                         f"this mmchange to run windows of different captions in one batch")
                    text = text[:1]
                feed[name] = text
        return feed

    @torch.no_grad()
    def logits(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None = None,
               text_b: torch.Tensor | None = None) -> torch.Tensor:
        """Main change logits ``[B, O, H, W]`` (float32, CPU; O = 1, or K classes) of normalised image batches
        ``[B, C, H, W]``."""
        feed = self._feed(img_a, img_b, text_a, text_b)
        key = tuple(array.shape for array in feed.values())
        start = time.perf_counter()
        (out,) = self.session.run(["logits"], feed)
        if key not in self.warmup_seconds:
            self.warmup_seconds[key] = time.perf_counter() - start
        return torch.from_numpy(out)

    def probabilities(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None = None,
                      text_b: torch.Tensor | None = None) -> torch.Tensor:
        """Change probabilities ``[B, 1, H, W]`` (K-class models: class probabilities ``[B, K, H, W]``)."""
        logits = self.logits(img_a, img_b, text_a, text_b)
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _expected_text(expected: Sequence[Any]) -> str:
    """``expected`` as the message names it: a text axis ``T`` reads ``[1, D] or [N, D]``."""
    if expected and expected[0] == "T":
        return f"{_shape_text((1, *expected[1:]))} or {_shape_text(('N', *expected[1:]))}"
    return _shape_text(expected)


def _io_problem(kind: str, value: Any, expected: Sequence[Any]) -> str | None:
    """Why the graph's input/output ``value`` (an onnxruntime NodeArg) differs from ``expected``, or None.

    ``expected``: the exported shape, an int for a fixed axis and a letter for a dynamic one (``T``: dynamic, or
    fixed at 1).
    """
    wanted = f"float32 {_expected_text(expected)}"
    if value.type != _FLOAT:
        return f"has {kind} '{value.name}' of type {value.type}, but mmchange exports {wanted}"
    shape = list(value.shape or [])
    if len(shape) != len(expected):
        return (f"has {kind} '{value.name}' of rank {len(shape)} (shape {_shape_text(shape)}), but mmchange "
                f"exports {wanted}")
    for axis, (got, want) in enumerate(zip(shape, expected)):
        if isinstance(got, int) and got > 0 and isinstance(want, int) and got != want:
            return (f"has {kind} '{value.name}' of shape {_shape_text(shape)} (axis {axis} is {got}, not "
                    f"{want}), but mmchange exports {wanted}")
        if isinstance(got, int) and got > 1 and want == "T":
            return (f"has {kind} '{value.name}' of shape {_shape_text(shape)} (axis {axis} is {got}, not 1 or "
                    f"dynamic), but mmchange exports {wanted}")
    return None


def signature_problem(session: Any, uses_text: bool, text_dim: int, in_channels: int = 3,
                      outputs: int = 1) -> str | None:
    """What in ``session``'s inputs and outputs differs from what ``mmchange export`` writes (None: nothing).

    Checked: the input names (``image_a``, ``image_b`` and, for text models, ``text_a``, ``text_b``; no
    others), an output ``logits``, and the element type (float32), rank and fixed axes of each of
    them and of ``probability`` when present. The answer completes ``"<path> ..."``.
    """
    outputs_count = outputs
    inputs = {value.name: value for value in session.get_inputs()}
    outputs = {value.name: value for value in session.get_outputs()}
    expected_inputs = {"image_a": _IMAGE_SHAPE, "image_b": _IMAGE_SHAPE}
    if uses_text:
        expected_inputs.update(text_a=_TEXT_SHAPE, text_b=_TEXT_SHAPE)
    model = "its metadata's text model" if uses_text else "its metadata's image-only model"
    listed = f"inputs: {', '.join(inputs) or 'none'}"
    for name in expected_inputs:
        if name not in inputs:
            return f"has no input '{name}' ({listed}), which {model} needs"
    for name in inputs:
        if name not in expected_inputs:
            return f"has an input '{name}' that {model} does not take ({listed})"
    if "logits" not in outputs:
        return f"has no output 'logits' (outputs: {', '.join(outputs) or 'none'})"
    for name, shape in expected_inputs.items():
        shape = tuple(text_dim if axis == "D" else in_channels if axis == "C" else axis for axis in shape)
        if (problem := _io_problem("input", inputs[name], shape)) is not None:
            return problem
    for name in ("logits", "probability"):
        shape = tuple(outputs_count if axis == "O" else axis for axis in _OUTPUT_SHAPE)
        if name in outputs and (problem := _io_problem("output", outputs[name], shape)) is not None:
            return problem
    return None


def _array(tensor: Any) -> np.ndarray:
    array = tensor.detach().cpu().float().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    return np.ascontiguousarray(array, dtype=np.float32)
