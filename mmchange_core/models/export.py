"""The ONNX form of a checkpoint: export of the plain fp32 network, optional int8, metadata in the file.

``mmchange export`` writes one self-contained ``.onnx`` file that onnxruntime runs without mmchange:

* inputs (float32): ``image_a``, ``image_b`` ``[N, C, H, W]`` (C: the input bands, 3 for RGB), normalised as
  ``(pixels / 255 - mean) / std`` with the metadata's normalisation; N, H and W are dynamic (H and W any multiples of 32).
  Text models also take ``text_a``, ``text_b`` ``[T, D]``, the caption embeddings of the two dates, with a
  dynamic T (axis ``text_batch``) of 1 (one embedding per date shared by every image of the batch: the
  windows of one scene) or N (one per image: windows of several pairs with different captions in one batch),
  as the torch network takes them. Files of earlier mmchange versions have a fixed ``[1, D]``;
* outputs: ``logits`` ``[N, 1, H, W]`` (what mmchange's windowing blends, so the ``.onnx`` path blends
  exactly as the torch path does) and ``probability`` = sigmoid(logits) (for plain onnxruntime users);
* ``metadata_props``: the full :class:`CheckpointMeta` JSON (model config, tile size, normalisation,
  threshold, text pipeline) under :data:`META_KEY`, plus format, exporter, quantisation and I/O notes.

The graph comes from torch's dynamo exporter (``torch.onnx.export(dynamo=True)``) on the plain fp32
network with folded BatchNorm. Shape-dependent Python branches would be frozen at the example's size,
so they are traced through shape-free equivalents (same values): ITFF's edge padding (reflect, or
replicate on maps of 3 pixels or less), the spatial-group gate's single-pixel case, and the choice
between shared and per-image text (the graph gathers row ``i % T`` of the text for image ``i``). The
CPU runner's rewrites (``inference.runner._rewrite_for_cpu``) are not exported: onnxruntime does its own
graph optimisation.

``quantize="int8"`` writes onnxruntime's static int8 quantisation (calibrated on real windows; see
:mod:`mmchange_core.evaluation.export_check`), ``"int8-dynamic"`` its dynamic one; both are timed
against the fp32 graph in the same run, so a slower int8 is reported, not hidden.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from mmchange_core.environment import __version__
from mmchange_core.errors import CheckpointError, InputError, MMChangeError, install_hint, require_extra
from mmchange_core.io.atomic import atomic_write_bytes, refuse_unsafe
from mmchange_core.io.images import check_regular_file
from mmchange_core.io.jsonio import strict_json
from mmchange_core.models import itff
from mmchange_core.models.blocks import SpatialGroupEnhance
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.fusion import fold_batchnorm
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.mmchange import MMChange

ONNX_EXTRA = install_hint("onnx")
ONNX_SUFFIX = ".onnx"
FORMAT = "mmchange-onnx"
FORMAT_VERSION = "1"
#: metadata_props keys.
FORMAT_KEY, VERSION_KEY, META_KEY = "mmchange_format", "mmchange_format_version", "mmchange_meta"
QUANTIZATION_KEY, EXPORTER_KEY, IO_KEY = "mmchange_quantization", "mmchange_exporter", "mmchange_io"
#: ``--quantize`` values. ``int8``: onnxruntime's static quantisation (QDQ, uint8 activations and int8
#: weights, calibrated on real pairs), which runs on its fast integer kernels (VNNI/AMX); ``int8-dynamic``:
#: dynamic quantisation (no calibration), whose ConvInteger kernels are slower than fp32 on CPUs.
QUANTIZE_MODES = ("int8", "int8-dynamic")
#: The dynamo exporter writes opset 18 (torchlib's); newer opsets go through onnx's version converter.
MIN_OPSET, DEFAULT_OPSET = 18, 18
INPUT_NAMES = ("image_a", "image_b", "text_a", "text_b")
OUTPUT_NAMES = ("logits", "probability")
#: Largest side the exported graph accepts, in units of 32 pixels.
_MAX_SIDE_32 = 2048
IO_DESCRIPTION = (
    "inputs image_a, image_b: float32 [N, C, H, W] (C: input bands), (pixels / 255 - mean) / std with the "
    "normalization in "
    f"{META_KEY}, H and W multiples of 32; text models also text_a, text_b: float32 [1 or N, D] caption "
    "embeddings of the two dates (the text pipeline in " + META_KEY + "), [1, D] shared by the whole batch or "
    "[N, D] one per image. outputs logits and probability = sigmoid(logits): float32 [N, 1, H, W]; change where "
    "probability > threshold. K-class models "
    "(classes in " + META_KEY + "): logits and probability = softmax(logits) are [N, K, H, W], no change first; "
    "change where 1 - probability[:, 0] > threshold, of the most probable other class")


def import_onnx_module(name: str, what: str) -> ModuleType:
    """Import ``onnx``/``onnxruntime``/``onnxscript``, or raise a one-line error naming the ``onnx`` extra."""
    return require_extra(name, what, "onnx")


# --------------------------------------------------------------------------------------------------
# shape-free equivalents of the network's shape-dependent branches (export only)


def shape_free_edge_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """:func:`itff.edge_pad` as index gathers, so the reflect/replicate choice is made in the graph, not frozen."""
    rows = torch.arange(-pad, x.shape[-2] + pad, device=x.device)
    cols = torch.arange(-pad, x.shape[-1] + pad, device=x.device)
    last_row, last_col = rows[-1] - pad, cols[-1] - pad  # height - 1, width - 1 as tensors
    reflect = torch.minimum(last_row, last_col) >= pad

    def index(i: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        mirrored = last - (last - i.abs()).abs()
        return torch.where(reflect, mirrored, torch.minimum(i.clamp(min=0), last))

    return x.index_select(-2, index(rows, last_row)).index_select(-1, index(cols, last_col))


class _ShapeFreeGroupEnhance(SpatialGroupEnhance):
    """:class:`SpatialGroupEnhance` with its one-pixel case (no spread: std 1) chosen in the graph."""

    # duplicates (deliberate): repeats SpatialGroupEnhance.forward with a shape-free branch, so that the network's own
    # ops stay bit-equal to the authors' and only the exported graph traces this copy
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = self.groups
        xg = x.reshape(b * g, c // g, h, w)
        sim = (xg * xg.mean(dim=(2, 3), keepdim=True)).sum(dim=1).reshape(b * g, h * w)
        sim = sim - sim.mean(dim=1, keepdim=True)
        pixels = torch.ones_like(sim[:1]).sum()
        std = torch.where(pixels > 1, sim.std(dim=1, keepdim=True) + 1e-5, torch.ones_like(sim))
        sim = (sim / std).reshape(b, g, h, w) * self.weight + self.bias
        gate = torch.sigmoid(sim).reshape(b * g, 1, h, w)
        return (xg * gate).reshape(b, c, h, w)


@contextlib.contextmanager
def _shape_free_padding() -> Iterator[None]:
    original = itff.edge_pad
    itff.edge_pad = shape_free_edge_pad
    try:
        yield
    finally:
        itff.edge_pad = original


def _rows(x: torch.Tensor) -> torch.Tensor:
    """``x.shape[0]`` as a 0-d int64 tensor computed in the graph."""
    return torch.arange(x.shape[0], device=x.device)[-1] + 1


class _Exported(nn.Module):
    """The graph's signature: normalised images (and text embeddings) -> (logits, probability)."""

    def __init__(self, network: MMChange) -> None:
        super().__init__()
        self.network = network

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor, text_a: torch.Tensor | None = None,
                text_b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if text_a is not None and text_b is not None:
            # text [T, D] with T = 1 (shared) or N (per image) -> [N, D]: a gather of row i % T, so the graph
            # takes both without a branch on T frozen at the example's value (T as a tensor: torchlib's
            # remainder takes no symbolic scalar)
            images = torch.arange(image_a.shape[0], device=image_a.device)
            text_a = text_a.index_select(0, images % _rows(text_a))
            text_b = text_b.index_select(0, images % _rows(text_b))
        logits = self.network(image_a, image_b, text_a, text_b, main_only=True)[0]
        if logits.shape[1] == 1:
            return logits, torch.sigmoid(logits)
        return logits, torch.softmax(logits, dim=1)  # K classes: class probabilities


