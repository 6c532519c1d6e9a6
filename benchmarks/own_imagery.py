"""Learning benchmark of "your own imagery" (issue 23): what near-infrared and fine-tuning buy, measured.

Two experiments on synthetic data, trained and evaluated on the CPU through the library's own API
(:func:`mmchange_core.training.loop.train`, :func:`mmchange_core.evaluation.evaluate.evaluate`):

* ``nir``: pairs of 4-band uint16 reflectance (``synth --bands 4``) in which **every** change shows only in
  the near-infrared (``nir_only_fraction = 1``; the visible bands of both dates are equal up to a brightness
  gain and noise). The same recipe trains a 4-band model (``imagery.bands = 1,2,3,4``) and an RGB model
  (``imagery.bands = 1,2,3``) on the same files; both are evaluated on held-out pairs of another seed.
* ``finetune``: a model trained on one synthetic style (``suburb``), then (i) fine-tuned on 8 labelled pairs of
  another style (``--style desert``: other palette, texture and object shapes) with ``train --weights``, against
  (ii) the same 8 pairs trained from scratch with the same recipe; held-out F1 on the new style, plus the
  source model on the new style without fine-tuning (the gap fine-tuning closes).

Usage::

    python benchmarks/own_imagery.py --out bench-own-imagery            # both experiments
    python benchmarks/own_imagery.py --only nir --iters 300 --out bench-own-imagery

Prints one JSON line per model (F1, IoU, precision, recall, wall seconds of training) and a table at the end.
Numbers depend on the seeds and the CPU; the table in ``benchmarks/README.md`` names the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SIZE = 64


def _train(dataset: Path, project: Path, name: str, *, bands: tuple[int, ...] | None, iters: int, lr: float,
           weights: str | None = None, freeze: str = "none", seed: int = 0) -> tuple[Path, float]:
    """Train a random-init resnet18 image-only model (or fine-tune ``weights``); its best checkpoint and seconds."""
    from mmchange_core.io.imagery import Imagery
    from mmchange_core.training.config import AugmentConfig, TrainConfig
    from mmchange_core.training.loop import train

    config = TrainConfig(dataset=str(dataset), backbone="resnet18", variant="image-only", pretrained=False,
                         iters=iters, batch_size=8, crop_size=SIZE, lr=lr, warmup_iters=min(10, iters // 10),
                         augment=AugmentConfig(), val_split=None, workers=0, device="cpu", seed=seed,
                         project=str(project), name=name, log_every=10**6, imagery=Imagery(bands=bands),
                         weights=weights, freeze=freeze)
    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started
    if result.best_checkpoint is None:
        raise SystemExit(f"training {name} wrote no checkpoint ({result.run_dir})")
    return result.best_checkpoint, seconds


def _score(checkpoint: Path, dataset: Path) -> dict:
    from mmchange_core.evaluation.evaluate import evaluate
    from mmchange_core.inference.detector import ChangeDetector

    detector = ChangeDetector.from_checkpoint(checkpoint, device="cpu")
    metrics = evaluate(detector, dataset, "test").metrics()
    return {k: round(float(metrics[k]), 4) for k in ("f1", "iou", "precision", "recall")}


def _synth(root: Path, **settings) -> Path:
    from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset

    if not (root / "synth.json").is_file():
        make_synthetic_dataset(root, SynthConfig(size=SIZE, **settings))
    return root


def nir_experiment(out: Path, pairs: int, iters: int, lr: float, seed: int = 0) -> list[dict]:
    """4-band against RGB on changes that only the near-infrared shows."""
    train_data = _synth(out / "nir_train", pairs=pairs, seed=0, bands=4, nir_only_fraction=1.0,
                        val_fraction=0.02, test_fraction=0.02)
    held_out = _synth(out / "nir_test", pairs=60, seed=1000, bands=4, nir_only_fraction=1.0,
                      val_fraction=0.05, test_fraction=0.9)
    rows = []
    for name, bands in (("rgb+nir (4 bands)", (1, 2, 3, 4)), ("rgb (3 bands)", (1, 2, 3))):
        checkpoint, seconds = _train(train_data, out / "runs", name.split()[0].replace("+", "_"), bands=bands,
                                     iters=iters, lr=lr, seed=seed)
        row = {"experiment": "nir", "model": name, **_score(checkpoint, held_out), "train_s": round(seconds, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def finetune_experiment(out: Path, pairs: int, iters: int, lr: float, few: int, few_iters: int,
                        seed: int = 0) -> list[dict]:
    """A source-style model fine-tuned on ``few`` pairs of a new style against those pairs from scratch."""
    source = _synth(out / "style_source", pairs=pairs, seed=0, val_fraction=0.02, test_fraction=0.02)
    target = _synth(out / "style_target_few", pairs=few + 2, seed=7, style="desert",
                    val_fraction=1 / (few + 2), test_fraction=1 / (few + 2))
    held_out = _synth(out / "style_target_test", pairs=60, seed=1000, style="desert", val_fraction=0.05,
                      test_fraction=0.9)
    source_ckpt, source_s = _train(source, out / "runs", "source", bands=None, iters=iters, lr=lr, seed=seed)
    rows = [{"experiment": "finetune", "model": f"source style only ({pairs} pairs), no fine-tuning",
             **_score(source_ckpt, held_out), "train_s": round(source_s, 1)}]
    print(json.dumps(rows[-1]), flush=True)
    tuned, tuned_s = _train(target, out / "runs", "finetuned", bands=None, iters=few_iters, lr=lr / 4,
                            weights=str(source_ckpt), seed=seed)
    rows.append({"experiment": "finetune", "model": f"fine-tuned on {few} new-style pairs",
                 **_score(tuned, held_out), "train_s": round(tuned_s, 1)})
    print(json.dumps(rows[-1]), flush=True)
    scratch, scratch_s = _train(target, out / "runs", "scratch", bands=None, iters=few_iters, lr=lr, seed=seed)
    rows.append({"experiment": "finetune", "model": f"from scratch on the same {few} pairs",
                 **_score(scratch, held_out), "train_s": round(scratch_s, 1)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-own-imagery"))
    parser.add_argument("--only", choices=("nir", "finetune"), default=None)
    parser.add_argument("--pairs", type=int, default=416, help="training pairs of the NIR and source-style data")
    parser.add_argument("--iters", type=int, default=104, help="Adam steps of the full trainings")
    parser.add_argument("--lr", type=float, default=8e-3)
    parser.add_argument("--few", type=int, default=8, help="labelled pairs of the new style")
    parser.add_argument("--few-iters", type=int, default=40, help="Adam steps on the few new-style pairs")
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights, sampling, augmentation)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.only in (None, "nir"):
        rows += nir_experiment(args.out, args.pairs, args.iters, args.lr, args.seed)
    if args.only in (None, "finetune"):
        rows += finetune_experiment(args.out, args.pairs, args.iters, args.lr, args.few, args.few_iters, args.seed)
    print("\n| experiment | model | held-out F1 | IoU | precision | recall | training (s) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['experiment']} | {r['model']} | {r['f1']:.3f} | {r['iou']:.3f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['train_s']} |")


if __name__ == "__main__":
    main()
