"""How much of sliding-window ``predict`` time is spent outside the network's trunk (issue 6, CPU).

Ratio = full predict time of one SIZE x SIZE pair (read PNGs, caption, windows, network, blend,
threshold, write the mask) / time of the two trunk forwards (date A and date B) alone on exactly
the same windows and batches. Random weights; the model is loaded once beforehand (checkpoint loading
is not part of either figure). Each figure is the median of ``--repeats`` interleaved runs.

    python benchmarks/predict_overhead.py --threads 2 --backbone resnet50 --variant full
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmchange_core.data.normalize import normalize_batch
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.predict import PairOutputs, predict_files
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.data.windows import TileGrid, iter_window_batches
from mmchange_core.models import CheckpointMeta, build_model
from mmchange_core.models.encoder import trunk_features
from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline


def synthetic_pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured pair with a changed block, as uint8 RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([np.sin(yy / 9.0), np.cos(xx / 7.0), np.sin((xx + yy) / 13.0)], -1) * 60 + 128
    image_a = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    image_b = image_a.copy()
    image_b[size // 4:size // 2, size // 3:2 * size // 3] = (200, 190, 170)
    return image_a, image_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--variant", default="full")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    pipeline = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing"), device="cpu")
    model = build_model(args.backbone, args.variant)
    meta = CheckpointMeta(model=model.config, text_description=pipeline.describe() if model.uses_text else None)
    settings = DetectorSettings(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch_size, device="cpu")
    detector = ChangeDetector(model, meta, settings)
    runner = detector.runner
    trunk = runner.network.encoder.trunk  # the folded trunk that predict actually runs
    fmt = torch.channels_last if runner.channels_last else torch.contiguous_format  # ... in its memory format

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image_a, image_b = synthetic_pair(args.size)
        Image.fromarray(image_a).save(tmp / "a.png")
        Image.fromarray(image_b).save(tmp / "b.png")
        grid = TileGrid.plan(args.size, args.size, args.tile, args.overlap)
        batches = [(normalize_batch(torch.from_numpy(b.image_a).permute(0, 3, 1, 2)).contiguous(memory_format=fmt),
                    normalize_batch(torch.from_numpy(b.image_b).permute(0, 3, 1, 2)).contiguous(memory_format=fmt))
                   for b in iter_window_batches(grid, lambda y, h: image_a[y:y + h], lambda y, h: image_b[y:y + h],
                                                args.batch_size)]

        @torch.no_grad()
        def trunk_only() -> float:
            start = time.perf_counter()
            for batch_a, batch_b in batches:
                trunk_features(trunk, batch_a)
                trunk_features(trunk, batch_b)
            return time.perf_counter() - start

        def full_predict() -> tuple[float, dict[str, float]]:
            start = time.perf_counter()
            result = predict_files(detector, tmp / "a.png", tmp / "b.png", PairOutputs(mask=tmp / "mask.png"))
            return time.perf_counter() - start, result.seconds

        full_predict()  # warm-up: first-call initialisation of the CPU kernels for these shapes
        trunk_only()
        full_times, trunk_times, parts = [], [], []
        for _ in range(args.repeats):
            seconds, breakdown = full_predict()
            full_times.append(seconds)
            parts.append(breakdown)
            trunk_times.append(trunk_only())

    full, trunk_time = statistics.median(full_times), statistics.median(trunk_times)
    median_part = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    print(f"{args.backbone}/{args.variant}, {args.size}x{args.size} pair, tile {args.tile}, overlap {args.overlap}, "
          f"batch {args.batch_size}, {len(grid)} windows, {torch.get_num_threads()} CPU threads, "
          f"{'channels_last' if runner.channels_last else 'contiguous'}")
    print(f"full predict      {full:8.2f} s  (runs: {', '.join(f'{t:.2f}' for t in full_times)})")
    print(f"  network         {median_part['network']:8.2f} s")
    print(f"  read + cut      {median_part['read']:8.2f} s")
    print(f"  captions + text {median_part['text']:8.2f} s")
    print(f"  write outputs   {median_part['write']:8.2f} s")
    print(f"two trunk passes  {trunk_time:8.2f} s  (runs: {', '.join(f'{t:.2f}' for t in trunk_times)})")
    network_ratio = median_part["network"] / trunk_time
    paired = statistics.median(f / t for f, t in zip(full_times, trunk_times))
    print(f"ratio full / trunk = {full / trunk_time:.3f}   (network / trunk = {network_ratio:.3f}; "
          f"median of the {len(full_times)} interleaved runs' ratios = {paired:.3f})")


if __name__ == "__main__":
    main()
