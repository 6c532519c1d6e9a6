"""Learning benchmark: does MMChange learn, on CPU, from scratch, and does the text reach the network?

Builds a synthetic dataset with ``--text-signal`` (land-cover mix follows the labelled change),
captions it with the offline ``basic`` captioner + ``hashing`` encoder, then trains and evaluates
the ``full`` model and the ``image-only`` variant the same way (resnet18 trunk, no pretrained
weights, CPU) and reports held-out (test split) F1 and wall time of each. For text models it also
evaluates with wrong text (captions permuted across pairs, swapped between the dates, or one
constant embedding) to show whether the network uses the text it is given.

    nice python benchmarks/learning.py --out bench-learning            # defaults below
    nice python benchmarks/learning.py --out bench-learning --variants image-only

Re-running the same command resumes: the dataset and captions are completed, interrupted training
runs continue from their state (``mmchange train --resume``), finished runs are only evaluated.
Results go to ``<out>/results.json`` and are printed. Not a timed test: see
benchmarks/README.md for measured numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-learning"), help="Working folder.")
    parser.add_argument("--pairs", type=int, default=300, help="Synthetic pairs (70/15/15 train/val/test).")
    parser.add_argument("--size", type=int, default=128, help="Synthetic image side.")
    parser.add_argument("--crop-size", type=int, default=64, help="Training crop (images are tiled).")
    parser.add_argument("--iters", type=int, default=1500, help="Training iterations (rounded up to epochs).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=2333, help="Training seed.")
    parser.add_argument("--data-seed", type=int, default=7, help="Synthetic dataset seed.")
    parser.add_argument("--variants", default="full,image-only", help="Comma-separated variants to run.")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers.")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    return parser.parse_args()


def _text_checks(checkpoint: Path, data: Path, workers: int) -> dict[str, float]:
    """Test F1 of a text model when its captions are right, permuted across pairs, or swapped A<->B.

    If the text features reach the network paired with the right images and the network uses them,
    wrong text lowers F1; if F1 does not move, the network ignores the text.
    """
    import numpy as np

    from mmchange_core.evaluation.evaluate import evaluate
    from mmchange_core.inference.detector import ChangeDetector
    from mmchange_core.text.features import checkpoint_text_provider
    from mmchange_core.models import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    right = checkpoint_text_provider(meta, data)

    def permuted(pairs):
        emb_a, emb_b = right(pairs)
        order = np.roll(np.arange(len(pairs)), 1)  # every pair gets another pair's captions
        return emb_a[order], emb_b[order]

    def swapped(pairs):
        emb_a, emb_b = right(pairs)
        return emb_b, emb_a

    def constant(pairs):
        emb_a, emb_b = right(pairs)
        mean = (emb_a.mean(0, keepdims=True) + emb_b.mean(0, keepdims=True)) / 2
        return np.repeat(mean, len(pairs), 0), np.repeat(mean, len(pairs), 0)

    checks = {}
    for name, provider in (("right", right), ("permuted", permuted), ("swapped", swapped), ("constant", constant)):
        result = evaluate(ChangeDetector(model, meta, device="cpu", batch_size=32), data, "test",
                          workers=workers, text_provider=provider)
        checks[f"f1_text_{name}"] = result.metrics()["f1"]
    return checks


def main() -> None:
    args = _args()
    import torch

    torch.set_num_threads(args.threads)
    from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
    from mmchange_core.evaluation.run import EvalOptions, run_evaluation
    from mmchange_core.inference.settings import DetectorSettings
    from mmchange_core.training.config import TrainConfig
    from mmchange_core.training.loop import resume_config, train
    from mmchange_core.metrics import METRIC_NAMES
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    out = args.out
    data = out / "data"
    started = time.perf_counter()
    make_synthetic_dataset(data, SynthConfig(pairs=args.pairs, size=args.size, seed=args.data_seed, text_signal=True))
    caption_dataset(data, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing"),
                    device="cpu")
    print(f"dataset and captions ready in {time.perf_counter() - started:.0f} s", flush=True)

    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        run_dir = out / "runs" / "train" / variant
        config = TrainConfig(dataset=str(data), backbone="resnet18", variant=variant, pretrained=False,
                             iters=args.iters, batch_size=args.batch_size, crop_size=args.crop_size,
                             workers=args.workers, device="cpu", seed=args.seed, name=variant,
                             project=str(out / "runs"))
        if (run_dir / "state.pt").is_file():
            result = train(resume_config(run_dir), resume_dir=run_dir)
        else:
            if run_dir.exists():  # started but never reached a saved state
                raise SystemExit(f"{run_dir} exists without state.pt; remove it and rerun")
            result = train(config)
        if not result.completed:
            raise SystemExit(f"{variant} stopped at iteration {result.iterations}; rerun the same command to resume")
        # training + validation time from metrics.csv, so resumed runs add up correctly
        train_seconds = sum(float(row["seconds"]) for row in result.history)
        t1 = time.perf_counter()
        report = run_evaluation(EvalOptions(checkpoint=str(result.best_checkpoint), dataset=str(data), split="test", name=variant, project=str(out / "runs"), detector=DetectorSettings(device="cpu", workers=args.workers, batch_size=32)))
        eval_seconds = time.perf_counter() - t1
        metrics = report.metrics()
        results[variant] = {
            "test": {k: metrics[k] for k in METRIC_NAMES},
            "best_epoch": result.best_epoch,
            "best_val_f1": result.best_f1,
            "iterations": result.iterations,
            "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(eval_seconds, 1),
            "run_dir": str(result.run_dir),
        }
        if variant != "image-only":
            results[variant]["text_checks"] = _text_checks(result.best_checkpoint, data, args.workers)
        results["settings"] = {**vars(args), "out": str(args.out), "torch": torch.__version__,
                               "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
        results_path.write_text(json.dumps(results, indent=2))
        extra = results[variant].get("text_checks")
        if extra:
            print(f"{variant}: test F1 with right / permuted / swapped / constant text: "
                  + " / ".join(f"{v:.4f}" for v in extra.values()), flush=True)
        print(f"{variant}: test F1 {metrics['f1']:.4f} IoU {metrics['iou']:.4f} "
              f"(best epoch {result.best_epoch}, val F1 {result.best_f1:.4f}); train {train_seconds:.0f} s, "
              f"eval {eval_seconds:.0f} s", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
