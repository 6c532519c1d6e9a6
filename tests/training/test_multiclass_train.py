"""K-class training: a class file turns the heads into K outputs trained with cross-entropy; labels that do not
fit the classes are refused before a run folder exists; fine-tuning a binary model starts fresh class heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmchange_core.config import ConfigError
from mmchange_core.errors import InputError
from mmchange_core.models import read_checkpoint_meta
from mmchange_core.models.checkpoint import load_checkpoint
from mmchange_core.training.config import validate_config
from mmchange_core.training.losses import ce_dice_loss, deep_supervision_loss
from mmchange_core.training.loop import resume_config, train
from tests.data_helpers import synth_dataset, tiny_config, write_image

CLASSES = """classes:
  - {value: 0, name: no change, colour: [0, 0, 0]}
  - {value: 1, name: new building, colour: [230, 25, 75]}
  - {value: 2, name: demolished building, colour: [0, 130, 200]}
"""


def class_dataset(root: Path, pairs: int = 6, size: int = 64, values: tuple[int, ...] = (1, 2)) -> Path:
    """Pairs whose label holds a bright square that appears (value ``values[0]``) and one that vanishes
    (``values[-1]``), in train/val/test folders of the LEVIR layout."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for i in range(pairs):
            a = rng.integers(60, 90, (size, size, 3), dtype=np.uint8)
            b = a.copy()
            label = np.zeros((size, size), dtype=np.uint8)
            y, x = rng.integers(0, size // 2 - 16, 2)
            b[y:y + 16, x:x + 16] = 230
            label[y:y + 16, x:x + 16] = values[0]
            y, x = rng.integers(size // 2, size - 16, 2)
            a[y:y + 16, x:x + 16] = 230
            label[y:y + 16, x:x + 16] = values[-1]
            write_image(root / split / "A" / f"{i}.png", a)
            write_image(root / split / "B" / f"{i}.png", b)
            write_image(root / split / "label" / f"{i}.png", label)
    return root


@pytest.fixture(scope="module")
def class_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("classes") / "classes.yaml"
    path.write_text(CLASSES)
    return path


@pytest.fixture(scope="module")
def classes_run(tmp_path_factory: pytest.TempPathFactory, class_file: Path) -> Path:
    root = class_dataset(tmp_path_factory.mktemp("kc") / "ds")
    project = tmp_path_factory.mktemp("runs")
    result = train(tiny_config(root, project, iters=3, batch_size=2, classes=str(class_file)))
    return result.best_checkpoint


def test_a_class_file_gives_k_class_heads_and_is_stored_with_the_checkpoint(classes_run: Path) -> None:
    meta = read_checkpoint_meta(classes_run)
    assert meta.model.num_classes == 3
    assert meta.classes.names == ("no change", "new building", "demolished building")
    model, _ = load_checkpoint(classes_run)
    outputs = model.eval()(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 64, 64)] * 4  # main and the three side outputs
    assert model.decoder.sam_p5.conv_context[0].in_channels == 3  # the softmax context of the SAM


def test_validation_picks_the_best_epoch_by_the_mean_f1_of_the_change_classes(classes_run: Path) -> None:
    import csv

    rows = list(csv.DictReader((classes_run.parent / "metrics.csv").open()))
    validated = [r for r in rows if r.get("mean_f1")]
    assert validated, "validation rows carry the mean F1 of the change classes"
    best = read_checkpoint_meta(classes_run).training["best_val_f1"]
    assert best == pytest.approx(max(float(r["mean_f1"]) for r in validated))


def test_ce_dice_loss_is_cross_entropy_plus_the_mean_dice_of_the_change_classes() -> None:
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])  # [1, 3, 1, 2]
    target = torch.tensor([[[[0.0, 1.0]]]])
    p = torch.softmax(logits, dim=1)[0, :, 0]  # [3, 2]
    ce = -(torch.log(p[0, 0]) + torch.log(p[1, 1])) / 2
    dice1 = 1 - (2 * p[1, 1] + 1e-5) / (p[1].sum() + 1 + 1e-5)
    dice2 = 1 - (0 + 1e-5) / (p[2].sum() + 0 + 1e-5)
    expected = ce + (dice1 + dice2) / 2
    assert float(ce_dice_loss(logits, target)) == pytest.approx(float(expected), rel=1e-6)
    assert float(deep_supervision_loss([logits, logits], target)) == pytest.approx(2 * float(expected), rel=1e-6)


