"""The default architecture reproduces the authors' network (spec/README.md's fixture) to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmchange_core.models import MMChange, convert_reference_state_dict
from tests.models_helpers.reference_fixture import reference_keys, reference_state_dict


@pytest.fixture(scope="module")
def reference_model(request) -> MMChange:
    spec_dir = request.getfixturevalue("spec_dir")
    converted, config = convert_reference_state_dict(reference_state_dict(spec_dir))
    model = MMChange(config).double().eval()
    model.load_state_dict(converted)
    return model


def test_all_four_outputs_match_reference(reference_model: MMChange, spec_dir) -> None:
    data = np.load(spec_dir / "reference_equivalence.npz")
    inputs = [torch.from_numpy(data[k]).double() for k in ("x1", "x2", "text1", "text2")]
    with torch.no_grad():
        outputs = reference_model(*inputs)
    assert len(outputs) == 4
    for logits, key in zip(outputs, ("out0", "out1", "out2", "out3")):
        prob = torch.sigmoid(logits).numpy()
        assert prob.shape == data[key].shape
        assert np.abs(prob - data[key]).max() < 1e-6, key


def test_used_keys_all_converted_and_unused_dropped(spec_dir) -> None:
    rows = reference_keys(spec_dir)
    converted, config = convert_reference_state_dict(reference_state_dict(spec_dir))
    n_used = sum(1 for _, _, used in rows if used)
    assert config.backbone == "resnet50" and config.text_dim == 512
    assert len(converted) == n_used
    assert len(converted) == len(MMChange(config).state_dict())


def test_text_order_matters_and_images_are_symmetric(reference_model: MMChange, spec_dir) -> None:
    data = np.load(spec_dir / "reference_equivalence.npz")
    x1, x2, t1, t2 = [torch.from_numpy(data[k][:1]).double() for k in ("x1", "x2", "text1", "text2")]
    with torch.no_grad():
        base = reference_model(x1, x2, t1, t2)[0]
        images_swapped = reference_model(x2, x1, t1, t2)[0]
        texts_swapped = reference_model(x1, x2, t2, t1)[0]
    assert torch.allclose(base, images_swapped, atol=1e-10)
    assert (base - texts_swapped).abs().max() > 1e-6
