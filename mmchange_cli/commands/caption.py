"""``mmchange caption``: caption every image of a dataset into its caption store (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, err, out, print_json, table, warn


def caption(
    dataset: Path | None = typer.Option(None, "--dataset", "-d", help="Dataset folder (split/A,B,label; "
                                        "A,B,label + list/*.txt; SYSU time1/time2; or flat A/B), "
                                        "or a .csv/.json list of pairs."),
    dataset_root: Path | None = typer.Argument(None, metavar="[DATASET]",
                                               help="Dataset folder or pair list (the same as --dataset)."),
    # duplicates (deliberate): typer option declarations, alike in shape only
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
    captions: Path | None = opt.captions("Caption store file or folder (default: DATASET/mmchange_captions.jsonl); "
                                         "use it for read-only datasets."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="clip (default, open_clip ViT-B-32 "
                                            "OpenAI) or hashing (offline fallback)."),
    text_model: str | None = typer.Option(None, "--text-model", help="open_clip model name or local folder "
                                          "for the clip encoder (default ViT-B-32)."),
    text_pretrained: str | None = typer.Option(None, "--text-pretrained", help="open_clip pretrained tag or "
                                               "checkpoint file for the clip encoder (default openai)."),
    overwrite: bool = opt.flag("--overwrite", "Caption every image again, ignoring the store."),
    batch_size: int | None = opt.batch_size("Images per generation batch."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="VLM caption length limit."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed."),
    device: str | None = opt.device(),
    bands: str | None = opt.bands(),
    trust_remote_code: bool = opt.flag("--trust-remote-code", "Allow a hub model's own Python code "
                                                              "(off by default)."),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
) -> None:
    """Caption both dates of every image pair, embed the captions, and store both (resumable)."""
    from mmchange_core.distributed import launch_position
    from mmchange_core.errors import InputError
    from mmchange_core.text import CaptionRunConfig, caption_dataset

    if dataset_root is not None and dataset is not None and dataset_root != dataset:
        raise InputError(f"two datasets given ({dataset_root} and --dataset {dataset}); give one of them")
    dataset = dataset or dataset_root
    if dataset is None:
        raise InputError("no dataset given; pass the dataset folder: mmchange caption FOLDER")
    cfg = opt.resolve(CaptionRunConfig, config, overrides, **{
        "captioner.name": captioner, "captioner.model": model, "captioner.revision": revision,
        "captioner.prompt": prompt, "captioner.batch_size": batch_size, "captioner.max_new_tokens": max_new_tokens,
        "captioner.seed": seed, "captioner.trust_remote_code": trust_remote_code or None,
        "encoder.name": text_encoder, "encoder.model": text_model, "encoder.pretrained": text_pretrained,
        "splits": splits, "captions": captions, "overwrite": overwrite or None, "device": device,
        "imagery.bands": bands})

    rank, world_size = launch_position()
    main_rank = rank == 0
    with ProgressDisplay() as display:
        report = caption_dataset(dataset, captioner=cfg.captioner, encoder=cfg.encoder, splits=cfg.splits,
                                 store=cfg.captions, overwrite=cfg.overwrite, device=cfg.device,
                                 progress=display if main_rank else None, warn=warn, imagery=cfg.imagery)
    if world_size > 1 and main_rank:
        err.print(f"progress shown for rank 0 of {world_size}")
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
