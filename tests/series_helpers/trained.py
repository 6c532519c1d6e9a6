"""A small change detector that really detects the changes of the synthetic data, trained in the test setup.

End-to-end tests that check *where and when* changes happen need a network that finds the buildings
built or demolished between two dates of :mod:`mmchange_core.data.synth` and ignores its nuisance
(illumination, season, shadows, misregistration, noise). :func:`train_synthetic_detector` trains one
through the library's own API (:func:`mmchange_core.training.loop.train`) on a freshly generated
synthetic dataset: a random-init ResNet-18 image-only network, about a hundred Adam steps of 64 px
pairs on the CPU. Buildings are found almost perfectly at the object level; the pixel errors are
mostly a pixel or two around their outlines (the decoder works at 1/4 resolution).

:func:`trained_detector` trains once per test session (or pytest-xdist worker) and returns the same
checkpoint afterwards; the fixture that wraps it is in :mod:`tests.series_helpers.fixtures`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
from mmchange_core.training.config import AugmentConfig, TrainConfig

#: Side of the synthetic images the detector is trained on, in pixels (buildings are 6-15 px wide, changes
#: cover about 4% of the pixels). Series and pairs given to the detector should have this size (or a
#: multiple of it: the checkpoint's window is ``SIZE``).
SIZE = 64
#: Synthetic pairs generated for training (val and test get 5% each, unused: training runs without
#: validation, so ``best.safetensors`` is the last epoch).
TRAIN_PAIRS = 600
#: Seed of the training data.
DATA_SEED = 0
#: Seed of the held-out pairs of :func:`held_out_metrics` (another seed: other places, other nuisance).
HELD_OUT_SEED = 1000
#: Seed of training (weights, sampling, augmentation).
TRAIN_SEED = 2333
#: Adam steps (rounded up to whole epochs: 570 training pairs / batch 8 = 71 steps per epoch, 2 epochs).
ITERS = 100
BATCH_SIZE = 8
LR = 4e-3
WARMUP_ITERS = 10


def synth_config(pairs: int = TRAIN_PAIRS, seed: int = DATA_SEED) -> SynthConfig:
    """The synthetic dataset the detector is trained on (almost all pairs in the training split)."""
    return SynthConfig(pairs=pairs, size=SIZE, seed=seed, val_fraction=0.05, test_fraction=0.05)


def train_config(dataset: Path, project: Path, seed: int = TRAIN_SEED) -> TrainConfig:
    """The recipe: small random-init network, high learning rate, short warm-up, CPU, no validation."""
    return TrainConfig(
        dataset=str(dataset), backbone="resnet18", variant="image-only", pretrained=False,
        iters=ITERS, batch_size=BATCH_SIZE, crop_size=SIZE, lr=LR, warmup_iters=WARMUP_ITERS,
        augment=AugmentConfig(), val_split=None, workers=0, device="cpu", seed=seed,
        project=str(project), name="synthetic-detector", log_every=1000)


def train_synthetic_detector(root: Path, *, seed: int = TRAIN_SEED, data_seed: int = DATA_SEED) -> Path:
    """Generate the synthetic training data under ``root/data``, train under ``root/runs`` and return the
    path of the run's ``best.safetensors`` (an image-only mmchange checkpoint, window ``SIZE``)."""
    from mmchange_core.training.loop import train

    root = Path(root)
    dataset = root / "data"
    make_synthetic_dataset(dataset, synth_config(seed=data_seed))
    result = train(train_config(dataset, root / "runs", seed=seed))
    if result.best_checkpoint is None or not result.best_checkpoint.is_file():
        raise RuntimeError(f"training in {result.run_dir} wrote no best checkpoint")
    return result.best_checkpoint


def held_out_metrics(checkpoint: Path, root: Path, *, pairs: int = 40, seed: int = HELD_OUT_SEED) -> dict:
    """Metrics (precision, recall, f1, iou, ...) of ``checkpoint`` on ``pairs`` synthetic pairs it never saw,
    written under ``root`` and evaluated with :func:`mmchange_core.evaluation.evaluate.evaluate` (its test split
    holds 90% of them)."""
    from mmchange_core.evaluation.evaluate import evaluate
    from mmchange_core.inference.detector import ChangeDetector

    root = Path(root)
    make_synthetic_dataset(root, SynthConfig(pairs=pairs, size=SIZE, seed=seed, val_fraction=0.05,
                                             test_fraction=0.9))
    detector = ChangeDetector.from_checkpoint(checkpoint, device="cpu")
    return evaluate(detector, root, "test").metrics()


_trained: Path | None = None


def trained_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint of :func:`train_synthetic_detector`, trained on the first call of the session."""
    global _trained
    if _trained is None or not _trained.is_file():
        _trained = train_synthetic_detector(tmp_path_factory.mktemp("synthetic_detector"))
    return _trained
