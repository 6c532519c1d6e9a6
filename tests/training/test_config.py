"""Every example config is a valid training config; the paper's runs are all there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmchange_core.config import ConfigError, load_config
from mmchange_core.training.config import TrainConfig, validate_config
from mmchange_core.models import BACKBONES, VARIANTS
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "examples" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_example_config_loads(path: Path) -> None:
    config = load_config(TrainConfig, path)
    validate_config(config)


def test_paper_runs_are_covered() -> None:
    datasets = {load_config(TrainConfig, CONFIGS / f).dataset for f in ("levir-cd.yaml", "whu-cd.yaml",
                                                                        "sysu-cd.yaml")}
    assert datasets == {"levir", "whu", "sysu"}
    variants = {load_config(TrainConfig, p).variant for p in (CONFIGS / "table2").glob("*.yaml")}
    assert variants == set(VARIANTS) - {"full"}
    backbones = {load_config(TrainConfig, p).backbone for p in (CONFIGS / "table3").glob("*.yaml")}
    assert backbones == set(BACKBONES)
    paper = load_config(TrainConfig, CONFIGS / "levir-cd.yaml")
    assert paper == TrainConfig(dataset="levir", name="levir-full")  # the defaults are the paper's protocol


@pytest.mark.parametrize("text, message", [
    ("augment:\n  flip_p: 2\n", "config key 'augment.flip_p' is 2.0; it must be between 0 and 1"),
    ("augment:\n  crop_border: -1\n", "config key 'augment.crop_border' is -1; it must be 0 or more"),
    ("crop_size: 100\n", "config key 'crop_size' is 100; it must be a positive multiple of 32"),
    ("backbone: resnet101\n", "config key 'backbone' is 'resnet101'; it must be one of resnet18, resnet34, resnet50"),
])
def test_out_of_range_values_fail_at_load(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, path)
    assert str(info.value) == message


def test_old_keys_load_under_their_new_names(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("num_workers: 1\ncaption_store: s.jsonl\n")
    with pytest.warns(FutureWarning):
        config = load_config(TrainConfig, path)
    assert (config.workers, config.captions) == (1, "s.jsonl")
