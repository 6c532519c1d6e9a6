"""Check the fused cuDNN conv+bias(+residual)+ReLU op on a GPU before timing it.

1. Op level: for the conv shapes of the resnet50 trunk (1x1, 3x3 dilated 2 and 4, strided), the fused
   op against an fp32 reference on fresh random bf16 inputs (relative error), with the output's
   memory poisoned with NaN beforehand (every element must be written, no NaN may leak through the
   unused residual input of the ReLU-only form).
2. Network level: resnet50/full, random weights with non-trivial BatchNorm statistics, batch 8 at
   256 px: the runner (bf16, CUDA graphs) with fusion off / trunk / all against the fp32 runner
   (relative error of the logits and agreement of the thresholded masks).

Usage (repository root): ``python benchmarks/fused_conv_check.py [--json-out check.json]``.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.fused_conv import _UNSUPPORTED, conv2d_bias_relu
from mmchange_core.models.mmchange import MMChange

#: (batch, in_ch, size, out_ch, kernel, stride, dilation, residual) as in the resnet50 trunk at batch 32.
SHAPES = [
    (64, 256, 64, 64, 1, 1, 1, False),
    (64, 64, 64, 64, 3, 1, 1, False),
    (64, 64, 64, 256, 1, 1, 1, True),
    (64, 128, 64, 128, 3, 2, 1, False),
    (64, 1024, 32, 256, 1, 1, 1, False),
    (64, 256, 32, 256, 3, 1, 2, False),
    (64, 256, 32, 1024, 1, 1, 1, True),
    (64, 512, 32, 512, 3, 1, 4, False),
    (64, 512, 32, 2048, 1, 1, 1, True),
    (64, 2048, 32, 320, 5, 4, 1, False),
]


def op_checks(device: torch.device) -> list[dict]:
    rows = []
    for batch, cin, size, cout, k, stride, dil, with_res in SHAPES:
        batch = batch if device.type == "cuda" else 1  # CPU: a smoke test of the script
        pad = dil * (k // 2)
        x = torch.randn(batch, cin, size, size, device=device, dtype=torch.bfloat16).contiguous(
            memory_format=torch.channels_last)
        w = (torch.randn(cout, cin, k, k, device=device) / (cin * k * k) ** 0.5).to(torch.bfloat16).contiguous(
            memory_format=torch.channels_last)
        b = torch.randn(cout, device=device, dtype=torch.bfloat16) * 0.1
        out_size = (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
        res = (torch.randn(batch, cout, out_size, out_size, device=device, dtype=torch.bfloat16)
               .contiguous(memory_format=torch.channels_last) if with_res else None)
        poison = torch.full((batch, cout, out_size, out_size), float("nan"), device=device, dtype=torch.bfloat16)
        del poison  # the caching allocator hands this block to the op's output next
        out = conv2d_bias_relu(x, w, b, res, [stride] * 2, [pad] * 2, [dil] * 2, 1)
        ref = F.conv2d(x.float(), w.float(), b.float(), stride, pad, dil)
        ref = F.relu(ref if res is None else ref + res.float())
        err = ((out.float() - ref).norm() / ref.norm()).item()
        rows.append({"shape": f"{cin}->{cout} k{k} s{stride} d{dil} {size}px" + (" +res" if with_res else ""),
                     "rel_err": err, "finite": bool(torch.isfinite(out).all()),
                     "channels_last": out.is_contiguous(memory_format=torch.channels_last)})
    return rows


def network_checks(device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    model = MMChange(ModelConfig(backbone="resnet50", variant="full")).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    n = 8 if device.type == "cuda" else 1
    a, b = torch.randn(n, 3, 256, 256), torch.randn(n, 3, 256, 256)
    t = torch.randn(n, model.config.text_dim)
    ref = InferenceRunner(model, device, "fp32", cuda_graphs=False, fused_convs="off").logits(a, b, t, t)
    rows = []
    for scope in ("off", "trunk", "all"):
        out = InferenceRunner(model, device, "bf16", fused_convs=scope).logits(a, b, t, t)
        rows.append({"fused": scope, "rel_err_vs_fp32": ((out - ref).norm() / ref.norm()).item(),
                     "mask_agreement": ((out > 0) == (ref > 0)).float().mean().item(),
                     "finite": bool(torch.isfinite(out).all())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    report = {"ops": op_checks(device), "network": network_checks(device),
              "unsupported_shapes": [str(k) for k in _UNSUPPORTED]}
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report, fh, indent=1)
    for row in report["ops"]:
        print(f"  op {row['shape']:<34} rel err {row['rel_err']:.2e} finite {row['finite']} NHWC {row['channels_last']}")
    for row in report["network"]:
        print(f"  net fused={row['fused']:<6} rel err vs fp32 {row['rel_err_vs_fp32']:.2e} "
              f"mask agreement {100 * row['mask_agreement']:.3f}% finite {row['finite']}")
    print(f"  shapes without a fused cuDNN engine: {len(report['unsupported_shapes'])}")


if __name__ == "__main__":
    main()
