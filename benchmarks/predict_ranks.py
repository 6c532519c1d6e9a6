"""Two torchrun processes vs one process on a folder of pairs: wall time, throughput ratio, bit-identity.

Both sides run the real command on the same folder, with the same random-init checkpoint and
settings, alternating, ``--repeats`` times each:

* one process: ``python -m mmchange_cli predict A B -o out ...`` with every core as torch threads;
* N processes: ``torchrun --standalone --nproc-per-node N -m mmchange_cli predict ...`` (gloo; each
  process gets cores / N torch threads, see ``mmchange_core.distributed.share_cpu_threads``).

Wall time includes starting the processes and loading the model (each process loads it), which is
what a user waits for. It prints the medians, the speed-up, and whether the masks are identical
(they are when each process uses the same thread count as the single one: run with ``--threads 1``
to check; with unequal counts the CPU kernels round differently in the last bits).

    python benchmarks/predict_ranks.py                   # 12 pairs of 512 x 512, 2 processes
    python benchmarks/predict_ranks.py --pairs 8 --size 256 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmchange_core.models import build_model, save_checkpoint  # noqa: E402


def write_folder(root: Path, pairs: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(pairs):
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        changed = image.copy()
        changed[size // 4:size // 2, size // 4:size // 2] = 200
        for sub, array in (("A", image), ("B", changed)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / sub / f"pair{i:03d}.png")


def run(command: list[str], env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process on both sides (default: all cores for one process, "
                             "cores / N for each of N)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    single_threads = args.threads or cores
    with tempfile.TemporaryDirectory(prefix="mmchange-ranks-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        checkpoint = tmp / "resnet18.safetensors"
        save_checkpoint(checkpoint, build_model("resnet18", "image-only"))
        write_folder(tmp, args.pairs, args.size)
        common = ["predict", str(tmp / "A"), str(tmp / "B"), "--checkpoint", str(checkpoint), "--tile-size",
                  str(args.tile), "--batch-size", str(args.batch), "--device", "cpu", "--overwrite", "--json"]
        base_env = dict(os.environ, PYTHONPATH=str(ROOT))
        one_env = dict(base_env, OMP_NUM_THREADS=str(single_threads))
        many_env = dict(base_env, OMP_NUM_THREADS="1")
        if args.threads:
            many_env["MMCHANGE_CPU_THREADS"] = str(args.threads)
        one_cmd = [sys.executable, "-m", "mmchange_cli", *common, "-o", str(tmp / "one")]
        many_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                    str(args.procs), "-m", "mmchange_cli", *common, "-o", str(tmp / "many")]
        one_times, many_times, one_lib, many_lib = [], [], [], []
        for repeat in range(args.repeats):
            seconds, result = run(one_cmd, one_env)
            one_times.append(seconds)
            one_lib.append(result["seconds"])
            seconds, result = run(many_cmd, many_env)
            many_times.append(seconds)
            many_lib.append(result["seconds"])
            print(f"repeat {repeat + 1}: 1 process {one_times[-1]:.1f} s (library {one_lib[-1]:.1f} s), "
                  f"{args.procs} processes {many_times[-1]:.1f} s (library {many_lib[-1]:.1f} s)", flush=True)
        identical = all((tmp / "one" / p.name).read_bytes() == p.read_bytes()
                        for p in sorted((tmp / "many").glob("*.png")))
    one, many = statistics.median(one_times), statistics.median(many_times)
    print(f"{args.pairs} pairs of {args.size}x{args.size}, tile {args.tile}, batch {args.batch}, {cores} cores, "
          f"resnet18 image-only (random init), CPU fp32")
    print(f"1 process ({single_threads} threads): median {one:.1f} s wall = {args.pairs / one:.3f} pairs/s "
          f"(library call {statistics.median(one_lib):.1f} s)")
    print(f"{args.procs} processes ({args.threads or max(1, cores // args.procs)} threads each): median {many:.1f} s "
          f"wall = {args.pairs / many:.3f} pairs/s (library call {statistics.median(many_lib):.1f} s)")
    print(f"speed-up (wall): {one / many:.2f}x; speed-up (library call): "
          f"{statistics.median(one_lib) / statistics.median(many_lib):.2f}x; masks identical: {identical}")


if __name__ == "__main__":
    main()
