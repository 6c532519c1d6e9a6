"""Learning benchmark of class-aware change (issue 25): per-class F1 of a K-class model, and what the text adds.

Synthetic data from ``mmchange synth --classes`` (classes 1 new building, 2 demolished building, 3 vegetation
lost; each date's land cover differs as the classes say). Every image is captioned by the offline ``basic``
captioner (land-cover shares: roofs, vegetation, bare ground, water, roads) with the ``hashing`` text encoder,
through the library's caption store, exactly as ``mmchange caption --captioner basic --encoder hashing`` does.
Models are trained and evaluated on the CPU through the library's own API (:func:`train`, :func:`evaluate`):

* ``full``: the MMChange network (IFR, TDE, ITFF; resnet18 trunk from random weights, text width 64) with the
  class file (K = 4 outputs, cross-entropy + Dice, deep supervision), evaluated with the true captions;
* the same trained network evaluated with **permuted** captions (each test pair gets the captions of another
  pair) and with **constant** captions (every image gets the captions of the first test image, so the two
  dates never differ in text): if the network relies on the text, these drop;
* ``image-only``: the same recipe without the text branch (the paper's Table II first row).

It also prints how much the trained full model's output moves when its captions are replaced by a constant
one, and how similar the caption embeddings of the two dates of a pair (and of different pairs) are.

Held-out: pairs of another data seed. Usage::

    python benchmarks/class_change.py --out bench-classes            # 416 training pairs, 64 px
    python benchmarks/class_change.py --out bench-classes --iters 400 --seed 1

Prints one JSON line per row and a table at the end; numbers depend on the seeds and the CPU (the table in
``benchmarks/README.md`` names the machine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SIZE = 64


def _synth(root: Path, **settings) -> Path:
    from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset

    if not (root / "synth.json").is_file():
        make_synthetic_dataset(root, SynthConfig(size=SIZE, classes=True, **settings))
    return root


def _caption(root: Path) -> None:
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    caption_dataset(root, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing", dim=64),
                    device="cpu")


def _train(dataset: Path, project: Path, name: str, variant: str, iters: int, lr: float, seed: int) -> tuple[Path, float]:
    from mmchange_core.training.config import AugmentConfig, TrainConfig
    from mmchange_core.training.loop import train

    config = TrainConfig(dataset=str(dataset), backbone="resnet18", variant=variant, pretrained=False,
                         iters=iters, batch_size=8, crop_size=SIZE, lr=lr, warmup_iters=min(10, iters // 10),
                         augment=AugmentConfig(), val_split=None, workers=0, device="cpu", seed=seed,
                         project=str(project), name=name, log_every=10**6, classes=str(dataset / "classes.yaml"))
    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started
    if result.best_checkpoint is None:
        raise SystemExit(f"training {name} wrote no checkpoint ({result.run_dir})")
    return result.best_checkpoint, seconds


def _provider(checkpoint: Path, dataset: Path, captions: str):
    """The test split's caption embeddings: true, permuted across pairs, or constant (None: image-only)."""
    from mmchange_core.text.features import checkpoint_text_provider
    from mmchange_core.models import read_checkpoint_meta

    provider = checkpoint_text_provider(read_checkpoint_meta(checkpoint), dataset)
    if provider is None or captions == "true":
        return provider

    def changed(pairs):
        emb_a, emb_b = (np.asarray(e) for e in provider(pairs))
        if captions == "permuted":  # every pair gets another pair's captions (a cyclic shift: none keeps its own)
            order = np.roll(np.arange(len(emb_a)), 1)
            return emb_a[order], emb_b[order]
        constant = np.repeat(emb_a[:1], len(emb_a), axis=0)  # one caption for every image of both dates
        return constant, constant

    return changed


def _score(checkpoint: Path, dataset: Path, captions: str = "true") -> tuple[dict, float]:
    from mmchange_core.evaluation.evaluate import evaluate
    from mmchange_core.inference.detector import ChangeDetector

    detector = ChangeDetector.from_checkpoint(checkpoint, device="cpu")
    started = time.perf_counter()
    result = evaluate(detector, dataset, "test", text_provider=_provider(checkpoint, dataset, captions))
    metrics = result.metrics()
    scores = {"mean_f1": round(float(metrics["mean_f1"]), 4), "miou": round(float(metrics["miou"]), 4),
              "change_f1": round(float(metrics["f1"]), 4)}
    for row in metrics["per_class"][1:]:  # the change classes
        scores[f"f1 {row['name']}"] = round(float(row["f1"]), 4)
    return scores, time.perf_counter() - started


