"""``mmchange push``: share a checkpoint on the Hugging Face Hub with its config and a model card."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import out, print_json


def push(
    checkpoint: str = typer.Argument(..., metavar="CHECKPOINT",
                                     help="The checkpoint: an mmchange .safetensors file (an authors' .pth is "
                                          "converted), or hf://OWNER/NAME to share again."),
    repo: str = typer.Option(..., "--repo", help="The model repository, OWNER/NAME (created when missing)."),
    evaluation: Path | None = typer.Option(None, "--eval",
                                           help="metrics.json of an 'mmchange eval' run of this checkpoint: its "
                                                "metrics go into the model card."),
    private: bool = opt.flag("--private", "Create the repository as private."),
    branch: str | None = typer.Option(None, "--branch", "--revision",
                                      help="Branch to push to (created when missing; default main)."),
    message: str | None = typer.Option(None, "--message", "-m", help="Commit message."),
    license: str = typer.Option("mit", "--license", help="Licence identifier for the model card (Hub list, "
                                                         "e.g. mit, apache-2.0, cc-by-4.0, other)."),
    dry_run: Path | None = typer.Option(None, "--dry-run", "--out",
                                        help="Only write the folder that would be uploaded to this new folder; "
                                             "no network."),
    as_json: bool = opt.as_json(),
) -> None:
    """Upload model.safetensors, config.yaml and a model card (README.md) to the Hub in one commit.

    Log in first with 'hf auth login' (or set HF_TOKEN). Load the result anywhere with --checkpoint hf://OWNER/NAME.
    """
    from mmchange_core.config import to_dict
    from mmchange_core.models.push import push_checkpoint, write_model_folder

    source = opt.checkpoint_spec(checkpoint)
    if dry_run is not None:
        result = write_model_folder(source, dry_run, repo_id=repo, evaluation=evaluation, license=license)
    else:
        result = push_checkpoint(source, repo, evaluation=evaluation, private=private, branch=branch,
                                 message=message, license=license)
    if as_json:
        print_json(to_dict(result))
        return
    spec = f"hf://{result.repo_id}" + (f"@{result.revision}" if result.revision else "")
    if result.folder is not None:
        out.print(f"wrote {result.folder}: {', '.join(result.files)} (nothing uploaded); "
                  f"push with: mmchange push {checkpoint} --repo {result.repo_id}", soft_wrap=True)
        return
    out.print(f"pushed {', '.join(result.files)} to {result.repo_id}"
              + (f" (branch {result.revision})" if result.revision else "")
              + (f", commit {result.commit}" if result.commit else ""), soft_wrap=True)
    if result.url:
        out.print(result.url, soft_wrap=True)
    out.print(f"load it with: --checkpoint {spec}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("push")(push)
