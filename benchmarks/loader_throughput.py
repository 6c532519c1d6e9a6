"""Training-loader throughput on 1024 x 1024 pairs cut into 256 x 256 crops: without and with the decoded cache.

Measures the DataLoader path ``mmchange train`` uses (ChangeDetectionDataset with the paper's
augmentation, EpochSampler, a new DataLoader per epoch) in samples/s, a sample being one 256 x 256
crop of A, B and label (16 per 1024 x 1024 pair), for ``--workers`` 0 and 2:

- ``off``: no cache, every crop decodes its whole pair (the behaviour before the cache); measured
  on the first ``--off-samples`` samples of an epoch (the rate is steady);
- ``on, 1st epoch``: a fresh cache folder each repeat, a whole epoch (each pair decoded and written once);
- ``on, 2nd epoch``: a whole epoch on the filled cache (crops read from the memory-mapped copies).

Each figure is the median of ``--repeats`` runs. The pairs are made once by the synthetic generator
(``data/synth.py``) into ``--data`` and reused; the cache goes to a temporary folder.

    python benchmarks/loader_throughput.py --data /tmp/mmchange-loader-bench
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mmchange_core.data.dataset import ChangeDetectionDataset, EpochSampler
from mmchange_core.data.decoded_cache import CacheSettings
from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.synth import SynthConfig, synthesize_pair
from mmchange_core.data.transforms import paper_augmentation
from mmchange_core.io.images import write_png


def make_pairs(root: Path, pairs: int, size: int) -> None:
    """``pairs`` synthetic pairs of ``size`` pixels in ``root/{A,B,label}`` (kept when already there)."""
    config = SynthConfig(pairs=max(3, pairs), size=size, seed=11)
    for index in range(pairs):
        name = f"{index:04d}.png"
        paths = [root / d / name for d in ("A", "B", "label")]
        if all(p.is_file() for p in paths):
            continue
        pair = synthesize_pair(index, config)
        write_png(paths[0], pair.image_a)
        write_png(paths[1], pair.image_b)
        write_png(paths[2], pair.label)


def rate(dataset: ChangeDetectionDataset, workers: int, batch_size: int, epoch: int, limit: int | None) -> float:
    """Samples per second over one epoch (or its first ``limit`` samples), DataLoader start included."""
    sampler = EpochSampler(dataset, shuffle=True, seed=2333)
    sampler.set_position(epoch)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(2333 + epoch))
    batches = len(loader) if limit is None else min(len(loader), limit // batch_size)
    start = time.perf_counter()
    seen = sum(batch["label"].shape[0] for batch in islice(loader, batches))
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "mmchange-loader-bench")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--off-samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    make_pairs(args.data, args.pairs, args.size)
    layout = detect_layout(args.data)
    augmentation = paper_augmentation()
    plain = ChangeDetectionDataset(layout, "all", args.crop, transform=augmentation, seed=2333)
    print(plain.describe())
    per_pair = len(plain) // len(plain.pairs)
    print(f"samples/s (one sample = a {args.crop}x{args.crop} crop of A, B and label; {per_pair} per pair), "
          f"median of {args.repeats}; batch {args.batch_size}, {args.threads} torch thread(s)")
    print(f"{'workers':>7}  {'off':>8}  {'on, 1st epoch':>14}  {'on, 2nd epoch':>14}  {'2nd/off':>8}")
    for workers in args.workers:
        off, first, second = [], [], []
        for repeat in range(args.repeats):
            off.append(rate(plain, workers, args.batch_size, repeat, args.off_samples))
            folder = Path(tempfile.mkdtemp(prefix="mmchange-decoded-"))
            try:
                cached = ChangeDetectionDataset(layout, "all", args.crop, transform=augmentation, seed=2333,
                                                cache=CacheSettings(True, folder, 50))
                first.append(rate(cached, workers, args.batch_size, repeat, None))
                second.append(rate(cached, workers, args.batch_size, repeat + 1, None))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        m_off, m_first, m_second = (statistics.median(v) for v in (off, first, second))
        print(f"{workers:>7}  {m_off:>8.1f}  {m_first:>14.1f}  {m_second:>14.1f}  {m_second / m_off:>7.1f}x")


if __name__ == "__main__":
    main()
