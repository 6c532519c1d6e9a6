"""Checkpoints on the Hugging Face Hub: ``hf://OWNER/NAME[@REVISION]`` -> a local ``model.safetensors``.

:func:`resolve_checkpoint` is the one place that turns a checkpoint spec into a file: plain paths pass
through, Hub specs are downloaded through huggingface_hub's own cache (``HF_HUB_CACHE``/``HF_HOME``,
``HF_HUB_OFFLINE``, the token from ``HF_TOKEN`` or ``hf auth login``), so a cached model loads
without the network. huggingface_hub is the optional extra ``hub``, imported only when a Hub spec
is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import ModuleType

from mmchange_core.environment import __version__
from mmchange_core.errors import InputError, MMChangeError, install_hint, require_extra

#: How a checkpoint on the Hub is written: ``hf://OWNER/NAME`` or ``hf://OWNER/NAME@REVISION``.
HUB_SCHEME = "hf://"
#: The file of a model repository that holds the mmchange checkpoint.
WEIGHTS_FILE = "model.safetensors"
HUB_EXTRA = install_hint("hub")
_SPEC_SYNTAX = "hf://OWNER/NAME or hf://OWNER/NAME@REVISION (a branch, tag or commit)"
# ``Path("hf://a/b")`` collapses the double slash to ``hf:/a/b``; specs that went through a Path still count
_HUB_PREFIX = re.compile(r"^hf:/")


class HubError(MMChangeError):
    """The Hugging Face Hub cannot provide or accept a model (not cached offline, not found, not logged in)."""


@dataclass(frozen=True)
class HubSpec:
    """A model repository on the Hub and the revision to use (None: the default branch, ``main``)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{HUB_SCHEME}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")

    @property
    def revision_text(self) -> str:
        """The revision for messages: the given one, else ``main``."""
        return self.revision or "main"


def is_hub_spec(spec: str | PurePath | None) -> bool:
    """Whether ``spec`` names a checkpoint on the Hub (``hf://...``), not a local file."""
    return spec is not None and bool(_HUB_PREFIX.match(str(spec)))


def import_hub(what: str = "hf:// checkpoints") -> ModuleType:
    """The ``huggingface_hub`` module, or a one-line error naming the extra that provides it."""
    return require_extra("huggingface_hub", what, "hub")


def parse_hub_spec(spec: str | PurePath) -> HubSpec:
    """``hf://OWNER/NAME[@REVISION]`` as a :class:`HubSpec`; a one-line InputError for anything else."""
    text = str(spec)
    if not is_hub_spec(text):
        raise InputError(f"{text!r} is not a Hub checkpoint; write {_SPEC_SYNTAX}")
    body = _HUB_PREFIX.sub("", text).lstrip("/")
    repo_id, at, revision = body.partition("@")
    if at and not revision:
        raise InputError(f"{text}: nothing after '@'; write {_SPEC_SYNTAX}")
    parts = repo_id.split("/")
    if len(parts) > 2:
        raise InputError(f"{text}: expected {_SPEC_SYNTAX}; mmchange loads the repository's {WEIGHTS_FILE}, "
                         f"so no file path goes after the name")
    if len(parts) != 2 or not all(parts):
        raise InputError(f"{text}: expected {_SPEC_SYNTAX}, got {repo_id!r} (the owner is a user or "
                         f"organisation name)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", parts[0]) or \
            not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", parts[1]) or ".." in repo_id or \
            repo_id.endswith((".git", ".")) or len(repo_id) > 96:
        raise InputError(f"{text}: {repo_id!r} is not a valid repository name (letters, digits, '-', '_', '.'; "
                         f"at most 96 characters); write {_SPEC_SYNTAX}")
    return HubSpec(repo_id, revision or None)


def hub_offline(hub: ModuleType) -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1``)."""
    constants = hub.constants
    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else constants.HF_HUB_OFFLINE)


def _download_error(hub: ModuleType, spec: HubSpec, exc: Exception) -> HubError:
    """The one-line message for a failed download of ``spec``'s weights."""
    from huggingface_hub import utils

    where = f"{spec} ({spec.repo_id} at revision {spec.revision_text})"
    login = "log in with 'hf auth login' or set HF_TOKEN"
    if isinstance(exc, utils.LocalEntryNotFoundError):
        cache = hub.constants.HF_HUB_CACHE
        revision = f" --revision {spec.revision}" if spec.revision else ""
        fetch = f"'hf download {spec.repo_id} {WEIGHTS_FILE}{revision}'"
        if hub_offline(hub):
            return HubError(f"{where} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 forbids "
                            f"downloading it; set HF_HUB_OFFLINE=0 and connect once, or run {fetch} on a machine "
                            f"with internet access and copy its cache to {cache}")
        return HubError(f"{where} is not in the Hugging Face cache ({cache}) and the Hub could not be reached; "
                        f"connect to the internet once, or run {fetch} elsewhere and copy its cache to {cache}")
    if isinstance(exc, utils.GatedRepoError):
        return HubError(f"{where} is gated: accept its conditions on huggingface.co, then {login}")
    if isinstance(exc, utils.RepositoryNotFoundError):
        return HubError(f"{where}: repository {spec.repo_id} not found on the Hub; check the name, or, if it is "
                        f"private, {login}")
    if isinstance(exc, utils.RevisionNotFoundError):
        return HubError(f"{where}: revision {spec.revision_text!r} not found in {spec.repo_id}; use a branch, "
                        f"tag or commit that exists (default: main)")
    if isinstance(exc, utils.EntryNotFoundError):
        return HubError(f"{where} has no {WEIGHTS_FILE}, so it is not an mmchange model repository; publish one "
                        f"with 'mmchange push CHECKPOINT --repo {spec.repo_id}'")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return HubError(f"{where}: the Hub refused access (HTTP {status}); {login} with a token that can read it")
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    return HubError(f"{where} could not be downloaded ({reason}); check the network and try again")


def resolve_checkpoint(spec: str | PurePath) -> Path:
    """The local file of checkpoint ``spec``: a path as it is; ``hf://OWNER/NAME[@REV]`` from the Hub cache.

    Hub checkpoints are the repository's ``model.safetensors``, downloaded once into huggingface_hub's
    cache and read from it afterwards (also offline, with ``HF_HUB_OFFLINE=1``).
    """
    if not is_hub_spec(spec):
        return Path(spec)
    hub_spec = parse_hub_spec(spec)
    hub = import_hub()
    try:
        path = hub.hf_hub_download(hub_spec.repo_id, WEIGHTS_FILE, revision=hub_spec.revision,
                                   library_name="mmchange", library_version=__version__)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one actionable line
        if isinstance(exc, ValueError) and type(exc).__name__ == "HFValidationError":
            raise InputError(f"{hub_spec}: {' '.join(str(exc).split())}; write {_SPEC_SYNTAX}") from exc
        raise _download_error(hub, hub_spec, exc) from exc
    return Path(path)
