"""``mmchange export``: a checked ONNX graph with dynamic batch and size and the checkpoint's metadata inside."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from mmchange_core.errors import CheckpointError, InputError
from mmchange_core.models import load_checkpoint, read_checkpoint_meta
from mmchange_core.inference.backends import export_model_file, update_model_meta
from mmchange_core.models.export import META_KEY, onnx_session, read_onnx_meta, read_onnx_properties
from tests.onnx_helpers import exported

pytestmark = pytest.mark.slow  # the first test of the session exports the tiny models (tens of seconds)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_export_passes_the_checker_and_carries_the_checkpoint_metadata(kind: str) -> None:
    model = exported(kind)
    proto = onnx.load(str(model.onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert read_onnx_meta(model.onnx) == read_checkpoint_meta(model.checkpoint)  # the full CheckpointMeta
    assert read_onnx_meta(model.onnx).text_description == model.meta.text_description
    inputs = [i.name for i in proto.graph.input]
    assert inputs == (["image_a", "image_b", "text_a", "text_b"] if kind == "text" else ["image_a", "image_b"])
    assert [o.name for o in proto.graph.output] == ["logits", "probability"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    for text in proto.graph.input[2:]:  # one text row shared by the batch, or one per image: a dynamic axis
        assert [d.dim_param or d.dim_value for d in text.type.tensor_type.shape.dim] == ["text_batch", 64]
    assert model.result.max_abs_logit_diff < 1e-4


@pytest.mark.parametrize("kind", ["image", "text"])
def test_dynamic_batch_and_size_match_the_torch_network(kind: str) -> None:
    """32x32 makes every map too small to reflect-pad and the last one a single pixel: the branches that a
    plain trace would freeze at the example's size."""
    model = exported(kind)
    network, _ = load_checkpoint(model.checkpoint)
    session = onnx_session(model.onnx)
    generator = torch.Generator().manual_seed(5)
    for batch, height, width in [(1, 32, 32), (3, 96, 160)]:
        images = [torch.randn(batch, 3, height, width, generator=generator) for _ in range(2)]
        texts = [torch.randn(1, 64, generator=generator) for _ in range(2)] if kind == "text" else [None, None]
        feed = {"image_a": images[0].numpy(), "image_b": images[1].numpy()}
        if kind == "text":
            feed.update(text_a=texts[0].numpy(), text_b=texts[1].numpy())
        logits, probability = session.run(None, feed)
        with torch.no_grad():
            expected = network(*images, *texts, main_only=True)[0].numpy()
        assert logits.shape == (batch, 1, height, width)
        np.testing.assert_allclose(logits, expected, atol=1e-4)
        np.testing.assert_allclose(probability, 1 / (1 + np.exp(-expected)), atol=1e-5)


def test_tuned_threshold_is_written_into_the_onnx_metadata(tmp_path) -> None:
    copy = tmp_path / "m.onnx"
    copy.write_bytes(exported("image").onnx.read_bytes())
    update_model_meta(copy, threshold=0.3, threshold_tuning={"split": "val"})
    assert read_onnx_meta(copy).threshold == 0.3
    assert read_onnx_meta(copy).model == exported("image").meta.model


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"opset": 11}, "--opset 11 cannot be exported: torch's dynamo exporter writes opset 18 or newer"),
    ({"opset": 99}, "--opset 99 cannot be exported: the installed onnx"),
    ({"quantize": "fp16"}, "--quantize fp16 cannot be exported (fp16/bf16 graphs are not exported"),
    ({"output": "model.pt"}, "must end in .onnx"),
])
def test_options_that_cannot_be_exported_fail_in_one_line_before_any_work(tmp_path, kwargs, message) -> None:
    options = {"output": "m.onnx", **kwargs}
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")) as info:
        export_model_file(tmp_path / "missing.safetensors", tmp_path / options.pop("output"), **options)
    assert "\n" not in str(info.value)


def test_onnx_without_mmchange_metadata_is_refused_in_one_line(tmp_path) -> None:
    proto = onnx.load(str(exported("image").onnx))
    kept = [p for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, tmp_path / "bare.onnx")
    with pytest.raises(CheckpointError, match="invalid mmchange metadata"):
        read_onnx_meta(tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        read_onnx_properties(tmp_path / "junk.onnx")


def test_text_graph_takes_one_embedding_shared_by_the_batch_or_one_per_image() -> None:
    """T = 1 and T = N through the same graph (a gather of row i % T, no branch frozen at export)."""
    model = exported("text")
    network, _ = load_checkpoint(model.checkpoint)
    session = onnx_session(model.onnx)
    generator = torch.Generator().manual_seed(9)
    images = [torch.randn(3, 3, 64, 64, generator=generator) for _ in range(2)]
    for rows in (1, 3):
        # large embeddings, so that each image's own text moves its logits (by ~0.1) well beyond the tolerance
        texts = [100 * torch.randn(rows, 64, generator=generator) for _ in range(2)]
        (logits,) = session.run(["logits"], {"image_a": images[0].numpy(), "image_b": images[1].numpy(),
                                             "text_a": texts[0].numpy(), "text_b": texts[1].numpy()})
        with torch.no_grad():
            expected = network(*images, *texts, main_only=True)[0].numpy()
        assert logits.shape == (3, 1, 64, 64)
        assert np.abs(logits - expected).max() <= 1e-4
