"""Training on your own imagery: N-band models, band statistics, one radiometric rule for both dates,
and fine-tuning that refuses other bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmchange_core.data import band_stats
from mmchange_core.data.dataset import ChangeDetectionDataset
from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
from mmchange_core.errors import InputError
from mmchange_core.io.imagery import Imagery, Radiometry
from mmchange_core.io.raster import read_images
from mmchange_core.models import read_checkpoint_meta
from mmchange_core.training.loop import train
from tests.data_helpers import spy_on_scales, synth_dataset, tiny_config

pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def rgbn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rgbn") / "ds"
    make_synthetic_dataset(root, SynthConfig(pairs=8, size=64, seed=5, bands=4))
    return root


def expected_statistics(root: Path, imagery: Imagery) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per band of the training split as the network sees it, with numpy over whole images."""
    values = []
    for pair in detect_layout(root).pairs("train"):
        for image in read_images([pair.image_a, pair.image_b], None, imagery):
            values.append(image.reshape(-1, image.shape[-1]).astype(np.float64) / 255)
    stacked = np.concatenate(values)
    return stacked.mean(axis=0), stacked.std(axis=0)


def test_a_four_band_run_stores_its_bands_and_the_training_splits_statistics(rgbn: Path, tmp_path: Path,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv("MMCHANGE_CACHE", str(tmp_path / "cache"))
    imagery = Imagery(bands=(1, 2, 3, 4))
    result = train(tiny_config(rgbn, tmp_path / "runs", iters=2, batch_size=2, val_split=None, imagery=imagery))
    meta = read_checkpoint_meta(result.best_checkpoint)
    assert meta.model.in_channels == 4 and meta.imagery == imagery
    mean, std = expected_statistics(rgbn, imagery)
    np.testing.assert_allclose(meta.normalization.mean, mean, atol=2e-6)
    np.testing.assert_allclose(meta.normalization.std, std, atol=2e-6)
    assert list((tmp_path / "cache" / "band_stats").glob("*.json")), "statistics are cached"


def test_band_statistics_are_streamed_cached_and_order_free(rgbn: Path, tmp_path: Path, monkeypatch) -> None:
    pairs = detect_layout(rgbn).pairs("train")
    imagery = Imagery(bands=(4, 1), radiometry=Radiometry("fixed", 0, 6000))
    whole = band_stats.band_statistics(pairs, imagery, cache=tmp_path / "a")
    monkeypatch.setattr(band_stats, "STRIP_ROWS", 7)   # strips of 7 rows, pairs in reverse: the same numbers
    strips = band_stats.band_statistics(list(reversed(pairs)), imagery, cache=tmp_path / "b")
    assert whole[:2] == strips[:2] and not whole[2] and not strips[2]
    again = band_stats.band_statistics(pairs, imagery, cache=tmp_path / "a")
    assert again == (*whole[:2], True)
    mean, std = expected_statistics(rgbn, imagery)
    np.testing.assert_allclose(whole[0], mean, atol=2e-6)
    np.testing.assert_allclose(whole[1], std, atol=2e-6)


def test_training_reads_both_dates_through_one_scale(rgbn: Path, monkeypatch) -> None:
    calls = spy_on_scales(monkeypatch)
    dataset = ChangeDetectionDataset(detect_layout(rgbn), "train", 64, imagery=Imagery(bands=(1, 2, 3, 4)),
                                     normalization=((0.5,) * 4, (0.25,) * 4))
    sample = dataset[0]
    assert sample["image_a"].shape == (4, 64, 64)
    assert len(calls) == 2 and all(np.array_equal(a, b) for a, b in zip(calls[0], calls[1]))


def test_bands_the_training_images_lack_are_refused_before_a_run_folder(rgbn: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has 4 bands, so band 8 of --bands 4,3,2,8 does not exist") as info:
        train(tiny_config(rgbn, tmp_path / "runs", imagery=Imagery(bands=(4, 3, 2, 8))))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_fine_tuning_an_rgb_model_on_four_bands_is_refused_naming_both(rgbn: Path, tmp_path: Path) -> None:
    rgb = train(tiny_config(synth_dataset(tmp_path / "rgb"), tmp_path / "runs", iters=1, val_split=None))
    with pytest.raises(InputError, match=r"in_channels 3 != 4; bands RGB != 1,2,3,4"):
        train(tiny_config(rgbn, tmp_path / "runs2", weights=str(rgb.best_checkpoint),
                          imagery=Imagery(bands=(1, 2, 3, 4))))
    assert not (tmp_path / "runs2").exists()


def test_fine_tuning_inherits_the_parents_bands_and_statistics(rgbn: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MMCHANGE_CACHE", str(tmp_path / "cache"))
    imagery = Imagery(bands=(1, 2, 3, 4), radiometry=Radiometry("fixed", 0, 8000))
    parent = train(tiny_config(rgbn, tmp_path / "runs", iters=1, batch_size=2, val_split=None, imagery=imagery))
    other = tmp_path / "other"   # another region: its own statistics would differ from the parent's
    make_synthetic_dataset(other, SynthConfig(pairs=6, size=64, seed=11, bands=4, gain_range=(1.2, 1.3)))
    child = train(tiny_config(other, tmp_path / "runs", iters=1, batch_size=2, val_split=None,
                              weights=str(parent.best_checkpoint)))
    theirs, ours = read_checkpoint_meta(parent.best_checkpoint), read_checkpoint_meta(child.best_checkpoint)
    assert ours.imagery == imagery and ours.normalization == theirs.normalization
    assert ours.training["parent"]["name"] == parent.best_checkpoint.name
