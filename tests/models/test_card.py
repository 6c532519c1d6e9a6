"""The model card: a Hub metadata block that huggingface_hub reads back, metrics equal to the eval result's,
the paper's citation, and one-line errors for evaluation files that are not mmchange eval results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mmchange_core.errors import InputError
from mmchange_core.models import CheckpointMeta, ModelConfig
from mmchange_core.models.card import (
    CITATION,
    PAPER_TITLE,
    check_eval_matches,
    dataset_name,
    model_card,
    read_eval_summary,
)
from tests.models_helpers import METRICS, eval_json

hub = pytest.importorskip("huggingface_hub")

IMAGE_ONLY = ModelConfig(backbone="resnet18", variant="image-only")
TEXT = {"captioner": {"name": "basic", "model": "pixel-statistics"}, "encoder": {"name": "hashing", "dim": 64}}


def meta(**changes) -> CheckpointMeta:
    values = {"model": IMAGE_ONLY, "tile_size": 64,
              "training": {"dataset": "/data/LEVIR-CD", "iterations": 400, "epoch": 3, "best_val_f1": 0.71,
                           "run_dir": "/home/me/runs/train/exp"}}
    values.update(changes)
    return CheckpointMeta(**values)


def test_card_metadata_reads_back_through_huggingface_hub(tmp_path: Path) -> None:
    summary = read_eval_summary(eval_json(tmp_path / "metrics.json"))
    text = model_card(meta(), "alice/levir-cd", evaluation=summary, license="apache-2.0")
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "mmchange" and front["license"] == "apache-2.0"
    assert front["pipeline_tag"] == "image-segmentation" and front["datasets"] == ["LEVIR-CD"]
    assert {"change-detection", "remote-sensing", "mmchange", "pytorch"} <= set(front["tags"])
    card_path = tmp_path / "README.md"
    card_path.write_text(text)
    card = hub.ModelCard.load(card_path)
    assert card.data.library_name == "mmchange" and card.data.model_name == "alice/levir-cd"
    results = {r.metric_type: r for r in card.data.eval_results}
    expected = {("accuracy" if k == "oa" else k): v for k, v in METRICS.items() if k not in ("tp", "fp", "fn", "tn")}
    assert {k: r.metric_value for k, r in results.items()} == expected
    assert all(r.dataset_name == "LEVIR-CD" and r.dataset_split == "test" for r in results.values())
    assert hub.metadata_load(card_path)["model-index"][0]["name"] == "alice/levir-cd"
    body = card.text
    assert "| F1 (change class) | 70.65 |" in body and "| Overall accuracy | 97.31 |" in body
    assert CITATION in body and PAPER_TITLE in body and "Zhai, Yikui" in body
    assert "mmchange predict before.png after.png -o change.png --checkpoint hf://alice/levir-cd" in body
    assert 'ChangeDetector.from_checkpoint("hf://alice/levir-cd"' in body
    assert "## Intended use and limits" in body and "64 px" in body
    assert "/home/me" not in body  # local paths of the training run stay out of the card text


def test_card_without_evaluation_has_no_model_index_and_describes_text_models() -> None:
    text_meta = meta(model=ModelConfig(backbone="resnet18", variant="full", text_dim=64), text_description=TEXT,
                     training={"source": {"converted_from": "a.pth", "format": "authors' MMChange BaseNet"}})
    text = model_card(text_meta, "alice/converted")
    front = yaml.safe_load(text.split("---\n")[1])
    assert "model-index" not in front and "metrics" not in front and "datasets" not in front
    assert {"multimodal", "vision-language"} <= set(front["tags"])
    assert "`basic:pixel-statistics`" in text and "converted from a checkpoint in the authors' format" in text
    assert "No evaluation was published" in text


def test_eval_threshold_other_than_the_checkpoints_is_stated(tmp_path: Path) -> None:
    summary = read_eval_summary(eval_json(tmp_path / "metrics.json", threshold=0.35))
    assert "The evaluation used threshold 0.35; the checkpoint's own is 0.5" in model_card(meta(), "a/b",
                                                                                            evaluation=summary)


def test_eval_json_output_is_accepted_too(tmp_path: Path) -> None:
    flat = tmp_path / "eval.json"  # 'mmchange eval --json' prints the metrics at the top level
    flat.write_text(json.dumps({**METRICS, "split": "val", "pairs": 2, "threshold": 0.4, "checkpoint": "x"}))
    summary = read_eval_summary(flat)
    assert summary.metrics["f1"] == METRICS["f1"] and summary.split == "val" and summary.dataset == "unknown"


@pytest.mark.parametrize("content, message", [
    ("not json", "is not a readable JSON file"),
    ("[1, 2]", "holds no JSON object"),
    (json.dumps({"metrics": {"precision": 0.5}}), "has no 'f1' metric"),
    (json.dumps({"metrics": {"f1": "high"}}), "metric 'f1' is 'high'"),
    ('{"metrics": {"f1": NaN, "precision": 0.5}}', "metric 'f1' is nan, not a finite number"),
    (json.dumps({"metrics": [0.5]}), "'metrics' is not an object"),
])
def test_bad_evaluation_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_eval_summary(path)
    with pytest.raises(InputError, match="evaluation file not found"):
        read_eval_summary(tmp_path / "missing.json")


def test_an_evaluation_of_another_network_is_refused(tmp_path: Path) -> None:
    path = eval_json(tmp_path / "metrics.json", model={"backbone": "resnet50", "variant": "full", "text_dim": 512})
    with pytest.raises(InputError, match="evaluated a .*resnet50.* but the checkpoint is"):
        check_eval_matches(read_eval_summary(path), meta(), path)


@pytest.mark.parametrize("given, name", [("levir", "LEVIR-CD"), ("/data/levir-cd", "LEVIR-CD"),
                                         ("/data/SYSU-CD/", "SYSU-CD"), ("/data/my-city", "my-city")])
def test_dataset_names(given: str, name: str) -> None:
    assert dataset_name(given) == name


def test_an_evaluation_file_that_is_a_fifo_is_refused_unopened(tmp_path: Path) -> None:
    import os

    from tests.fifo_helpers import released

    fifo = tmp_path / "metrics.json"
    os.mkfifo(fifo)  # reading it would block until a writer came
    with released(fifo) as blocked, pytest.raises(InputError, match=r"metrics.json is not a regular file \(a FIFO, "
                                                                    r"device or socket\); give the path of the "
                                                                    r"evaluation file"):
        read_eval_summary(fifo)
    assert not blocked


def test_a_class_aware_model_lists_its_classes_on_the_card_and_in_info() -> None:
    from mmchange_core.io.classes import ClassScheme

    classes = ClassScheme.from_dict([{"value": 0, "name": "no change"},
                                     {"value": 4, "name": "new building", "colour": [230, 25, 75]},
                                     {"value": 9, "name": "vegetation lost", "colour": "#3cb44b"}])
    kclass = meta(model=ModelConfig(backbone="resnet18", variant="image-only", num_classes=3), classes=classes)
    text = model_card(kclass, "alice/classes")
    assert "4 new building (`#e6194b`), 9 vegetation lost (`#3cb44b`)" in text
    assert "maps of 2 change classes (new building, vegetation lost)" in text
    assert "binary change maps" in model_card(meta(), "alice/binary")
    assert kclass.summary()["classes"] == "0 no change, 4 new building, 9 vegetation lost"
    with pytest.raises(InputError, match="predicts 3 classes but its class list has 2"):
        CheckpointMeta(model=kclass.model, classes=ClassScheme.binary())
