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


#: One part of a repository id (owner or name), as the Hub allows it: letters, digits, '-', '_', '.',
#: not starting or ending with '-' or '.', at most 96 characters ('..' and '--' are refused separately).
_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
_REPO_RULE = ("letters, digits, '-', '_' and '.', at most 96 characters each for owner and name, not starting or "
              "ending with '-' or '.', no '..' or '--'")
_REVISION_RULE = ("a git branch, tag or commit hash, as git check-ref-format allows it: no '..', '//' or '@{', no "
                  "spaces, control characters, \\ ~ ^ : ? * or [, no part starting with '.' or ending in '.lock', "
                  "not starting or ending with '/', not ending with '.'")
# what git check-ref-format refuses anywhere in a ref: control characters, space, DEL, ~ ^ : ? * [ and backslash
_REVISION_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def revision_problem(revision: str) -> str | None:
    """Why ``revision`` is not a git branch, tag or commit name (``git check-ref-format`` rules), or None.

    A revision is never a path: ``..``, a leading ``/``, a backslash and parts starting with ``.`` are
    refused, so it cannot lead outside the repository's refs in the Hub cache.
    """
    if not revision:
        return "it is empty"
    if (found := _REVISION_FORBIDDEN.search(revision)) is not None:
        return f"it contains {found.group()!r}"
    if ".." in revision:
        return "it contains '..'"
    if "@{" in revision:
        return "it contains '@{'"
    if revision == "@":
        return "it is '@'"
    if revision.startswith("/") or revision.endswith("/") or "//" in revision:
        return "it starts or ends with '/' or contains '//'"
    if revision.endswith("."):
        return "it ends with '.'"
    for part in revision.split("/"):
        if part.startswith("."):
            return f"its part {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"its part {part!r} ends with '.lock'"
    return None


def repo_id_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` (``OWNER/NAME``) is not a repository id the Hub allows, or None."""
    parts = repo_id.split("/")
    if len(parts) != 2:
        return "it is not OWNER/NAME"
    for what, part in zip(("owner", "name"), parts):
        if not _REPO_PART.fullmatch(part):
            return f"the {what} {part!r} breaks these rules"
    for pair in ("..", "--"):
        if pair in repo_id:
            return f"it contains {pair!r}"
    if repo_id.endswith(".git"):
        return "it ends with '.git'"
    return None


def _shown(text: object) -> str:
    """``text`` for a one-line message: as it is when printable, else its repr (no control characters)."""
    text = str(text)
    return text if text.isprintable() else repr(text)


def check_revision(revision: str, spec: object) -> str:
    """``revision`` when it is a branch, tag or commit name; else a one-line InputError naming ``spec``."""
    problem = revision_problem(revision)
    if problem is not None:
        raise InputError(f"{_shown(spec)}: the revision {revision!r} is not a branch, tag or commit ({problem}); "
                         f"give {_REVISION_RULE}")
    return revision


def parse_hub_spec(spec: str | PurePath) -> HubSpec:
    """``hf://OWNER/NAME[@REVISION]`` as a :class:`HubSpec`; a one-line InputError for anything else.

    The owner and name are checked as the Hub allows them and the revision as git allows a branch,
    tag or commit name (never a path), before anything is downloaded or read from the cache.
    """
    body = str(spec)
    if not is_hub_spec(body):
        raise InputError(f"{body!r} is not a Hub checkpoint; write {_SPEC_SYNTAX}")
    text = _shown(body)  # the spec as messages name it
    body = _HUB_PREFIX.sub("", body).lstrip("/")
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
    problem = repo_id_problem(repo_id)
    if problem is not None:
        raise InputError(f"{text}: {repo_id!r} is not a valid repository name ({problem}); use {_REPO_RULE}, "
                         f"as in {_SPEC_SYNTAX}")
    if revision:
        check_revision(revision, text)
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


def companion_file(spec: str | PurePath, filename: str) -> Path | None:
    """Another file of the Hub model ``spec`` (e.g. its ``model.int8.onnx``) from the cache or the Hub, or
    None when the repository has none or it cannot be had now (offline and not cached): companions are optional."""
    hub_spec = parse_hub_spec(spec)
    hub = import_hub()
    try:
        return Path(hub.hf_hub_download(hub_spec.repo_id, filename, revision=hub_spec.revision,
                                        library_name="mmchange", library_version=__version__))
    except Exception:  # noqa: BLE001 - absent, offline or unreachable: the model runs without it
        return None
