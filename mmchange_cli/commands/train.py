"""``mmchange train``: train a network with the paper's protocol (single process or torchrun DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import err, out, print_json, report_size
from mmchange_cli.observers import train_observer


def train(
    dataset: str | None = opt.dataset(),
    change_value: int | None = opt.change_value(),
    classes: str | None = typer.Option(None, "--classes", metavar="CLASSES.yaml",
                                       help="Class file (value, name and colour of each class; 0 = no change): "
                                            "train K-class change heads on labels holding those values."),
    backbone: str | None = typer.Option(None, "--backbone", help="resnet18, resnet34 or resnet50 (default)."),
    variant: str | None = typer.Option(None, "--variant", "-v",
                                       help="full (default), image-only, no-modules, no-ifr, no-tde or no-itff."),
    iters: int | None = typer.Option(None, "--iters", help="Training iterations, rounded up to whole epochs."),
    batch_size: int | None = opt.batch_size("Batch size over all processes."),
    crop_size: int | None = typer.Option(None, "--crop-size", help="Crop size; larger images are tiled."),
    no_pretrained: bool = opt.flag("--no-pretrained", "Start the trunk from random weights."),
    weights: str | None = typer.Option(None, "--weights", metavar="PATH|hf://OWNER/NAME",
                                       help="Fine-tune: start from the weights of this checkpoint (.safetensors, "
                                            "hf://OWNER/NAME, optionally @REVISION, or an authors' .pth) instead "
                                            "of the ImageNet trunk; they must fit --backbone, --variant and the "
                                            "captions."),
    bands: str | None = opt.bands(),
    freeze: str | None = typer.Option(None, "--freeze", help="Keep weights fixed while training: none (default), "
                                                             "trunk (the ResNet) or encoder (the whole image "
                                                             "encoder)."),
    precision: str | None = opt.precision("fp32 (default, the paper's), auto, bf16 or fp16 (autocast)."),
    compile: bool = opt.compile(),
    no_int8: bool = opt.flag("--no-int8", "Skip the int8 export made at the end (best.int8.onnx, calibrated on the "
                                          "training split, certified on the validation split; used by predict on "
                                          "CPUs)."),
    device: str | None = opt.device(),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    workers: int | None = opt.workers(),
    captions: str | None = opt.captions(),
    accept_stale_captions: bool = opt.accept_stale_captions(),
    name: str | None = opt.name(),
    project: str | None = opt.project(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    resume: str | None = typer.Option(None, "--resume", help="Continue a run (its folder, or its name in "
                                                             "<project>/train)."),
    stop_after: int | None = typer.Option(None, "--stop-after",
                                          help="Stop after this many iterations in total, keeping a resumable state."),
    as_json: bool = opt.as_json(),
) -> None:
    """Train MMChange on a change-detection dataset; prints the run folder and the best checkpoint."""
    from mmchange_core.config import ConfigError
    from mmchange_core.distributed import launch_position
    from mmchange_core.training.config import TrainConfig, validate_config
    from mmchange_core.training.interrupt import signal_exit_code
    from mmchange_core.training.loop import find_run, resume_config
    from mmchange_core.training.loop import train as run_training

    flags = {"dataset": dataset, "backbone": backbone, "variant": variant, "iters": iters, "batch_size": batch_size,
             "crop_size": crop_size, "pretrained": False if no_pretrained else None, "weights": weights,
             "freeze": freeze, "precision": precision, "imagery.bands": bands,
             "compile": compile or None, "int8": False if no_int8 else None, "device": device, "seed": seed, "workers": workers, "captions": captions,
             "accept_stale_captions": accept_stale_captions or None,
             "name": name, "project": project, "change_value": change_value, "classes": classes}
    resume_dir = None
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume continues a run with its own config; leave out --config")
        resume_dir = find_run(resume, project or "runs")
        cfg = resume_config(resume_dir, [*overrides, *((k, v) for k, v in flags.items() if v is not None)])
    else:
        cfg = opt.resolve(TrainConfig, config, overrides, **flags)
    validate_config(cfg)
    main_process = launch_position()[0] == 0
    observer = train_observer(show=main_process)
    try:
        result = run_training(cfg, resume_dir=resume_dir, stop_after=stop_after, observer=observer)
    finally:
        observer.close()
    if main_process:
        _print_result(result, as_json)
    if result.stopped_by in ("SIGINT", "SIGTERM"):  # as a shell reports a process the signal ended: 130, 143
        raise typer.Exit(signal_exit_code(result.stopped_by))


def _print_result(result: Any, as_json: bool) -> None:
    """The run folder, best checkpoint, curves and logs (or the whole result as JSON) on stdout."""
    if as_json:
        print_json(result.to_dict())
        return
    files = result.files()
    if result.best_f1 is not None:
        err.print(f"best epoch {result.best_epoch} (val F1 {result.best_f1:.4f})")
    out.print(f"run folder: {result.run_dir}")
    out.print(f"best checkpoint: {result.best_checkpoint if result.best_checkpoint else 'none yet'}")
    if result.int8 is not None:
        out.print(f"int8 export: {result.int8}")
    if files["curves"].exists():
        out.print(f"curves: {files['curves']} (values in {files['metrics_csv'].name})")
    if files["tensorboard"].exists():
        out.print(f"tensorboard: tensorboard --logdir {files['tensorboard']}")
    if result.report is not None and result.report.is_file():
        out.print(f"report: {report_size(result.report)}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
