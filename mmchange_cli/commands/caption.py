"""``mmchange caption``: caption every image of a dataset into its caption store (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import ProgressColumn, Task
from rich.text import Text

from mmchange_cli.console import err, out, print_json, progress, table, warn


class _RateColumn(ProgressColumn):
    """Images per second of the current phase."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} img/s" if speed else "- img/s", style="progress.data.speed")


def _splits(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [s for s in (part.strip() for part in value.split(",")) if s]


def caption(
    dataset_root: Path = typer.Argument(..., help="Dataset folder (split/A,B,label; A,B,label + list/*.txt; "
                                                  "SYSU time1/time2; or flat A/B)."),
    captioner: str | None = typer.Option(None, "--captioner", help="vlm (default), clip-tags, or basic "
                                         "(offline pixel-statistics fallback, not a language model)."),
    model: str | None = typer.Option(None, "--model", help="Captioner model: hub id or local folder "
                                     "(vlm, default bczhou/tiny-llava-v1-hf), open_clip name or folder (clip-tags)."),
    revision: str | None = typer.Option(None, "--revision", help="Hub revision (vlm) or open_clip pretrained tag "
                                        "or checkpoint file (clip-tags, default openai)."),
    prompt: str | None = typer.Option(None, "--prompt", help="VLM prompt: free text or a named prompt "
                                      "(components = the paper's, these, geographical-type, prominent-features, "
                                      "artificial-features; or prompt1..prompt4)."),
    splits: str | None = typer.Option(None, "--splits", help="Comma-separated splits (default: every split found)."),
    store: Path | None = typer.Option(None, "--store", help="Caption store file or folder (default: "
                                      "DATASET_ROOT/mmchange_captions.jsonl); use it for read-only datasets."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="clip (default, open_clip ViT-B-32 "
                                            "OpenAI) or hashing (offline fallback)."),
    text_model: str | None = typer.Option(None, "--text-model", help="open_clip model name or local folder "
                                          "for the clip encoder (default ViT-B-32)."),
    text_pretrained: str | None = typer.Option(None, "--text-pretrained", help="open_clip pretrained tag or "
                                               "checkpoint file for the clip encoder (default openai)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Caption every image again, ignoring the store."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per generation batch (default 16)."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="VLM caption length limit (default 64)."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed (default 0)."),
    device: str | None = typer.Option(None, "--device", help="auto (default), cpu, cuda or cuda:N."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                           help="Allow a hub model's own Python code (off by default)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of CaptionRunConfig values."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config value, e.g. "
                                        "--set captioner.temperature=0.5 (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Caption both dates of every image pair, embed the captions, and store both (resumable)."""
    from dataclasses import replace

    from mmchange_core.config import load_config
    from mmchange_core.distributed import launch_position
    from mmchange_core.text import CaptionRunConfig, caption_dataset

    cfg = load_config(CaptionRunConfig, config, overrides)
    cap_updates: dict[str, Any] = {k: v for k, v in {
        "name": captioner, "model": model, "revision": revision, "prompt": prompt, "batch_size": batch_size,
        "max_new_tokens": max_new_tokens, "seed": seed}.items() if v is not None}
    if trust_remote_code:
        cap_updates["trust_remote_code"] = True
    enc_updates = {k: v for k, v in {"name": text_encoder, "model": text_model,
                                     "pretrained": text_pretrained}.items() if v is not None}
    cfg = replace(cfg, captioner=replace(cfg.captioner, **cap_updates), encoder=replace(cfg.encoder, **enc_updates),
                  splits=_splits(splits) or cfg.splits, store=str(store) if store is not None else cfg.store,
                  overwrite=overwrite or cfg.overwrite, device=device or cfg.device)

    rank, world_size = launch_position()
    main_rank = rank == 0
    bar = progress(_RateColumn())
    tasks: dict[str, Any] = {}

    def on_progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            label = f"{phase} (rank 0 of {world_size})" if world_size > 1 else phase
            tasks[phase] = bar.add_task(label, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    with bar:
        report = caption_dataset(dataset_root, captioner=cfg.captioner, encoder=cfg.encoder, splits=cfg.splits,
                                 store=cfg.store, overwrite=cfg.overwrite, device=cfg.device,
                                 progress=on_progress if main_rank else None, warn=warn)
    if not main_rank:
        return
    if as_json:
        print_json(report.to_dict())
    else:
        cap = report.captioner
        title = (f"captions of {report.root} ({report.layout}; {', '.join(report.splits)}) by {cap['name']} "
                 f"{cap['model']} -> {report.store}")
        rows = [("images", report.images), ("captioned", report.captioned),
                ("reused (identical image content)", report.reused),
                ("skipped (already captioned)", report.skipped), ("failed", len(report.failed)),
                ("embeddings computed", report.encoded), ("mean length (words)", f"{report.mean_words:.1f}"),
                ("distinct captions", report.distinct_captions),
                ("images/s (captioning)", f"{report.images_per_second:.2f}"),
                ("time (s)", f"{report.seconds:.1f}")]
        out.print(table(title, ["", "value"], rows))
        if report.failed:
            out.print(table("unreadable images (skipped)", ["image", "error"], report.failed))
    if report.failed:
        err.print(f"[red]{len(report.failed)} image(s) could not be read[/red]; fix or remove them and rerun "
                  f"(captioned images are kept)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("caption")(caption)
