"""``mmchange demo``: the whole workflow on built-in synthetic data, with nothing to download.

1. a synthetic bitemporal dataset whose land-cover mix follows the labelled change;
2. ``basic`` captions (pixel statistics) embedded by the offline ``hashing`` text encoder;
3. a short training of a small model (resnet18 trunk, no pretrained weights, 64 px crops);
4. evaluation on the held-out test split;
5. prediction with an overlay on a held-out test pair;
6. the robustness table (clean, +noise, +light, +noise+light).

The numbers are real measurements of this short run, not the paper's: the model is small, trained
for a few minutes on CPU-sized synthetic data, and the text comes from the offline fallbacks.

The folder stays small: once training is done, the files that only serve to continue it, the
resumable state (``state.pt``, mostly optimizer moments, about three times the model) and
``last.safetensors``, are deleted unless ``keep_state`` is set; ``best.safetensors`` is what the
later steps use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
from mmchange_core.evaluation.run import EvalOptions, EvalReport, run_evaluation
from mmchange_core.inference.predict import PairResult, PredictConfig, predict_pair
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.evaluation.robustness import RobustnessConfig, RobustnessReport, run_robustness
from mmchange_core.training.config import TrainConfig
from mmchange_core.training.loop import LAST_FILE, STATE_FILE, TrainObserver, TrainResult, train
from mmchange_core.config import SIZE, choice, group, positive, setting, validate
from mmchange_core.errors import MMChangeError
from mmchange_core.io.outputs import OutputPlan
from mmchange_core.models.config import BACKBONES
from mmchange_core.runs import next_run_dir


@dataclass
class DemoConfig:
    """Sizes of the demo; ``quick`` shrinks everything for CI and smoke tests."""

    output: str | None = setting(None, renamed_from=["out"])  # default: a fresh runs/demo/<exp>
    quick: bool = False
    pairs: int | None = setting(None, positive())  # default 60 (quick: 24)
    size: int = setting(128, SIZE)
    crop_size: int = setting(64, SIZE)
    iters: int | None = setting(None, positive())  # default 200 (quick: 72)
    batch_size: int = setting(8, positive())  # training batch size
    lr: float = setting(1e-3, positive())  # twice the paper's rate: this schedule is 200x shorter
    backbone: str = setting("resnet18", choice(*BACKBONES))
    seed: int = 0
    detector: DetectorSettings = group(DetectorSettings, workers=0)
    """Device, precision, compile and workers of every step (training too); windows of eval, predict, robustness."""
    keep_state: bool = False  # keep state.pt (optimizer state, ~3x the model) and last.safetensors to resume

    def effective(self) -> DemoConfig:
        """The sizes actually used: explicit values, else the defaults of the chosen mode."""
        pairs = self.pairs if self.pairs is not None else (24 if self.quick else 60)
        iters = self.iters if self.iters is not None else (72 if self.quick else 200)
        return replace(self, pairs=pairs, iters=iters)


@dataclass
class DemoReport:
    """Everything the demo produced, with the time each step took."""

    run_dir: Path
    dataset: Path
    train: TrainResult
    evaluation: EvalReport
    prediction: PairResult
    robustness: RobustnessReport
    seconds: dict[str, float] = field(default_factory=dict)
    config: DemoConfig | None = None  # the sizes actually used (DemoConfig.effective)

    @property
    def checkpoint(self) -> Path:
        """The trained model (best validation F1)."""
        assert self.train.best_checkpoint is not None
        return self.train.best_checkpoint

    @property
    def report_html(self) -> Path | None:
        """``<run folder>/report.html`` when it was written."""
        path = self.run_dir / "report.html"
        return path if path.is_file() else None

    def folder_bytes(self) -> int:
        """The size of the run folder now, in bytes (every regular file under it)."""
        return folder_bytes(self.run_dir)

    def to_dict(self) -> dict[str, Any]:
        """The demo's summary as ``mmchange demo --json`` prints it."""
        from mmchange_core.metrics import METRIC_NAMES
        from mmchange_core.reporting.report import report_fields

        metrics = self.evaluation.metrics()
        return {
            "run_dir": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "dataset": str(self.dataset),
            "eval": {k: metrics[k] for k in METRIC_NAMES},
            "eval_dir": str(self.evaluation.run_dir),
            "prediction": self.prediction.outputs,
            "robustness": [{k: v for k, v in row.items() if k not in ("model", "severity")}
                           for row in self.robustness.to_dict()],
            "robustness_dir": str(self.robustness.run_dir),
            **report_fields(self.report_html),
            "size_mb": round(self.folder_bytes() / 1e6, 2),
            "state_kept": bool(self.config.keep_state) if self.config is not None else False,
            "seconds": self.seconds,
        }


