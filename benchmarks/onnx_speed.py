"""onnxruntime (fp32 and int8) beside the torch CPU path, measured in one run, and int8's effect on real pairs.

    python benchmarks/onnx_speed.py --checkpoint CKPT --calibrate DATA --check DATA [--out DIR]

Without --checkpoint a resnet18 image-only model with random weights (BatchNorm statistics randomised)
is used. Timing: the same random batch of windows through the torch runner (the CPU fast path), the
fp32 .onnx and the int8 .onnx, interleaved round by round so load changes hit every backend alike;
medians per backend and their ratios are printed. With --check: mask agreement, F1 and max |probability
difference| of each .onnx against the plain fp32 torch network (mmchange_core.inference.drift).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mmchange_core.inference.drift import measure_drift
from mmchange_core.inference.int8 import calibration_batches, calibration_reader
from mmchange_core.inference.onnx_runner import OnnxRunner
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.models import CheckpointMeta, build_model, load_checkpoint, save_checkpoint
from mmchange_core.inference.backends import export_model_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint")
    parser.add_argument("--calibrate", required=True)
    parser.add_argument("--check")
    parser.add_argument("--out", default=None)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="onnx-speed-"))
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    if checkpoint is None:
        torch.manual_seed(0)
        model = build_model("resnet18", "image-only")
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        checkpoint = str(save_checkpoint(out / "random18.safetensors", model,
                                         CheckpointMeta(model=model.config, tile_size=args.size)))
    t0 = time.perf_counter()
    fp32 = export_model_file(checkpoint, out / "model.onnx")
    print(f"export fp32: {time.perf_counter() - t0:.0f} s, max |logit diff| vs torch {fp32.max_abs_logit_diff:.2g}")
    model, meta = load_checkpoint(checkpoint)
    feeds, pairs = calibration_batches(meta, args.calibrate, "train", windows=32)
    int8 = export_model_file(fp32.path, out / "model-int8.onnx", quantize="int8", calibration=calibration_reader(feeds))
    print(f"int8 (static, {len(feeds)} calibration windows of {pairs} pairs): export reports {int8.speedup:.2f}x "
          f"vs fp32 onnxruntime, max |logit diff| vs fp32 {int8.max_abs_logit_diff:.3g}")
    dynamic = export_model_file(fp32.path, out / "model-int8-dynamic.onnx", quantize="int8-dynamic")
    print(f"int8-dynamic: export reports {dynamic.speedup:.2f}x vs fp32 onnxruntime")

    runners = {"torch": InferenceRunner(model, "cpu"), "onnx fp32": OnnxRunner(fp32.path),
               "onnx int8": OnnxRunner(int8.path)}
    images = [torch.randn(args.batch, 3, args.size, args.size) for _ in range(2)]
    text = [torch.randn(1, model.config.text_dim)] * 2 if model.uses_text else [None, None]
    times: dict[str, list[float]] = {name: [] for name in runners}
    for name, runner in runners.items():
        runner.logits(*images, *text)  # warm-up
    for _ in range(args.rounds):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.logits(*images, *text)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["torch"])
    print(f"{torch.get_num_threads()} threads, batch {args.batch} x {args.size}^2, {args.rounds} interleaved rounds:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:10s} median {median * 1000:8.1f} ms/batch  torch/{name} = {base / median:.2f}x")
    if args.check:
        for path in (fp32.path, int8.path):
            drift = measure_drift(checkpoint, args.check, "all", device="cpu", candidate=path)
            print(f"check {path.name} on {drift.pairs} pairs ({drift.pixels:,} px): agreement {drift.agreement:.5%}, "
                  f"F1 torch fp32 {drift.f1_reference:.4f} vs {drift.f1_fast:.4f} "
                  f"({(drift.f1_fast - drift.f1_reference) * 100:+.2f} points), max |prob diff| "
                  f"{drift.max_abs_prob_diff:.3g}, s/pair {drift.seconds_reference:.2f} (plain torch) vs "
                  f"{drift.seconds_fast:.2f}")


if __name__ == "__main__":
    main()
