"""Sharing a checkpoint on the Hugging Face Hub: stage the model folder, then upload it as one commit.

The folder holds ``model.safetensors`` (the checkpoint in the current format: older mmchange
checkpoints are rewritten, authors' ``.pth`` files converted), ``config.yaml`` (the training run's
resolved config, else the checkpoint's metadata) and ``README.md`` (the model card, see
:mod:`~mmchange_core.models.card`). Everything is checked and staged locally first; the upload is a
single Hub commit, so a failure publishes nothing. ``write_model_folder`` writes the same folder
without any network access (``mmchange push --dry-run DIR``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from mmchange_core.config import dump_config
from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.images import check_regular_file
from mmchange_core.models.card import INT8_FILES, EvalSummary, check_eval_matches, model_card, read_eval_summary
from mmchange_core.models.checkpoint import CheckpointMeta, load_checkpoint, read_checkpoint_meta, save_checkpoint
from mmchange_core.models.convert import convert_reference_checkpoint
from mmchange_core.io.hashing import sha256_file
from mmchange_core.models.int8_record import Int8Certificate, Int8RecordError, int8_files, read_int8_record, write_int8_record
from mmchange_core.models.hub import (
    WEIGHTS_FILE,
    HubError,
    hub_offline,
    import_hub,
    is_hub_spec,
    parse_hub_spec,
    resolve_checkpoint,
)

CONFIG_FILE = "config.yaml"
CARD_FILE = "README.md"
#: Every file of a model repository that mmchange writes, in upload order.
REPO_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, *INT8_FILES)
#: Checkpoint names a training run writes beside its config.yaml.
RUN_CHECKPOINTS = ("best", "last")
_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]*")


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_checkpoint` or :func:`write_model_folder` did."""

    repo_id: str
    files: list[str]
    folder: Path | None = None  # the folder written (dry run); None after an upload
    revision: str | None = None  # the branch pushed to (None: main)
    commit: str | None = None  # the Hub commit (None: dry run)
    url: str | None = None


@dataclass(frozen=True)
class _Plan:
    """The checked inputs of a push, before anything is written."""

    source: str | Path
    local: Path
    repo_id: str
    evaluation: EvalSummary | None
    license: str
    meta: CheckpointMeta | None  # None: an authors' checkpoint, known once converted


def _plan(checkpoint: str | PurePath, repo_id: str, evaluation: str | Path | None, license: str) -> _Plan:
    repo = parse_hub_spec(f"hf://{repo_id}")
    if repo.revision is not None:
        raise InputError(f"--repo {repo_id}: give the repository as OWNER/NAME and the branch with --branch")
    if not _LICENSE.fullmatch(license):
        raise InputError(f"license {license!r} is not a Hub licence identifier (for example mit, apache-2.0, "
                         f"cc-by-4.0 or other)")
    source = checkpoint if is_hub_spec(checkpoint) else Path(checkpoint)
    local = resolve_checkpoint(source)
    summary = read_eval_summary(evaluation) if evaluation is not None else None
    if local.suffix.lower() == ".safetensors":
        meta = read_checkpoint_meta(local)
    else:  # an authors' checkpoint, converted while staging
        check_regular_file(local, "checkpoint")
        meta = None
    if summary is not None and meta is not None:
        check_eval_matches(summary, meta, evaluation)
    return _Plan(source, local, repo.repo_id, summary, license, meta)


def find_run_config(local: Path, meta: CheckpointMeta, from_hub: bool = False) -> Path | None:
    """The ``config.yaml`` of the run that wrote the checkpoint at ``local``, if it is still there."""
    candidates = []
    run_dir = meta.training.get("run_dir")
    if isinstance(run_dir, str) and run_dir:
        candidates.append(Path(run_dir) / CONFIG_FILE)
    if from_hub or local.stem in RUN_CHECKPOINTS:  # a run folder, or a Hub snapshot being shared again
        candidates.append(local.parent / CONFIG_FILE)
    return next((path for path in candidates if path.is_file()), None)


def _stage(plan: _Plan, folder: Path) -> list[str]:
    """Write the repository files of ``plan`` into the existing, empty ``folder``."""
    weights = folder / WEIGHTS_FILE
    if plan.meta is None:  # an authors' .pth/.pt: the one conversion path
        convert_reference_checkpoint(plan.local, weights)
        meta = read_checkpoint_meta(weights)
        if plan.evaluation is not None:
            check_eval_matches(plan.evaluation, meta, "the evaluation file")
    else:  # rewritten in the current format (version-1 files are upgraded), weights checked on the way
        model, meta = load_checkpoint(plan.local)
        save_checkpoint(weights, model, meta)
    config = find_run_config(plan.local, meta, from_hub=is_hub_spec(plan.source))
    if config is not None:
        atomic_write_text(folder / CONFIG_FILE, config.read_text(encoding="utf-8"))
    else:
        atomic_write_text(folder / CONFIG_FILE, "# mmchange checkpoint metadata (the training run's config.yaml "
                                                "was not found)\n" + dump_config(meta))
    certificate = _stage_int8(plan.local, weights)
    atomic_write_text(folder / CARD_FILE, model_card(meta, plan.repo_id, evaluation=plan.evaluation,
                                                     license=plan.license, int8=certificate))
    return [name for name in REPO_FILES if (folder / name).is_file()]