def test_labels_that_do_not_fit_the_classes_are_refused_before_a_run_exists(tmp_path: Path, class_file: Path) -> None:
    binary = synth_dataset(tmp_path / "binary", pairs=6)  # 0/255 labels: 255 is not a class value
    with pytest.raises(InputError) as info:
        train(tiny_config(binary, tmp_path / "runs", classes=str(class_file)))
    assert "255" in str(info.value) and "class file" in str(info.value)
    zero_one = class_dataset(tmp_path / "zero_one", values=(1,))  # only 0/1 everywhere: a binary label set
    with pytest.raises(InputError, match="binary label set"):
        train(tiny_config(zero_one, tmp_path / "runs", classes=str(class_file)))
    classes = class_dataset(tmp_path / "classes")  # the reverse: a binary model given class labels
    with pytest.raises(InputError, match="3 distinct values"):
        train(tiny_config(classes, tmp_path / "runs"))
    assert not (tmp_path / "runs").exists(), "nothing is written"


def test_a_bad_class_file_stops_at_the_config_check(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("- {value: 0, name: none}\n- {value: 1, name: a}\n- {value: 1, name: b}\n")
    with pytest.raises(InputError, match="value 1 twice"):
        validate_config(tiny_config(tmp_path, tmp_path / "runs", classes=str(path)))
    with pytest.raises(ConfigError, match="change-value"):
        validate_config(tiny_config(tmp_path, tmp_path / "runs", classes=str(path), change_value=255))


def test_fine_tuning_a_binary_model_for_classes_keeps_all_but_the_class_heads(tmp_path: Path,
                                                                             class_file: Path) -> None:
    binary = synth_dataset(tmp_path / "binary", pairs=6)
    parent = train(tiny_config(binary, tmp_path / "runs", iters=2, batch_size=2, val_split=None)).best_checkpoint
    root = class_dataset(tmp_path / "classes")
    child = train(tiny_config(root, tmp_path / "runs", iters=1, batch_size=2, val_split=None, lr=1e-12,
                              warmup_iters=0, weights=str(parent), freeze="encoder", classes=str(class_file)))
    theirs, _ = load_checkpoint(parent)
    ours, meta = load_checkpoint(child.best_checkpoint)
    assert meta.model.num_classes == 3
    a, b = theirs.state_dict(), ours.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("encoder.")), "the frozen encoder is the parent's"
    assert b["decoder.cls.weight"].shape[0] == 3 and a["decoder.cls.weight"].shape[0] == 1


def test_resuming_after_the_class_file_changed_is_refused(tmp_path: Path) -> None:
    root = class_dataset(tmp_path / "classes")
    class_file = tmp_path / "classes.yaml"
    class_file.write_text(CLASSES)
    first = train(tiny_config(root, tmp_path / "runs", iters=6, batch_size=2, val_split=None,
                              classes=str(class_file)), stop_after=1)
    class_file.write_text(CLASSES.replace("demolished building", "gone"))  # edited in place
    with pytest.raises(InputError, match="trained with classes .*demolished building.* gives .*gone"):
        train(resume_config(Path(first.run_dir)), resume_dir=first.run_dir)


@pytest.mark.parametrize("text, words", [
    ("- {value: 0, name: none}\n- {value: 1, name: a}\n- {value: 1, name: b}\n", "value 1 twice"),
    ("- {value: 0, name: none}\n- {value: 1, name: a}\n- {value: 2, name: a}\n", "name a twice"),
    ("- {value: 0, name: none}\n- {value: 1, name: a, colour: [1, 2, 3, 4]}\n", "not RGB"),
])
def test_train_refuses_a_bad_class_file_in_one_line_writing_nothing(tmp_path: Path, cli, text: str,
                                                                    words: str) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text(text)
    data = class_dataset(tmp_path / "ds", pairs=2)
    result = cli("train", "--dataset", data, "--classes", path, "--project", tmp_path / "runs", "--device", "cpu")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert words in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "runs").exists()
