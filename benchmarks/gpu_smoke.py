"""Quick GPU checks before the long benchmark suite: the fast path agrees with eager fp32.

Checks, on the first CUDA device: CUDA-graph replay equals the same runner without graphs (bf16),
the bf16 fast path stays close to fp32 eager, batch-1 text sharing works with graphs, and
torch.compile runs. Prints one line per check and exits non-zero on a failure.

    python benchmarks/gpu_smoke.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmchange_core.inference.runner import InferenceRunner  # noqa: E402
from mmchange_core.models import build_model  # noqa: E402


def main() -> int:
    assert torch.cuda.is_available(), "no CUDA device"
    failures = 0
    torch.manual_seed(0)
    model = build_model("resnet50").eval()
    a, b = torch.randn(4, 3, 256, 256), torch.randn(4, 3, 256, 256)
    ta, tb = torch.randn(4, 512), torch.randn(4, 512)
    ref = InferenceRunner(model, "cuda", "fp32", channels_last=False, fold_bn=False, cuda_graphs=False)
    base = ref.logits(a, b, ta, tb)
    for name, kwargs in [("bf16 eager", dict(cuda_graphs=False)), ("bf16 graphs", dict()),
                         ("fp32 graphs", dict(precision="fp32"))]:
        runner = InferenceRunner(model, "cuda", kwargs.pop("precision", "bf16"), **kwargs)
        first = runner.logits(a, b, ta, tb)
        again = runner.logits(b, a, tb, ta)  # different data through the same graph
        swapped = ref.logits(b, a, tb, ta)
        err1 = ((first - base).norm() / base.norm()).item()
        err2 = ((again - swapped).norm() / swapped.norm()).item()
        ok = err1 < 0.03 and err2 < 0.03
        failures += not ok
        print(f"{'ok ' if ok else 'BAD'} {name}: relative error {err1:.2e} / {err2:.2e}, warm-up {runner.warmup_seconds}")
    shared = InferenceRunner(model, "cuda", "bf16").logits(a, b, ta[:1], tb[:1])
    expanded = ref.logits(a, b, ta[:1].expand(4, -1), tb[:1].expand(4, -1))
    err = ((shared - expanded).norm() / expanded.norm()).item()
    failures += err >= 0.03
    print(f"{'ok ' if err < 0.03 else 'BAD'} batch-1 text with graphs: relative error {err:.2e}")
    t0 = time.perf_counter()
    small = build_model("resnet18").eval()
    compiled = InferenceRunner(small, "cuda", "bf16", compile=True)
    out = compiled.logits(a[:1], b[:1], ta[:1], tb[:1])
    plain = InferenceRunner(small, "cuda", "fp32", fold_bn=False, cuda_graphs=False).logits(a[:1], b[:1], ta[:1], tb[:1])
    err = ((out - plain).norm() / plain.norm()).item()
    failures += err >= 0.03
    print(f"{'ok ' if err < 0.03 else 'BAD'} compile + graphs (resnet18): relative error {err:.2e}, "
          f"{time.perf_counter() - t0:.1f} s including compilation")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
