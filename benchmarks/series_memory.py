"""Peak memory and time of ``mmchange series`` against one pair: memory follows the window plan, not the dates.

Writes a synthetic series of N co-registered GeoTIFFs (``--side`` x ``--side``, RGB uint8, EPSG:32632) whose
later dates add painted blocks, then runs, each in its own process (peak RSS is that process's VmHWM):

* ``pair``: ``mmchange predict`` on the first two dates (the baseline: one pair);
* ``series-N``: ``mmchange series`` on the first N dates, for each N of ``--dates``.

The model is a random-weight resnet18 image-only checkpoint (memory and time per window depend on the
trunk, not on its weights); ``--threshold`` keeps the masks sparse, as real change is.

Usage: ``python benchmarks/series_memory.py --side 4096 --dates 5 10 --out bench-series`` (one JSON line per
run, and a table at the end).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

START = "2015-06-01"


def write_series(folder: Path, side: int, dates: int) -> list[Path]:
    """``dates`` GeoTIFFs of one textured scene; date k adds k blocks of 256 x 256."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    base = np.stack([(yy // 8 + xx // 16) % 200, (xx // 8) % 180 + 40, (yy // 16) % 160 + 60], -1).astype(np.uint8)
    paths = []
    for k in range(dates):
        if k:
            y, x = rng.integers(0, side - 256, 2)
            base[y:y + 256, x:x + 256] = rng.integers(0, 255, 3, dtype=np.uint8)
        path = folder / f"site_{2015 + k}-06-01.tif"
        paths.append(path)
        if path.exists():
            continue
        with rasterio.open(path, "w", driver="GTiff", height=side, width=side, count=3, dtype="uint8", tiled=True,
                           compress="deflate", crs="EPSG:32632", transform=from_origin(600000, 5000000, 0.5, 0.5)
                           ) as dst:
            dst.write(np.moveaxis(base, -1, 0))
    return paths


def checkpoint(folder: Path) -> Path:
    import torch

    from mmchange_core.models import build_model, save_checkpoint

    path = folder / "resnet18_image_only.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_checkpoint(path, build_model("resnet18", "image-only"))
    return path


def measure(command: list[str]) -> dict:
    """Run ``command`` under a wrapper that reports its peak RSS (VmHWM) and wall time."""
    wrapper = ("import os, re, subprocess, sys, time, resource; t0 = time.perf_counter(); "
               "rc = subprocess.call(sys.argv[1:]); "
               "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024; "
               "print('MEASURED', rc, peak, time.perf_counter() - t0)")
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("MEASURED"))
    _, rc, peak, seconds = line.split()
    if int(rc) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return {"peak_rss_mib": int(peak), "seconds": round(float(seconds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--dates", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--out", type=Path, default=Path("bench-series"))
    parser.add_argument("--threshold", default="0.9")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    images = write_series(args.out / "images", args.side, max(args.dates))
    model = checkpoint(args.out)
    common = ["--checkpoint", str(model), "--device", "cpu", "--threshold", args.threshold, "--overwrite", "--json"]
    runs = [("pair (2 dates)", [sys.executable, "-m", "mmchange_cli", "predict", str(images[0]), str(images[1]),
                                "-o", str(args.out / "pair" / "mask.tif"), *common])]
    for n in args.dates:
        runs.append((f"series ({n} dates)", [sys.executable, "-m", "mmchange_cli", "series", *map(str, images[:n]),
                                             "-o", str(args.out / f"series{n}"), *common]))
    rows = []
    for name, command in runs:
        t0 = time.perf_counter()
        result = measure(command)
        result.update(run=name, side=args.side)
        print(json.dumps(result), flush=True)
        rows.append(result)
    print(f"\n| run | peak RSS (MiB) | wall time (s) |\n|---|---|---|")
    for row in rows:
        print(f"| {row['run']}, {row['side']} x {row['side']} | {row['peak_rss_mib']} | {row['seconds']} |")


if __name__ == "__main__":
    main()