def exportable_network(model: MMChange) -> nn.Module:
    """The fp32 network as it is exported: a copy with folded BatchNorm and shape-free blocks."""
    net = fold_batchnorm(model.float().cpu())
    for module in net.modules():
        if type(module) is SpatialGroupEnhance:
            module.__class__ = _ShapeFreeGroupEnhance
    return _Exported(net).eval()


# --------------------------------------------------------------------------------------------------
# export


@dataclass
class ExportResult:
    """What :func:`export_checkpoint` wrote and measured."""

    path: Path
    source: str
    exporter: str
    opset: int
    quantization: str
    inputs: list[str]
    outputs: list[str]
    size_mb: float
    seconds: float
    check_size: int
    """Side of the random pair the graph was checked on against the torch network."""
    max_abs_logit_diff: float
    """Largest |logit| difference between onnxruntime and the fp32 torch network on that pair."""
    fp32_max_abs_logit_diff: float | None = None
    """The same for the fp32 graph before quantisation (``None`` without ``--quantize``)."""
    seconds_per_batch: float | None = None
    """Median onnxruntime seconds of one batch of 4 random windows at the tile size (``--quantize`` only)."""
    fp32_seconds_per_batch: float | None = None
    """The same for the fp32 graph, measured in the same run."""

    @property
    def speedup(self) -> float | None:
        """fp32 seconds / quantised seconds on the random batch (above 1: int8 is faster)."""
        if not self.seconds_per_batch or not self.fp32_seconds_per_batch:
            return None
        return self.fp32_seconds_per_batch / self.seconds_per_batch


