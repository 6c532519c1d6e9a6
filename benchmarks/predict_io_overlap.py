"""Does ``mmchange predict`` keep the network busy? End-to-end throughput on a large GeoTIFF pair vs network-only.

Both sides run in one process on the same machine, with the same random-init checkpoint, windows and
batches:

* network-only: the scene's window batches are cut into memory first, then only the timed loop of
  ``WindowNetwork(batch_a, batch_b)`` calls runs (the same batches, the same network object that
  predict uses; no reading, normalising of strips, blending, sigmoid or writing is timed);
* end-to-end: ``predict_pair`` on the GeoTIFF files with a COG mask and a float32 COG probability
  map: hashing the inputs, reading and cutting strips (prefetch thread), the network, blending,
  thresholding, staging the rows (writer thread), finishing both COGs, the run manifest.

It prints the median seconds of each over ``--repeats`` runs and the ratio of throughputs
(end-to-end windows/s divided by network-only windows/s; 1.0 = I/O completely hidden).

    python benchmarks/predict_io_overlap.py                       # 4096 x 4096, tile 256, batch 4
    python benchmarks/predict_io_overlap.py --size 2048 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmchange_core.data.windows import iter_window_batches  # noqa: E402
from mmchange_core.inference.predict import PredictConfig, load_detector, predict_pair  # noqa: E402
from mmchange_core.inference.settings import DetectorSettings  # noqa: E402
from mmchange_core.inference.sliding_window import network_for  # noqa: E402
from mmchange_core.models import build_model, save_checkpoint  # noqa: E402


def synthetic_geotiff_pair(folder: Path, size: int) -> tuple[Path, Path]:
    """A textured uint8 RGB GeoTIFF pair (tiled, deflate), written strip by strip."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    paths = []
    for name, shift in (("a.tif", 0), ("b.tif", 40)):
        path = folder / name
        with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=3, dtype="uint8",
                           tiled=True, blockxsize=256, blockysize=256, compress="deflate", crs="EPSG:32631",
                           transform=from_origin(500000, 4000000, 0.5, 0.5)) as dst:
            for y0 in range(0, size, 512):
                h = min(512, size - y0)
                yy, xx = np.mgrid[y0:y0 + h, 0:size]
                base = np.stack([np.sin(yy / 9.0), np.cos(xx / 7.0), np.sin((xx + yy + shift) / 13.0)], 0) * 60
                data = np.clip(base + 128 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
                dst.write(data, window=Window(0, y0, size, h))
        paths.append(path)
    return paths[0], paths[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="side of the square scene (pixels)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PredictConfig(detector=DetectorSettings(tile_size=args.tile, batch_size=args.batch, device="cpu"))
    with tempfile.TemporaryDirectory(prefix="mmchange-io-overlap-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        checkpoint = tmp / "resnet18.safetensors"
        save_checkpoint(checkpoint, build_model("resnet18", "image-only"))
        path_a, path_b = synthetic_geotiff_pair(tmp, args.size)
        detector = load_detector(checkpoint, config)
        grid = detector.grid(args.size, args.size)
        with rasterio_sources(path_a, path_b) as (source_a, source_b):
            batches = list(iter_window_batches(grid, source_a.read_rows, source_b.read_rows, args.batch))
        norm = detector.meta.normalization
        network = network_for(detector.runner, None, None, args.batch, mean=norm.mean, std=norm.std)
        network(batches[0].image_a, batches[0].image_b)  # warm-up (allocator, kernels), not timed
        net_times: list[float] = []
        e2e_times: list[float] = []
        in_run: list[float] = []
        for repeat in range(args.repeats):
            for side in ("network", "e2e") if repeat % 2 == 0 else ("e2e", "network"):  # alternate the order
                t0 = time.perf_counter()
                if side == "network":
                    for batch in batches:
                        network(batch.image_a, batch.image_b)
                    net_times.append(time.perf_counter() - t0)
                else:
                    result = predict_pair(checkpoint, path_a, path_b, tmp / "out" / "mask.tif",
                                          prob=tmp / "out" / "prob.tif", config=config, overwrite=True)
                    e2e_times.append(time.perf_counter() - t0)
            in_run.append(result.seconds["network"])
            print(f"repeat {repeat + 1}: network-only {net_times[-1]:.2f} s, end-to-end {e2e_times[-1]:.2f} s "
                  f"(in predict: windows-to-files {result.seconds['total']:.2f} s of which network "
                  f"{result.seconds['network']:.2f} s, waiting for reads "
                  f"{result.seconds['read']:.2f} s, writing/finishing {result.seconds['write']:.2f} s)", flush=True)
    net, e2e = statistics.median(net_times), statistics.median(e2e_times)
    windows = len(grid)
    print(f"scene {args.size}x{args.size}, {windows} windows of {args.tile} px in batches of {args.batch}, "
          f"torch threads {torch.get_num_threads()}, resnet18 image-only (random init), CPU fp32")
    print(f"network-only: median {net:.2f} s = {windows / net:.2f} windows/s")
    print(f"end-to-end:   median {e2e:.2f} s = {windows / e2e:.2f} windows/s")
    print(f"ratio (end-to-end / network-only throughput): {net / e2e:.3f}")
    print(f"within predict: time in the network / end-to-end time: median "
          f"{statistics.median(n / e for n, e in zip(in_run, e2e_times)):.3f}")


class rasterio_sources:
    """Both GeoTIFFs open as strip sources (for cutting the network-only batches)."""

    def __init__(self, path_a: Path, path_b: Path) -> None:
        self.paths = (path_a, path_b)

    def __enter__(self):  # noqa: ANN204
        from mmchange_core.io.raster import open_source

        self.sources = [open_source(p) for p in self.paths]
        return self.sources

    def __exit__(self, *exc: object) -> None:
        for source in self.sources:
            source.close()


if __name__ == "__main__":
    main()
