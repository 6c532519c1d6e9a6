"""Every example config is a valid training config; the paper's runs are all there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmchange_core.config import load_config
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