def check_export_options(opset: int, quantize: str | None) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise InputError(f"--opset {opset} cannot be exported: torch's dynamo exporter writes opset {MIN_OPSET} or "
                         f"newer (and older opsets lack ops the network needs); give --opset {DEFAULT_OPSET} or more")
    onnx = import_onnx_module("onnx", "mmchange export")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise InputError(f"--opset {opset} cannot be exported: the installed onnx {onnx.__version__} knows opsets up "
                         f"to {newest}; give --opset {DEFAULT_OPSET}..{newest}")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        hint = " (fp16/bf16 graphs are not exported: onnxruntime's CPU kernels are fp32/int8)" \
            if str(quantize).lower() in ("fp16", "bf16", "float16", "half") else ""
        raise InputError(f"--quantize {quantize} cannot be exported{hint}; choose one of {', '.join(QUANTIZE_MODES)}")


def _example_inputs(config: ModelConfig, height: int, width: int, batch: int = 2, seed: int = 0,
                    text_rows: int = 1) -> tuple[torch.Tensor, ...]:
    """Random normalised images ``[batch, C, height, width]`` and, for text models, text ``[text_rows, D]``."""
    generator = torch.Generator().manual_seed(seed)
    images = tuple(torch.randn(batch, config.in_channels, height, width, generator=generator) for _ in range(2))
    if not config.uses_text:
        return images
    return images + tuple(torch.randn(text_rows, config.text_dim, generator=generator) for _ in range(2))


