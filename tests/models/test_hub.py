"""hf://OWNER/NAME[@REVISION] checkpoints: spec syntax, loading from a real Hub cache layout offline,
and one-line errors from huggingface_hub's own answers (cache misses, a local server speaking the Hub's
error protocol)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from mmchange_core.errors import InputError
from mmchange_core.models import CheckpointMeta, build_model, load_checkpoint, read_checkpoint_meta, save_checkpoint
from mmchange_core.models import update_checkpoint_meta
from mmchange_core.models.hub import HubError, HubSpec, import_hub, parse_hub_spec, resolve_checkpoint
from tests.models_helpers.hub_cache import add_snapshot, use_hub_cache

pytest.importorskip("huggingface_hub")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small checkpoints with different weights and thresholds, each in a folder as the Hub holds it."""
    root = tmp_path_factory.mktemp("hub_models")
    paths = {}
    for seed, threshold in ((0, 0.3), (1, 0.7)):
        torch.manual_seed(seed)
        model = build_model("resnet18", "image-only").eval()
        folder = root / f"seed{seed}"
        folder.mkdir()
        paths[f"seed{seed}"] = save_checkpoint(folder / "model.safetensors", model,
                                               CheckpointMeta(model=model.config, tile_size=64, threshold=threshold))
    return paths


@pytest.mark.parametrize("spec, expected", [
    ("hf://alice/cd-model", HubSpec("alice/cd-model")),
    ("hf://alice/cd-model@v1.0", HubSpec("alice/cd-model", "v1.0")),
    ("hf://org-1/m_2.x@refs/pr/3", HubSpec("org-1/m_2.x", "refs/pr/3")),
    (Path("hf://alice/cd-model@dev"), HubSpec("alice/cd-model", "dev")),  # a Path made it hf:/alice/...
])
def test_spec_syntax(spec, expected: HubSpec) -> None:
    assert parse_hub_spec(spec) == expected
    assert str(parse_hub_spec(str(expected))) == str(expected)


@pytest.mark.parametrize("spec, message", [
    ("hf://alice", "expected hf://OWNER/NAME"),
    ("hf://alice/m/model.safetensors", "no file path goes after the name"),
    ("hf://alice/m@", "nothing after '@'"),
    ("hf://alice/bad name", "not a valid repository name"),
    ("hf://alice/m..x", "not a valid repository name"),
])
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        resolve_checkpoint(spec)
    assert "\n" not in str(info.value)


def test_plain_paths_pass_through(tmp_path: Path) -> None:
    assert resolve_checkpoint(tmp_path / "best.safetensors") == tmp_path / "best.safetensors"
    assert resolve_checkpoint("runs/train/exp/best.safetensors") == Path("runs/train/exp/best.safetensors")