def _text_sensitivity(checkpoint: Path, dataset: Path) -> dict:
    """How much the trained full model's output depends on its captions, and how much the captions differ:
    per test pair, the class maps with true and with constant captions (share of pixels that agree, mean
    |change probability difference|), and the cosine similarity of the caption embeddings of the two dates
    (of one pair) and of date B of different pairs."""
    from mmchange_core.data.dataset import read_labelled_pair
    from mmchange_core.data.layouts import detect_layout
    from mmchange_core.inference.detector import ChangeDetector

    detector = ChangeDetector.from_checkpoint(checkpoint, device="cpu")
    pairs = detect_layout(dataset).pairs("test")
    emb_a, emb_b = (np.asarray(e, dtype=np.float32) for e in _provider(checkpoint, dataset, "true")(pairs))
    agree, diffs = [], []
    for i, pair in enumerate(pairs):
        image_a, image_b, _ = read_labelled_pair(pair, detector.imagery, detector.meta.classes)
        prob, classes = detector.decision_map(image_a, image_b, emb_a[i], emb_b[i])
        prob_c, classes_c = detector.decision_map(image_a, image_b, emb_a[0], emb_a[0])
        agree.append(float((classes == classes_c).mean()))
        diffs.append(float(np.abs(prob - prob_c).mean()))
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)  # noqa: E731
    a, b = unit(emb_a), unit(emb_b)
    between_pairs = b @ b.T
    off_diagonal = between_pairs[~np.eye(len(b), dtype=bool)]
    return {"class_map_agreement_true_vs_constant": round(float(np.mean(agree)), 5),
            "mean_abs_prob_diff_true_vs_constant": round(float(np.mean(diffs)), 5),
            "caption_cosine_a_vs_b_same_pair": round(float(np.mean(np.sum(a * b, axis=1))), 4),
            "caption_cosine_b_across_pairs": round(float(np.mean(off_diagonal)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-classes"))
    parser.add_argument("--pairs", type=int, default=416, help="training pairs")
    parser.add_argument("--test-pairs", type=int, default=60, help="held-out pairs (another data seed)")
    parser.add_argument("--iters", type=int, default=300, help="Adam steps of each training")
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights, sampling, augmentation)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_data = _synth(args.out / "train", pairs=args.pairs, seed=0, val_fraction=0.02, test_fraction=0.02)
    held_out = _synth(args.out / "test", pairs=args.test_pairs, seed=1000, val_fraction=0.05, test_fraction=0.9)
    for root in (train_data, held_out):
        _caption(root)
    print(json.dumps({"data_and_captions_s": round(time.perf_counter() - started, 1)}), flush=True)
    rows = []
    for variant in ("full", "image-only"):
        checkpoint, seconds = _train(train_data, args.out / "runs", f"{variant}-seed{args.seed}", variant,
                                     args.iters, args.lr, args.seed)
        for captions in (("true", "permuted", "constant") if variant == "full" else ("none",)):
            scores, eval_s = _score(checkpoint, held_out, "true" if captions == "none" else captions)
            row = {"model": variant, "captions at test": captions, **scores, "train_s": round(seconds, 1),
                   "eval_s": round(eval_s, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        if variant == "full":
            print(json.dumps({"text_sensitivity": _text_sensitivity(checkpoint, held_out)}), flush=True)
    class_keys = [k for k in rows[0] if k.startswith("f1 ")]
    print("\n| model | captions at test | " + " | ".join(k[3:] for k in class_keys) +
          " | mean F1 | mIoU | change F1 | training (s) | eval (s) |")
    print("|---|---|" + "---|" * (len(class_keys) + 5))
    for r in rows:
        cells = " | ".join(f"{r[k]:.3f}" for k in class_keys)
        print(f"| {r['model']} | {r['captions at test']} | {cells} | {r['mean_f1']:.3f} | {r['miou']:.3f} | "
              f"{r['change_f1']:.3f} | {r['train_s']} | {r['eval_s']} |")


if __name__ == "__main__":
    main()