def _dynamo_export(model: MMChange, opset: int) -> Any:
    """The ONNX ModelProto of ``model`` from ``torch.onnx.export(dynamo=True)`` with dynamic N, H and W."""
    import_onnx_module("onnxscript", "mmchange export")
    from torch.export import Dim

    wrapped = exportable_network(model)
    batch, rows, cols = Dim("batch", min=1, max=4096), Dim("height32", min=1, max=_MAX_SIDE_32), \
        Dim("width32", min=1, max=_MAX_SIDE_32)
    image = {0: batch, 2: 32 * rows, 3: 32 * cols}
    shapes: dict[str, Any] = {"image_a": image, "image_b": image}
    if model.uses_text:
        text = {0: Dim("text_batch", min=1, max=4096)}
        shapes.update(text_a=text, text_b=text)
    names = list(INPUT_NAMES if model.uses_text else INPUT_NAMES[:2])
    # one text row per image: an example text axis of 1 would be specialised (torch.export fixes axes of size 1)
    example = _example_inputs(model.config, 64, 96, batch=2, text_rows=2)
    with _shape_free_padding(), torch.no_grad(), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(wrapped, example, None, dynamo=True, opset_version=opset,
                                        input_names=names, output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=shapes, optimize=True, verbose=False)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; one line for the user
            first = " ".join(str(exc).split())[:300]
            raise MMChangeError(f"torch's ONNX exporter failed on this {model.config.backbone}/{model.config.variant} "
                                f"network (torch {torch.__version__}, opset {opset}): {first}") from exc
    proto = program.model_proto
    # name the dynamic axes after what they are
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        labels = {4: ("batch", None, "height", "width"), 2: ("text_batch", None)}.get(len(dims), ())
        for dim, label in zip(dims, labels):
            if label is not None and dim.dim_param:
                dim.dim_param = label
    return proto


