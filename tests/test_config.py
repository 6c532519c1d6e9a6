"""Image I/O conversions, atomic writes and the dataclass configuration system."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.config import (
    ConfigError,
    RenamedKeyWarning,
    apply_overrides,
    between,
    choice,
    load_config,
    multiple_of,
    non_negative,
    positive,
    required,
    save_config,
    setting,
    validate,
)
from mmchange_core.errors import InputError
from mmchange_core.io.images import read_mask, read_rgb, write_png
from mmchange_core.runs import next_run_dir


def test_read_rgb_converts_with_warnings(tmp_path: Path) -> None:
    warnings: list[str] = []
    gray = (np.arange(64 * 32) % 256).astype(np.uint8).reshape(64, 32)
    Image.fromarray(gray).save(tmp_path / "g.png")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray((gray.astype(np.uint16) * 100)).save(tmp_path / "d.png")
    g = read_rgb(tmp_path / "g.png", warnings.append)
    a = read_rgb(tmp_path / "a.png", warnings.append)
    d = read_rgb(tmp_path / "d.png", warnings.append)
    assert g.shape == (64, 32, 3) and np.array_equal(g[..., 1], gray)
    assert a.shape == (8, 8, 3) and (a[..., 0] == 200).all()
    assert d.dtype == np.uint8 and d.max() == 255 and d.min() == 0
    assert len(warnings) == 3
    assert "grayscale" in warnings[0] and "alpha" in warnings[1] and "8-bit" in warnings[2]


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found: .*missing.png"):
        read_rgb(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read image .*bad.png"):
        read_rgb(bad)


def test_mask_threshold_and_png_round_trip(tmp_path: Path) -> None:
    label = np.array([[0, 0], [1, 1]], np.uint8)  # 0/1 labels: the larger value is change (see read_mask)
    Image.fromarray(label).save(tmp_path / "l.png")
    assert read_mask(tmp_path / "l.png").tolist() == [[False, False], [True, True]]
    write_png(tmp_path / "m.png", np.array([[True, False]]))
    assert np.asarray(Image.open(tmp_path / "m.png")).tolist() == [[255, 0]]


@dataclass
class _Inner:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class _Cfg:
    name: str = "x"
    iters: int = 10
    amp: bool = False
    tag: str | None = None
    inner: _Inner = field(default_factory=_Inner)


def test_config_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("iters: 20\ninner:\n  lr: 0.5\n")
    cfg = load_config(_Cfg, path, ["inner.betas=[0.8, 0.9]", "amp=true", "name=123", "tag=null"])
    assert cfg.iters == 20 and cfg.inner.lr == 0.5 and cfg.inner.betas == (0.8, 0.9)
    assert cfg.amp is True and cfg.name == "123" and cfg.tag is None
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(_Cfg, tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize("override, message", [
    ("iterz=3", "unknown config key 'iterz'"),
    ("iters=abc", "expected an integer"),
    ("amp=yes please", "expected true or false"),
    ("inner.lr=fast", "expected a number"),
    ("noequals", "key=value"),
])
def test_config_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(_Cfg(), [override])


def test_run_dirs_increment(tmp_path: Path) -> None:
    first = next_run_dir(tmp_path, "train")
    second = next_run_dir(tmp_path, "train")
    named = next_run_dir(tmp_path, "train", "levir")
    assert (first.name, second.name, named.name) == ("exp", "exp2", "levir")
    assert next_run_dir(tmp_path, "train", "levir").name == "levir2"


def test_atomic_writes_get_umask_permissions(tmp_path: Path) -> None:
    import os

    from mmchange_core.io.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
        mask = write_png(tmp_path / "m.png", np.zeros((2, 2), bool))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert mask.stat().st_mode & 0o777 == 0o644


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from mmchange_core.io.atomic import atomic_open, atomic_path, atomic_write_text

    target = atomic_write_text(tmp_path / "store.jsonl", "old\n")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half-written")
        raise RuntimeError("killed mid-write")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("written by a library")
        raise RuntimeError("library failed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["store.jsonl"]
    with atomic_open(target, "w") as handle:
        handle.write("new\n")
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["store.jsonl"]


def test_error_messages_keep_square_brackets(cli, tmp_path: Path) -> None:
    from mmchange_cli import console

    assert "[geo]" in console.plain('pip install "mmchange[geo]"').plain
    result = cli("convert", tmp_path / "no[such].pth", "-o", tmp_path / "o.safetensors")
    assert result.exit_code == 1 and "no[such].pth" in result.output


@dataclass
class _Ranged:
    size: int = setting(64, multiple_of(32))
    p: float = setting(0.5, between(0, 1))
    sizes: list[int] = setting([1, 2], positive())
    mode: str = setting("a", choice("a", "b"))
    path: str = setting("", required("pass --path"))
    workers: int = setting(0, non_negative(), renamed_from=["num_workers"])


@pytest.mark.parametrize("override, message", [
    ("size=48", "config key 'size' is 48; it must be a positive multiple of 32"),
    ("p=1.5", "config key 'p' is 1.5; it must be between 0 and 1"),
    ("p=.inf", "config key 'p' is inf; give a finite number"),
    ("sizes=[4, 0]", "config key 'sizes' is 0; it must be greater than 0"),
    ("mode=c", "config key 'mode' is 'c'; it must be one of a, b"),
    ("workers=-1", "config key 'workers' is -1; it must be 0 or more"),
    ("szie=64", "unknown config key 'szie'; did you mean 'size'?"),
])
def test_declared_ranges_are_checked_with_key_value_and_range(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_Ranged, None, ["path=x", override])
    assert str(info.value) == message


def test_required_renamed_and_typed_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config key 'path' is not set; pass --path"):
        load_config(_Ranged)
    file = tmp_path / "c.yaml"
    file.write_text("num_workers: 3\nsizes: [32]\n")
    with pytest.warns(RenamedKeyWarning, match="config key 'num_workers' is now 'workers'"):
        cfg = load_config(_Ranged, file, ["path=x", ("sizes", "64,96"), ("p", 1)])
    assert (cfg.workers, cfg.sizes, cfg.p) == (3, [64, 96], 1.0)
    assert _Ranged().sizes is not _Ranged().sizes  # list defaults are copied
    validate(cfg)
    with pytest.raises(ConfigError, match="'size' is 40"):
        validate(_Ranged(size=40, path="x"))  # configs built in Python are checked the same way


# --------------------------------------------------------------------------------------- settings groups


def test_keys_that_moved_into_the_detector_group_still_load_with_one_warning(tmp_path: Path) -> None:
    from mmchange_core.config import RenamedKeyWarning, load_config
    from mmchange_core.evaluation.run import EvalOptions

    path = tmp_path / "eval.yaml"
    path.write_text("tile_size: 128\ndetector:\n  overlap: 16\nsplit: val\n")
    with pytest.warns(RenamedKeyWarning, match="'tile_size' is now 'detector.tile_size'"):
        options = load_config(EvalOptions, path, ["num_workers=3"])
    assert (options.detector.tile_size, options.detector.overlap, options.detector.workers) == (128, 16, 3)
    assert options.split == "val"
    nested = load_config(EvalOptions, None, ["detector.threshold=0.25"])
    assert nested.detector.threshold == 0.25


@pytest.mark.parametrize("override, message", [
    ("detector.threshold=0", "config key 'detector.threshold' is 0.0; it must be strictly between 0 and 1"),
    ("detector.threshold=1", "config key 'detector.threshold' is 1.0; it must be strictly between 0 and 1"),
    ("detector.tile_size=48", "config key 'detector.tile_size' is 48; it must be a positive multiple of 32"),
    ("treshold=0.3", "unknown config key 'treshold'; did you mean 'detector.threshold'?"),
])
def test_detector_settings_have_one_rule_and_one_message_each(override: str, message: str) -> None:
    from mmchange_core.config import ConfigError, load_config
    from mmchange_core.inference.predict import PredictConfig

    with pytest.raises(ConfigError) as caught:
        load_config(PredictConfig, None, [override])
    assert str(caught.value) == message


def test_a_checkpoint_and_the_api_use_the_same_rules_as_the_config() -> None:
    from mmchange_core.config import ConfigError
    from mmchange_core.data.windows import TileGrid
    from mmchange_core.models.checkpoint import validate_threshold, validate_tile_size

    for check, value, message in ((validate_threshold, 1.0, "'threshold' is 1.0; it must be strictly between 0 and 1"),
                                  (validate_threshold, 0, "'threshold' is 0; it must be strictly between 0 and 1"),
                                  (validate_tile_size, 100, "'tile_size' is 100; it must be a positive multiple of 32"),
                                  (lambda v: TileGrid.plan(64, 64, v), 48, "'tile_size' is 48; it must be a positive "
                                                                           "multiple of 32")):
        with pytest.raises(ConfigError) as caught:
            check(value)
        assert str(caught.value) == f"config key {message}"
