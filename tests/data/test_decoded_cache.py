"""The decoded cache: bit-identical samples, one decode per pair, invalidation, concurrent fills, the size limit."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

import mmchange_core.data.dataset as dataset_module
from mmchange_core.data.dataset import ChangeDetectionDataset, EpochSampler
from mmchange_core.data.decoded_cache import CacheError, CacheSettings, DecodedCache, entry_bytes
from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.transforms import paper_augmentation
from mmchange_core.training.loop import train
from tests.data_helpers import synth_dataset, tiny_config, write_image


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset of 128 x 128 pairs: 64 px crops cut each into 4 tiles (3 train pairs)."""
    return synth_dataset(tmp_path_factory.mktemp("cache") / "ds", pairs=5, size=128)


def _datasets(root: Path, folder: Path, **cache) -> tuple[ChangeDetectionDataset, ChangeDetectionDataset]:
    layout = detect_layout(root)
    augmentation = paper_augmentation()
    plain = ChangeDetectionDataset(layout, "train", 64, transform=augmentation, seed=7)
    settings = CacheSettings(cache.get("enabled", True), folder, cache.get("limit_gb", 1.0))
    cached = ChangeDetectionDataset(layout, "train", 64, transform=augmentation, seed=7, cache=settings)
    return plain, cached


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = dataset_module.read_labelled_pair

    def counting(pair, imagery=None, classes=None):
        calls.append(pair.name)
        return real(pair, imagery, classes)

    monkeypatch.setattr(dataset_module, "read_labelled_pair", counting)
    return calls


def test_cached_samples_are_bit_identical(data: Path, tmp_path: Path) -> None:
    plain, cached = _datasets(data, tmp_path / "cache")
    assert cached.cache is not None and "decoded once into" in cached.describe()
    for epoch in (0, 1):  # 1st epoch fills the cache, 2nd reads it
        for index in range(len(plain)):
            assert _same(plain[(index, epoch)], cached[(index, epoch)]), (index, epoch)
    # the DataLoader path of training, two workers on the filled cache
    sampler = EpochSampler(cached, shuffle=True, seed=3)
    sampler.set_position(2)
    loader = DataLoader(cached, batch_size=4, sampler=sampler, num_workers=2)
    for batch, keys in zip(loader, [list(sampler)[i:i + 4] for i in range(0, len(sampler), 4)]):
        expected = torch.utils.data.default_collate([plain[key] for key in keys])
        assert _same(batch, expected)