def onnx_session(source: Any, what: str = "the onnxruntime backend", threads: int | None = None) -> Any:
    """An onnxruntime CPU session of a file path or serialised model (``threads``: intra-op threads)."""
    ort = import_onnx_module("onnxruntime", what)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    data = str(source) if isinstance(source, Path) else source
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _run_logits(session: Any, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return session.run(["logits"], {name: t.numpy() for name, t in zip(names, inputs)})[0]


def _max_logit_diff(session: Any, config: ModelConfig, size: int, reference: Any) -> float:
    """Largest |logit| difference of ``session`` from ``reference`` (a torch network or an fp32 session)."""
    inputs = _example_inputs(config, size, size, batch=2, seed=1)
    if isinstance(reference, nn.Module):
        with torch.no_grad():
            expected = reference.eval()(*inputs, main_only=True)[0].numpy()
    else:
        expected = _run_logits(reference, inputs)
    return float(np.abs(_run_logits(session, inputs) - expected).max())


def _seconds_per_batch(session: Any, config: ModelConfig, size: int, repeats: int = 3) -> float:
    """Median seconds of ``session`` on 4 random windows of ``size`` (after one warm-up run)."""
    inputs = _example_inputs(config, size, size, batch=4, seed=2)
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    session.run(["logits"], feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(["logits"], feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _set_metadata(proto: Any, props: dict[str, str]) -> None:
    kept = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for p in kept:
        proto.metadata_props.add(key=p.key, value=p.value)
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)


def _quantize(proto: Any, mode: str, calibration: Any | None) -> Any:
    """The int8 version of the fp32 ModelProto ``proto`` (onnxruntime.quantization), as a ModelProto."""
    onnx = import_onnx_module("onnx", "--quantize")
    import_onnx_module("onnxruntime", "--quantize")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="mmchange-quantize-") as tmp:
        fp32, prepared, int8 = (Path(tmp) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32.write_bytes(proto.SerializeToString())
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        if mode == "int8-dynamic":
            quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8)
        else:
            if calibration is None:
                raise InputError("--quantize int8 needs calibration pairs: give --calibrate DATASET")
            # u8 activations with s8 weights per tensor: the combination onnxruntime's CPU kernels run fastest
            # (s8 activations or per-channel weights measured slower than fp32 here)
            quantize_static(str(prepared), str(int8), calibration, quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False)
        return onnx.load(str(int8))


def _properties(meta: CheckpointMeta, quantize: str | None, source: str) -> dict[str, str]:
    return {FORMAT_KEY: FORMAT, VERSION_KEY: FORMAT_VERSION, META_KEY: strict_json(meta.to_json_dict()),
            QUANTIZATION_KEY: quantize or "none", IO_KEY: IO_DESCRIPTION,
            EXPORTER_KEY: f"torch.onnx.export(dynamo=True), torch {torch.__version__}, mmchange {__version__}"
                          + (f", from {source}" if source else "")}


def _check_size(meta: CheckpointMeta) -> int:
    return max(64, min(meta.tile_size, 128))


def _write(proto: Any, output: Path, meta: CheckpointMeta, props: dict[str, str], quantize: str | None,
           calibration: Any | None, fp32_diff: float, start: float, source: str, opset: int,
           timed: bool = True) -> ExportResult:
    """Write the fp32 graph ``proto`` to ``output``, or its int8 version compared against it (and timed)."""
    onnx = import_onnx_module("onnx", "mmchange export")
    threads = torch.get_num_threads()
    size = _check_size(meta)
    diff, fp32, timing, fp32_timing = fp32_diff, None, None, None
    if quantize is not None:
        fp32_session = onnx_session(proto.SerializeToString(), threads=threads)
        proto = _quantize(proto, quantize, calibration)
        _set_metadata(proto, props)
        onnx.checker.check_model(proto)
        session = onnx_session(proto.SerializeToString(), threads=threads)
        fp32, diff = fp32_diff, _max_logit_diff(session, meta.model, size, fp32_session)
        if timed:
            fp32_timing = _seconds_per_batch(fp32_session, meta.model, meta.tile_size)
            timing = _seconds_per_batch(session, meta.model, meta.tile_size)
    atomic_write_bytes(output, proto.SerializeToString())
    return ExportResult(output, source, props.get(EXPORTER_KEY, "unknown").split(",")[0], opset, quantize or "none",
                        [i.name for i in proto.graph.input], list(OUTPUT_NAMES), output.stat().st_size / 2**20,
                        time.perf_counter() - start, size, diff, fp32, timing, fp32_timing)


def check_export_output(output: str | Path, *inputs: Path) -> Path:
    output = Path(output)
    if output.suffix.lower() != ONNX_SUFFIX:
        raise InputError(f"the export output {output} must end in {ONNX_SUFFIX} (for example model.onnx)")
    refuse_unsafe(output, "the export output")  # a link or FIFO at its name: refused before the export runs
    for path in inputs:
        if output.exists() and path.exists() and output.resolve() == path.resolve():
            raise InputError(f"the export output {output} is the input {path} itself; choose another file name")
    return output


def export_model(model: MMChange, meta: CheckpointMeta, output: str | Path, *, opset: int = DEFAULT_OPSET,
                 quantize: str | None = None, calibration: Any | None = None, source: str = "") -> ExportResult:
    """Export ``model`` (fp32, folded BatchNorm) with ``meta`` in its metadata to ``output`` (written atomically).

    The graph is checked with ``onnx.checker`` and run once by onnxruntime against the torch network
    on a random pair (:attr:`ExportResult.max_abs_logit_diff`). ``quantize`` writes its int8 version
    instead (``"int8"`` needs a ``calibration`` data reader), timed against the fp32 graph.
    """
    check_export_options(opset, quantize)
    output = check_export_output(output)
    if meta.model != model.config:
        raise InputError(f"metadata describes {meta.model}, but the model is {model.config}")
    onnx = import_onnx_module("onnx", "mmchange export")
    import_onnx_module("onnxruntime", "mmchange export")
    start = time.perf_counter()
    model = model.float().cpu().eval()
    proto = _dynamo_export(model, opset)
    props = _properties(meta, quantize, source)
    _set_metadata(proto, props)
    proto.doc_string = f"mmchange change detector ({meta.model.backbone}/{meta.model.variant}); {IO_DESCRIPTION}"
    onnx.checker.check_model(proto, full_check=True)
    size = _check_size(meta)
    fp32_diff = _max_logit_diff(onnx_session(proto.SerializeToString()), meta.model, size, model)
    if fp32_diff > 1e-3:
        raise MMChangeError(f"the exported graph disagrees with the torch network (max |logit difference| "
                            f"{fp32_diff:.3g} on a random {size}x{size} pair); this is an exporter bug, "
                            f"please report it with the torch ({torch.__version__}) and onnx versions")
    return _write(proto, output, meta, props, quantize, calibration, fp32_diff, start, source, opset)


def quantize_export(source: str | Path, output: str | Path, quantize: str, *,
                    calibration: Any | None = None, timed: bool = True) -> ExportResult:
    """Quantise an fp32 ``.onnx`` written by ``mmchange export`` (no new export); metadata is kept. ``timed``: time
    the quantised graph against the fp32 one on 4 random windows (callers that measure it themselves skip it)."""
    check_export_options(DEFAULT_OPSET, quantize)
    source = Path(source)
    output = check_export_output(output, source)
    start = time.perf_counter()
    proto = _load_proto(source, with_weights=True)
    props = {p.key: p.value for p in proto.metadata_props}
    meta = meta_from_properties(props, source)
    if props.get(QUANTIZATION_KEY, "none") != "none":
        raise InputError(f"{source} is already quantised ({props[QUANTIZATION_KEY]}); quantise the fp32 export")
    props[QUANTIZATION_KEY] = quantize
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), DEFAULT_OPSET)
    return _write(proto, output, meta, props, quantize, calibration, 0.0, start, source.name, opset, timed)


