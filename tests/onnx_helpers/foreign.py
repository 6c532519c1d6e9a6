"""Small hand-made ONNX graphs that carry mmchange's metadata but not (quite) its inputs and outputs.

They stand for a model exported by another tool (or edited by hand) and renamed ``.onnx``: each one
loads in onnxruntime, so only mmchange's own check of the graph's signature can refuse it at load.
"""

from __future__ import annotations

from pathlib import Path

from mmchange_core.io.jsonio import strict_json
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.export import (
    EXPORTER_KEY,
    FORMAT,
    FORMAT_KEY,
    FORMAT_VERSION,
    META_KEY,
    QUANTIZATION_KEY,
    VERSION_KEY,
)

#: What ``mmchange export`` writes for an image-only model (name -> element type, shape).
IMAGE_INPUTS = {"image_a": ("float", ["N", 3, "H", "W"]), "image_b": ("float", ["N", 3, "H", "W"])}
OUTPUTS = {"logits": ("float", ["N", 1, "H", "W"]), "probability": ("float", ["N", 1, "H", "W"])}


def text_inputs(dim: int = 64) -> dict[str, tuple[str, list]]:
    """The inputs of a text model of text width ``dim``."""
    return {**IMAGE_INPUTS, "text_a": ("float", [1, dim]), "text_b": ("float", [1, dim])}


def tiny_meta(text: bool = False) -> CheckpointMeta:
    """Metadata of a resnet18 model (``full`` with 64-wide text, or ``image-only``), tile 64."""
    config = ModelConfig("resnet18", "full" if text else "image-only", text_dim=64)
    return CheckpointMeta(model=config, tile_size=64)


def foreign_model(path: Path, inputs: dict[str, tuple[str, list]] | None = None,
                  outputs: dict[str, tuple[str, list]] | None = None, *, text: bool = False) -> Path:
    """Write an ONNX model with mmchange's metadata and these inputs and outputs to ``path``.

    Shapes: ints are fixed axes, strings dynamic ones. Every output is the channel mean of the first
    input (cast to the output's type; rank 4 keeps the channel axis, rank 3 drops it), so only the
    declared signature differs from an export; the other inputs are not used.
    """
    import onnx
    from onnx import TensorProto, helper

    types = {"float": TensorProto.FLOAT, "double": TensorProto.DOUBLE, "int64": TensorProto.INT64}
    inputs = inputs if inputs is not None else (text_inputs() if text else IMAGE_INPUTS)
    outputs = outputs if outputs is not None else OUTPUTS
    first = next(iter(inputs))
    nodes = [helper.make_node("Cast", [first], ["first_float"], to=TensorProto.FLOAT)]
    for name, (kind, shape) in outputs.items():
        keep = int(len(shape) == 4)
        nodes.append(helper.make_node("ReduceMean", ["first_float"], [f"{name}_mean"], axes=[1], keepdims=keep))
        nodes.append(helper.make_node("Cast", [f"{name}_mean"], [name], to=types[kind]))
    graph = helper.make_graph(
        nodes, "foreign",
        [helper.make_tensor_value_info(name, types[kind], shape) for name, (kind, shape) in inputs.items()],
        [helper.make_tensor_value_info(name, types[kind], shape) for name, (kind, shape) in outputs.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="another-tool")
    model.ir_version = 8
    meta = tiny_meta(text)
    for key, value in {FORMAT_KEY: FORMAT, VERSION_KEY: FORMAT_VERSION, META_KEY: strict_json(meta.to_json_dict()),
                       QUANTIZATION_KEY: "none", EXPORTER_KEY: "another tool"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path