def _stage_int8(local: Path, weights: Path) -> Int8Certificate | None:
    """Copy the checkpoint's certified int8 export beside the staged weights (``model.int8.onnx``), its record
    bound to them: the weights are the checkpoint's, rewritten. Skipped (None) when there is none or it does not
    belong to this very checkpoint."""
    onnx, record = int8_files(local)
    if not onnx.is_file():
        return None
    try:
        certificate = read_int8_record(onnx, sha256_file(local), record)
    except Int8RecordError:
        return None
    staged, _ = int8_files(weights)
    shutil.copyfile(onnx, staged)
    certificate = dataclasses.replace(certificate, checkpoint_sha256=sha256_file(weights))
    write_int8_record(staged, certificate)
    return certificate


def write_model_folder(checkpoint: str | PurePath, out_dir: str | Path, *, repo_id: str,
                       evaluation: str | Path | None = None, license: str = "mit") -> PushResult:
    """Write the folder that :func:`push_checkpoint` would upload to ``out_dir`` (new or empty), atomically."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"{out_dir} exists and is not an empty folder; choose a new folder for the model files")
    plan = _plan(checkpoint, repo_id, evaluation, license)
    out_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.absolute().parent))
    try:
        files = _stage(plan, stage)
        os.chmod(stage, 0o777 & ~_umask())
        if out_dir.is_dir():
            out_dir.rmdir()  # empty, checked above
        os.replace(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return PushResult(plan.repo_id, files, folder=out_dir)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _push_error(repo_id: str, exc: Exception) -> HubError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    if status == 401:
        what = "the Hub refused the token (HTTP 401); log in again with 'hf auth login' or set HF_TOKEN"
    elif status == 403:
        what = (f"the token may not write to {repo_id} (HTTP 403); use a token with write access to its owner, "
                f"or push to your own namespace")
    elif status is None:
        what = f"the Hub could not be reached ({reason}); check the network and try again"
    else:
        what = f"the Hub answered HTTP {status} ({reason})"
    return HubError(f"push to {repo_id} failed: {what}; nothing was committed")


def push_checkpoint(checkpoint: str | PurePath, repo_id: str, *, evaluation: str | Path | None = None,
                    private: bool = False, branch: str | None = None, message: str | None = None,
                    license: str = "mit") -> PushResult:
    """Publish ``checkpoint`` as the model repository ``repo_id`` (created when missing) in one commit.

    Uses huggingface_hub's token (``HF_TOKEN`` or ``hf auth login``); ``branch`` is created when
    missing. Raises a one-line :class:`HubError` when offline, not logged in or refused.
    """
    hub = import_hub("mmchange push")
    plan = _plan(checkpoint, repo_id, evaluation, license)
    if hub_offline(hub):
        raise HubError(f"push to {plan.repo_id}: HF_HUB_OFFLINE=1 forbids network access; unset it, or write "
                       f"the folder with --dry-run DIR and upload it later")
    if hub.get_token() is None:
        raise HubError(f"push to {plan.repo_id}: not logged in to the Hugging Face Hub; run 'hf auth login' or "
                       f"set HF_TOKEN to a token with write access (nothing was uploaded)")
    with tempfile.TemporaryDirectory(prefix="mmchange-push-") as stage:
        files = _stage(plan, Path(stage))
        api = hub.HfApi(library_name="mmchange")
        try:
            api.create_repo(plan.repo_id, private=True if private else None, exist_ok=True)
            if branch:
                api.create_branch(plan.repo_id, branch=branch, exist_ok=True)
            info: Any = api.upload_folder(repo_id=plan.repo_id, folder_path=stage, revision=branch,
                                          allow_patterns=list(REPO_FILES),
                                          commit_message=message or f"Upload mmchange model ({', '.join(files)})")
        except Exception as exc:  # noqa: BLE001 - every failure becomes one actionable line
            raise _push_error(plan.repo_id, exc) from exc
    url = getattr(info, "commit_url", None)
    return PushResult(plan.repo_id, files, revision=branch, commit=getattr(info, "oid", None),
                      url=None if url is None else str(url))