# --------------------------------------------------------------------------------------------------
# reading and updating the metadata


def meta_from_properties(props: dict[str, str], path: str | Path) -> CheckpointMeta:
    """The :class:`CheckpointMeta` stored in an exported model's ``metadata_props`` (one-line errors)."""
    if props.get(FORMAT_KEY) != FORMAT:
        raise CheckpointError(f"{path} is an ONNX model without mmchange metadata (no '{FORMAT_KEY}: {FORMAT}'); "
                              f"use a model written by 'mmchange export'")
    if props.get(VERSION_KEY) != FORMAT_VERSION:
        raise CheckpointError(f"{path} has mmchange ONNX format version {props.get(VERSION_KEY)!r}, but this "
                              f"mmchange reads {FORMAT_VERSION}; upgrade mmchange or export the checkpoint again")
    try:
        data = json.loads(props.get(META_KEY, ""))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return CheckpointMeta.from_json_dict(data)
    except (ValueError, MMChangeError) as exc:
        raise CheckpointError(f"{path}: invalid mmchange metadata ({' '.join(str(exc).split())}); export the "
                              f"checkpoint again with 'mmchange export'") from exc


def _load_proto(path: Path, with_weights: bool) -> Any:
    onnx = import_onnx_module("onnx", "reading .onnx models")
    try:
        check_regular_file(path, "ONNX model")
    except InputError as exc:
        raise CheckpointError(str(exc)) from None
    try:
        return onnx.load(str(path), load_external_data=with_weights)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(exc).__name__}); export it again with "
                              f"'mmchange export'") from exc


def read_onnx_properties(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX model at ``path``."""
    return {p.key: p.value for p in _load_proto(Path(path), with_weights=False).metadata_props}


def read_onnx_meta(path: str | Path) -> CheckpointMeta:
    """The :class:`CheckpointMeta` an exported model carries."""
    return meta_from_properties(read_onnx_properties(path), path)


def update_onnx_meta(path: str | Path, **changes: Any) -> CheckpointMeta:
    """Replace metadata fields of an exported model (e.g. a tuned ``threshold``); rewrites it atomically."""
    if "model" in changes:
        raise ValueError("the model config cannot change without a new export")
    path = Path(path)
    proto = _load_proto(path, with_weights=True)
    props = {p.key: p.value for p in proto.metadata_props}
    meta = dataclasses.replace(meta_from_properties(props, path), **changes)
    _set_metadata(proto, {META_KEY: strict_json(meta.to_json_dict())})
    atomic_write_bytes(path, proto.SerializeToString())
    return read_onnx_meta(path)