def test_each_pair_is_decoded_once(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_decodes(monkeypatch)
    plain, cached = _datasets(data, tmp_path / "cache")
    assert len(cached) == 4 * len(cached.pairs) == 12
    for index in range(len(plain)):
        plain[(index, 0)]
    assert len(calls) == 12  # without the cache every crop decodes its pair
    calls.clear()
    order = torch.randperm(len(cached)).tolist()
    for index in order:
        cached[(index, 0)]
    assert sorted(calls) == sorted(p.name for p in cached.pairs)  # the first epoch decodes each pair once
    calls.clear()
    for index in order:
        cached[(index, 1)]
    assert calls == []  # later epochs read the cache only


def test_changed_source_file_invalidates_its_entry(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    for split in ("train",):
        for folder in ("A", "B", "label"):
            for path in (data / split / folder).iterdir():
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                (root / split / folder / path.name).write_bytes(path.read_bytes())
    plain, cached = _datasets(root, tmp_path / "cache")
    before = cached.load(0)  # no augmentation: image_a is A
    pair = cached.pairs[0]
    write_image(pair.image_a, np.full((128, 128, 3), 200, np.uint8))  # same size, new pixels
    stat = os.stat(pair.image_a)
    os.utime(pair.image_a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    after, fresh = cached.load(0), plain.load(0)
    assert _same(after, fresh) and not torch.equal(after["image_a"], before["image_a"])
    assert len(list((tmp_path / "cache").glob("*/*.npy"))) == 2  # the old entry and the new one


def _fill(folder: str, keys: list[str], log: str, barrier) -> None:
    cache = DecodedCache(Path(folder), 10**9)

    def decode(key: str):
        with open(log, "a") as handle:
            handle.write(f"{key}\n")
        time.sleep(0.2)  # a slow decode widens the race
        value = int(key[:2], 16)
        return (np.full((32, 32, 3), value, np.uint8), np.full((32, 32, 3), 255 - value, np.uint8),
                np.eye(32, dtype=bool))

    barrier.wait()
    for key in keys:
        pixels = cache.pixels(key, (32, 32), lambda key=key: decode(key))
        assert pixels[0, 0, 0] == int(key[:2], 16) and pixels[0, 0, 6] == 1 and pixels[0, 1, 6] == 0


def test_two_processes_filling_the_same_entries_decode_each_once(tmp_path: Path) -> None:
    keys = [f"{i:02x}" + "0" * 62 for i in (1, 2, 3)]
    log = tmp_path / "decodes.txt"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    procs = [context.Process(target=_fill, args=(str(tmp_path / "cache"), keys, str(log), barrier))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert sorted(log.read_text().split()) == keys  # each entry decoded by one process only
    assert sorted(p.stem for p in (tmp_path / "cache").glob("*/*.npy")) == keys
    assert not list((tmp_path / "cache").glob("*/.*"))  # no temporary files left


def _entry(cache: DecodedCache, key: str) -> None:
    cache.pixels(key, (32, 32), lambda: (np.zeros((32, 32, 3), np.uint8),) * 2 + (np.zeros((32, 32), bool),))


def test_size_limit_evicts_least_recently_used_and_refuses_what_cannot_fit(data: Path, tmp_path: Path) -> None:
    cache = DecodedCache(tmp_path / "cache", 3 * entry_bytes(32, 32))
    k1, k2, k3, k4, k5 = (f"{i:x}" * 64 for i in range(1, 6))
    for age, key in ((300, k1), (100, k2), (200, k3)):
        _entry(cache, key)
        os.utime(cache.path(key), (time.time() - age, time.time() - age))
    assert cache.prepare([(k2, (32, 32)), (k4, (32, 32))]) == 2 * entry_bytes(32, 32)
    assert sorted(p.stem for p in cache.folder.glob("*/*.npy")) == [k2, k3]  # k1, the oldest, went
    _entry(cache, k4)
    assert cache.usage() <= cache.limit
    cache.prepare([(k5, (32, 32))])  # k2 was used by the last prepare: k3 goes now
    assert sorted(p.stem for p in cache.folder.glob("*/*.npy")) == [k2, k4]
    with pytest.raises(CacheError, match=r"needs .* more than its limit .*cache_limit_gb"):
        cache.prepare([(k, (32, 32)) for k in (k1, k2, k3, k4)])
    # a dataset larger than the limit: refused when asked for, left uncached (with a note) by default
    with pytest.raises(CacheError, match="decoded_cache=false"):
        _datasets(data, tmp_path / "small", enabled=True, limit_gb=1e-5)
    _, auto = _datasets(data, tmp_path / "small", enabled=None, limit_gb=1e-5)
    assert auto.cache is None and "decoded cache off: the decoded cache needs" in auto.describe()


def test_cache_is_off_by_default_when_images_are_not_cut(data: Path, tmp_path: Path) -> None:
    layout = detect_layout(data)
    whole = ChangeDetectionDataset(layout, "train", 128, cache=CacheSettings(None, tmp_path / "cache"))
    assert whole.cache is None and not (tmp_path / "cache").exists()
    tiled = ChangeDetectionDataset(layout, "train", 64, cache=CacheSettings(None, tmp_path / "cache"))
    assert tiled.cache is not None


@pytest.mark.slow
def test_training_with_the_cache_gives_the_same_weights(tmp_path: Path) -> None:
    data = synth_dataset(tmp_path / "ds", pairs=3, size=128)  # one training pair: 4 tiles, one batch
    common = dict(crop_size=64, iters=1, val_split=None, cache_dir=str(tmp_path / "cache"))
    off = train(tiny_config(data, tmp_path, decoded_cache=False, name="off", **common))
    on = train(tiny_config(data, tmp_path, name="on", **common))  # default: on, since images are cut
    assert len(list((tmp_path / "cache").glob("*/*.npy"))) == 1
    a, b = load_file(off.run_dir / "last.safetensors"), load_file(on.run_dir / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