def folder_bytes(path: Path) -> int:
    """Total size of the regular files under ``path`` (symlinks not followed)."""
    return sum(p.lstat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


class DemoObserver(TrainObserver):
    """Step notifications on top of the training events; ``on_progress`` also gets every step's progress."""

    def on_step(self, index: int, total: int, title: str) -> None:
        """A demo step starts."""


def run_demo(config: DemoConfig, observer: DemoObserver | None = None,
             warn: Callable[[str], None] | None = None) -> DemoReport:
    """Run the six demo steps into one run folder and return what they produced."""
    validate(config)
    cfg = config.effective()
    obs = observer or DemoObserver()
    if cfg.output:
        OutputPlan().check_folder(Path(cfg.output), "--output folder")
    run_dir = Path(cfg.output) if cfg.output else next_run_dir("runs", "demo")
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    data_dir = run_dir / "data"
    steps = 6

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        return result

    obs.on_step(1, steps, f"synthetic dataset: {cfg.pairs} pairs of {cfg.size} px with text signal -> {data_dir}")
    timed("synth", lambda: make_synthetic_dataset(
        data_dir, SynthConfig(pairs=cfg.pairs, size=cfg.size, seed=cfg.seed, text_signal=True),
        progress=obs.on_progress))

    obs.on_step(2, steps, "captions: basic (pixel statistics) + hashing text encoder, both offline")
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    captions = timed("caption", lambda: caption_dataset(
        data_dir, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing"),
        device=cfg.detector.device, warn=warn, progress=obs.on_progress))
    if captions.failed:
        raise MMChangeError(f"the demo could not caption {len(captions.failed)} synthetic image(s)")

    obs.on_step(3, steps, f"training {cfg.backbone}/full for {cfg.iters} iterations on {cfg.crop_size} px crops")
    train_config = TrainConfig(dataset=str(data_dir), backbone=cfg.backbone, variant="full", pretrained=False,
                               iters=cfg.iters, batch_size=cfg.batch_size, crop_size=cfg.crop_size, lr=cfg.lr,
                               warmup_iters=min(200, max(1, cfg.iters // 5)), log_every=max(1, cfg.iters // 50),
                               workers=cfg.detector.workers, device=cfg.detector.device,
                               precision=cfg.detector.precision, compile=cfg.detector.compile, seed=cfg.seed,
                               name="model", project=str(run_dir),
                               int8=False)  # the demo stays a few minutes: no end-of-run int8 export

    trained = timed("train", lambda: train(train_config, observer=obs))
    if trained.best_checkpoint is None:
        raise MMChangeError("the demo training wrote no checkpoint")
    if not cfg.keep_state:
        for name in (STATE_FILE, LAST_FILE):
            (trained.run_dir / name).unlink(missing_ok=True)
        trained = replace(trained, last_checkpoint=None)

    obs.on_step(4, steps, "evaluation on the held-out test split")
    evaluation = timed("eval", lambda: run_evaluation(
        EvalOptions(checkpoint=str(trained.best_checkpoint), dataset=str(data_dir), split="test", save_vis=True,
                    detector=cfg.detector, name="test", project=str(run_dir)),
        progress=obs.on_progress))

    pair = detect_layout(data_dir).pairs("test")[0]
    predict_dir = run_dir / "predict"
    obs.on_step(5, steps, f"predict with overlay on held-out pair {pair.name}")
    prediction = timed("predict", lambda: predict_pair(
        trained.best_checkpoint, pair.image_a, pair.image_b, predict_dir / f"{pair.image_a.stem}_mask.png",
        overlay=predict_dir / f"{pair.image_a.stem}_overlay.png", prob=predict_dir / f"{pair.image_a.stem}_prob.png",
        config=PredictConfig(detector=replace(cfg.detector, overlap=cfg.crop_size // 4), prob_colorbar=True),
        warn=warn))

    obs.on_step(6, steps, "robustness: clean, +noise, +light, +noise+light on the test split")
    robustness = timed("robustness", lambda: run_robustness(
        RobustnessConfig(checkpoints=[str(trained.best_checkpoint)], dataset=str(data_dir), split="test",
                         noise=True, light=True, detector=cfg.detector, name="table", project=str(run_dir)),
        progress=obs.on_progress))
    seconds["total"] = round(sum(seconds.values()), 2)
    result = DemoReport(run_dir, data_dir, trained, evaluation, prediction, robustness, seconds, cfg)
    write_demo_report(result, warn)
    return result


def write_demo_report(demo: DemoReport, warn: Callable[[str], None] | None = None) -> Path | None:
    """``<run>/report.html`` for a newcomer: what was trained, how well it did (curves, test metrics), where it
    fails (the worst test pairs), a prediction and the robustness table; a failure only warns."""
    import json

    from mmchange_core.config import to_dict
    from mmchange_core.device import resolve_device
    from mmchange_core.evaluation.report import eval_sections, robustness_report
    from mmchange_core.evaluation.robustness import row_dict, severity_series
    from mmchange_core.inference.report import pair_section
    from mmchange_core.reporting.report import REPORT_FILE, Report, Section, Text, run_header, try_write_report
    from mmchange_core.training.report import train_sections

    cfg = demo.config or DemoConfig()

    def build() -> Report:
        trained, evaluation = demo.train, demo.evaluation
        summary = json.loads((evaluation.run_dir / "metrics.json").read_text(encoding="utf-8"))
        intro = Text(f"A small MMChange ({cfg.backbone} trunk, image + text) was trained from scratch for "
                     f"{trained.iterations} iterations on {cfg.pairs} synthetic pairs of {cfg.size} px "
                     f"({cfg.crop_size} px crops), with captions from the offline 'basic' captioner. The numbers "
                     f"below are real measurements of this short run, not the paper's. Each step's folder "
                     f"(model/, test/, table/) has its own report.html.")
        sections = [Section("What was run", [intro])]
        sections += train_sections(trained.run_dir, trained.history, trained.best_epoch,
                                   iterations=trained.iterations, total_iters=trained.total_iters,
                                   completed=trained.completed, stopped_by=trained.stopped_by,
                                   title="Training: how it learned")
        sections += eval_sections(summary, evaluation.result, title="Test split")
        prediction, _row = pair_section(demo.prediction, title=f"Prediction on held-out pair {demo.prediction.name}")
        sections.append(prediction)
        rows = [row_dict(r) for r in demo.robustness.rows]
        sections += robustness_report(header, rows, severity_series(demo.robustness.rows), None,
                                      demo.robustness.plot_path).sections
        return Report("mmchange demo: what was trained, how well it did, where it fails", header, sections)

    header = run_header("demo", checkpoint=demo.train.best_checkpoint, dataset=demo.dataset, config=to_dict(cfg),
                        device=str(resolve_device(cfg.detector.device)), seconds=demo.seconds.get("total"))
    return try_write_report(demo.run_dir / REPORT_FILE, build, warn=warn)