def test_loads_main_branch_tag_and_commit_from_the_offline_cache(models, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    use_hub_cache(monkeypatch, cache, offline=True)
    first = add_snapshot(cache, "alice/cd-model", models["seed0"].parent, refs=("main", "v1"))
    second = add_snapshot(cache, "alice/cd-model", models["seed1"].parent, refs=("dev",))
    assert first != second
    assert read_checkpoint_meta("hf://alice/cd-model").threshold == 0.3
    assert read_checkpoint_meta("hf://alice/cd-model@v1").threshold == 0.3
    assert read_checkpoint_meta("hf://alice/cd-model@dev").threshold == 0.7
    assert read_checkpoint_meta(f"hf://alice/cd-model@{second}").threshold == 0.7
    assert read_checkpoint_meta(f"hf://alice/cd-model@{first}").threshold == 0.3
    path = resolve_checkpoint("hf://alice/cd-model@dev")
    assert path.parent.name == second and path.read_bytes() == models["seed1"].read_bytes()
    hub_model, _ = load_checkpoint("hf://alice/cd-model@dev")
    local_model, _ = load_checkpoint(models["seed1"])
    assert all(torch.equal(a, b) for a, b in zip(hub_model.state_dict().values(),
                                                 local_model.state_dict().values()))


def test_offline_and_not_cached_says_what_to_do(models, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    use_hub_cache(monkeypatch, cache, offline=True)
    add_snapshot(cache, "alice/cd-model", models["seed0"].parent)
    for spec, fix in (("hf://alice/other", "'hf download alice/other model.safetensors'"),
                      ("hf://alice/cd-model@dev", "'hf download alice/cd-model model.safetensors --revision dev'")):
        with pytest.raises(HubError) as info:
            resolve_checkpoint(spec)
        message = str(info.value)
        assert "\n" not in message and message.startswith(spec)
        assert "HF_HUB_OFFLINE" in message and str(cache) in message and fix in message


def test_a_hub_checkpoint_is_not_changed_in_place(models, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    use_hub_cache(monkeypatch, cache, offline=True)
    add_snapshot(cache, "alice/cd-model", models["seed0"].parent)
    before = resolve_checkpoint("hf://alice/cd-model").read_bytes()
    with pytest.raises(InputError, match="cannot change in place.*hf download alice/cd-model"):
        update_checkpoint_meta("hf://alice/cd-model", threshold=0.4)
    assert resolve_checkpoint("hf://alice/cd-model").read_bytes() == before


class _FakeHub(BaseHTTPRequestHandler):
    """Answers as the Hub does for a missing repository, revision, file, or a gated repository."""

    ERRORS = {"/alice/missing/": (404, "RepoNotFound"), "/resolve/nosuch/": (404, "RevisionNotFound"),
              "/alice/empty/": (404, "EntryNotFound"), "/alice/gated/": (403, "GatedRepo")}

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        status, code = next(((s, c) for part, (s, c) in self.ERRORS.items() if part in self.path), (500, None))
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("spec, message", [
    ("hf://alice/missing", "repository alice/missing not found on the Hub.*private, log in"),
    ("hf://alice/model@nosuch", "revision 'nosuch' not found in alice/model"),
    ("hf://alice/empty", "has no model.safetensors.*mmchange push CHECKPOINT --repo alice/empty"),
    ("hf://alice/gated", "is gated: accept its conditions"),
])
def test_hub_answers_become_one_line_errors(spec: str, message: str, fake_hub: str, tmp_path: Path,
                                            monkeypatch) -> None:
    use_hub_cache(monkeypatch, tmp_path / "hub", offline=False, endpoint=fake_hub)
    with pytest.raises(HubError, match=message) as info:
        read_checkpoint_meta(spec)
    assert "\n" not in str(info.value)


def test_without_huggingface_hub_the_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(InputError, match=r'pip install "mmchange\[hub\]"'):
        import_hub()
    with pytest.raises(InputError, match=r"mmchange\[hub\]"):
        resolve_checkpoint("hf://alice/cd-model")


def test_eval_refuses_to_tune_a_hub_checkpoint_before_any_work(tmp_path: Path, cli, monkeypatch) -> None:
    use_hub_cache(monkeypatch, tmp_path / "hub", offline=True)  # not even cached: refused before loading
    result = cli("eval", "--checkpoint", "hf://alice/cd-model", "--dataset", tmp_path, "--tune-threshold",
                 "--project", tmp_path / "runs")
    assert result.exit_code == 1 and "hf://alice/cd-model is a Hub checkpoint" in result.stderr
    assert "hf download alice/cd-model model.safetensors --local-dir DIR" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/3", "release/2024-01_rc.1", "a" * 40, "feature@x"])
def test_branches_tags_and_commits_are_revisions(revision: str) -> None:
    assert parse_hub_spec(f"hf://alice/cd-model@{revision}") == HubSpec("alice/cd-model", revision)


@pytest.mark.parametrize("revision, problem", [
    ("../refs/private", "it contains '..'"),
    ("x/../../models--bob--other/refs/main", "it contains '..'"),
    ("/tmp/hub/models--bob--other/refs/main", "it starts or ends with '/' or contains '//'"),
    ("main/", "it starts or ends with '/' or contains '//'"),
    ("a//b", "it starts or ends with '/' or contains '//'"),
    ("main\\x", "it contains '\\\\'"),
    ("x~1", "it contains '~'"),
    ("x^", "it contains '^'"),
    ("a:b", "it contains ':'"),
    ("what?", "it contains '?'"),
    ("a*", "it contains '*'"),
    ("a[1]", "it contains '['"),
    ("a b", "it contains ' '"),
    ("a\x7f", "it contains '\\x7f'"),
    ("line\nbreak", "it contains '\\n'"),
    (".hidden", "its part '.hidden' starts with '.'"),
    ("refs/.x", "its part '.x' starts with '.'"),
    ("main.lock", "its part 'main.lock' ends with '.lock'"),
    ("v1.", "it ends with '.'"),
    ("@", "it is '@'"),
    ("main@{1}", "it contains '@{'"),
])
def test_revisions_that_are_paths_or_not_git_refs_are_refused(revision: str, problem: str) -> None:
    spec = f"hf://alice/cd-model@{revision}"
    with pytest.raises(InputError) as info:
        resolve_checkpoint(spec)
    message = str(info.value)
    assert "\n" not in message
    assert f"the revision {revision!r} is not a branch, tag or commit ({problem}); give a git branch, tag or " \
           f"commit hash" in message, message
    assert message.startswith(spec if spec.isprintable() else repr(spec))


@pytest.mark.parametrize("spec, problem", [
    ("hf://alice-/m", "the owner 'alice-' breaks these rules"),
    ("hf://.alice/m", "the owner '.alice' breaks these rules"),
    ("hf://alice/m.", "the name 'm.' breaks these rules"),
    ("hf://alice/-m", "the name '-m' breaks these rules"),
    ("hf://alice/a--b", "it contains '--'"),
    (f"hf://alice/{'m' * 97}", f"the name '{'m' * 97}' breaks these rules"),
])
def test_repository_names_the_hub_refuses_are_one_line_errors(spec: str, problem: str) -> None:
    with pytest.raises(InputError) as info:
        parse_hub_spec(spec)
    assert "\n" not in str(info.value) and f"is not a valid repository name ({problem})" in str(info.value)
    assert "letters, digits, '-', '_' and '.'" in str(info.value)


def test_a_revision_cannot_lead_to_another_snapshot_in_the_cache(models, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    use_hub_cache(monkeypatch, cache, offline=True)
    add_snapshot(cache, "alice/cd-model", models["seed0"].parent)
    add_snapshot(cache, "alice/cd-model", models["seed1"].parent, refs=("private",))
    add_snapshot(cache, "bob/other", models["seed1"].parent)
    assert read_checkpoint_meta("hf://alice/cd-model").threshold == 0.3
    for revision in ("../refs/private", "../../models--bob--other/refs/main",
                     f"/{cache}/models--bob--other/refs/main"):
        with pytest.raises(InputError, match="is not a branch, tag or commit"):
            resolve_checkpoint(f"hf://alice/cd-model@{revision}")
