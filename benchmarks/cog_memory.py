"""Peak memory and time of writing a large COG: the staged writer vs holding the whole mosaic in memory.

Each side runs in its own process (peak RSS is VmHWM of that process, which exec resets):

* ``staged``: ``StagedRaster.create`` -> strip writes -> ``finish`` (what predict does);
* ``in-memory``: the mosaic as one numpy array, written as a tiled GeoTIFF and copied to a COG.

Usage: ``python benchmarks/cog_memory.py --side 16384 --dtype uint8`` (prints one line per side).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_mib() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024


def _strip(y0: int, rows: int, side: int, dtype: str):
    """A mask-like strip: sparse changed squares (compresses like a real mask), or probabilities."""
    import numpy as np

    yy, xx = np.arange(y0, y0 + rows)[:, None] // 64, np.arange(side)[None, :] // 64
    changed = (yy + xx) % 11 == 0
    if dtype == "uint8":
        return changed.astype(np.uint8) * np.uint8(255)
    return np.where(changed, np.float32(0.9), np.float32(0.1)) + (xx % 7).astype(np.float32) * np.float32(0.001)


def run_side(side_name: str, side: int, dtype: str, folder: Path) -> dict:
    import numpy as np

    from mmchange_core.io.cog import COG_BLOCKSIZE, StagedRaster

    start_peak = _peak_mib()
    t0 = time.perf_counter()
    final = folder / f"{side_name}.tif"
    if side_name == "staged":
        stage = StagedRaster.create(final, side, side, dtype)
        for y0 in range(0, side, COG_BLOCKSIZE):
            stage.write(y0, _strip(y0, min(COG_BLOCKSIZE, side - y0), side, dtype))
        stage.finish()
    else:
        import rasterio
        from rasterio.shutil import copy

        mosaic = np.zeros((side, side), dtype=dtype)
        for y0 in range(0, side, COG_BLOCKSIZE):
            mosaic[y0:y0 + COG_BLOCKSIZE] = _strip(y0, min(COG_BLOCKSIZE, side - y0), side, dtype)
        tiled = folder / "tiled.tif"
        with rasterio.open(tiled, "w", driver="GTiff", height=side, width=side, count=1, dtype=dtype, tiled=True,
                           blockxsize=512, blockysize=512, compress="deflate", zlevel=1) as dst:
            dst.write(mosaic, 1)
        copy(tiled, final, driver="COG", BLOCKSIZE=512, COMPRESS="DEFLATE", PREDICTOR="YES",
             OVERVIEW_RESAMPLING="NEAREST" if dtype == "uint8" else "AVERAGE")
        tiled.unlink()
    return {"side": side_name, "pixels": f"{side}x{side} {dtype}", "raster_mib": side * side * np.dtype(dtype).itemsize
            // 2**20, "peak_rss_mib": _peak_mib(), "start_rss_mib": start_peak,
            "seconds": round(time.perf_counter() - t0, 1), "file_mib": round(final.stat().st_size / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=16384)
    parser.add_argument("--dtype", choices=["uint8", "float32"], default="uint8")
    parser.add_argument("--child", choices=["staged", "in-memory"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_side(args.child, args.side, args.dtype, args.folder)))
        return
    with tempfile.TemporaryDirectory(prefix="cog_memory.") as folder:
        for side_name in ("staged", "in-memory"):
            out = subprocess.run([sys.executable, __file__, "--side", str(args.side), "--dtype", args.dtype,
                                  "--child", side_name, "--folder", folder], capture_output=True, text=True, check=True)
            print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
