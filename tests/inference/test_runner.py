"""The inference fast path: BatchNorm folding, precision handling and the runner's outputs."""

from __future__ import annotations

import pytest
import torch

from mmchange_core.device import resolve_precision
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.errors import MMChangeError
from mmchange_core.models import build_model
from mmchange_core.models.fusion import fold_batchnorm
from tests.inference_helpers import randomise_batchnorm


def test_fold_batchnorm_removes_every_bn_and_keeps_outputs() -> None:
    model = build_model("resnet50").eval()
    randomise_batchnorm(model)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "original must be untouched"
    x, t = torch.randn(1, 3, 128, 128), torch.randn(1, 512)
    with torch.no_grad():
        ref = model(x, x.flip(-1), t, -t)
        out = folded(x, x.flip(-1), t, -t)
    for a, b in zip(ref, out):
        assert (a - b).abs().max() < 1e-4


def test_runner_matches_plain_forward_and_checks_text() -> None:
    model = build_model("resnet18").eval()
    randomise_batchnorm(model)
    runner = InferenceRunner(model, "cpu")
    assert runner.precision == "fp32" and not runner.cuda_graphs and runner.channels_last
    x, t = torch.randn(2, 3, 64, 64), torch.randn(2, 512)
    with torch.no_grad():
        ref = model(x, x.flip(-1), t, -t)[0]
    assert (runner.logits(x, x.flip(-1), t, -t) - ref).abs().max() < 1e-4
    with pytest.raises(MMChangeError, match="needs text embeddings"):
        runner.logits(x, x)


def test_bf16_channels_last_runner_stays_close() -> None:
    model = build_model("resnet18").eval()
    x, t = torch.randn(1, 3, 64, 64), torch.randn(1, 512)
    with torch.no_grad():
        ref = model(x, x.flip(-1), t, -t)[0]
    runner = InferenceRunner(model, "cpu", "bf16", channels_last=True)
    out = runner.logits(x, x.flip(-1), t, -t)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_precision_validation() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(MMChangeError, match="unknown precision"):
        resolve_precision("int8", cpu)
    with pytest.raises(MMChangeError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", cpu)


def test_benchmark_times_inference_and_training_steps_on_cpu() -> None:
    from mmchange_core.benchmark import BenchmarkConfig, run_benchmark

    report = run_benchmark(BenchmarkConfig(backbone="resnet18", size=64, batch_size=[2], precision=["fp32"],
                                           device="cpu", warmup=1, repeats=1, min_run_seconds=0.0, train=True))
    assert [(r.mode, r.batch, r.precision) for r in report.rows] == [("inference", 2, "fp32"), ("train", 2, "fp32")]
    assert all(r.pairs_per_s > 0 and r.latency_ms > 0 for r in report.rows)
    assert report.params_m > 17 and report.gflops > 0


def test_eager_runner_reuses_text_maps_of_the_same_scene() -> None:
    model = build_model("resnet18").eval()
    randomise_batchnorm(model)
    runner = InferenceRunner(model, "cpu")
    calls = []
    runner.network.tde.register_forward_hook(lambda *_: calls.append(1))
    x, t = torch.randn(3, 3, 64, 64), torch.randn(1, 512)
    with torch.no_grad():
        for text_b in (-t, -t, t):  # two windows of one scene, then other captions
            ref = model(x, x.flip(-1), t, text_b)[0]
            assert (runner.logits(x, x.flip(-1), t, text_b) - ref).abs().max() < 1e-4
    assert len(calls) == 2  # the second call reused the first one's text maps
    main_only = runner.network(x, x, t, t, main_only=True)
    assert len(main_only) == 1 and main_only[0].shape == (3, 1, 64, 64)
