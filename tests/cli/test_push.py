"""``mmchange push``: the staged folder, then push -> Hub cache -> ``predict --checkpoint hf://...`` as a
round trip (the cache laid out from push's own folder, read offline), and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors import safe_open

from mmchange_core.models import CheckpointMeta, build_model, load_checkpoint, read_checkpoint_meta, save_checkpoint
from tests.models_helpers import eval_json, write_v1
from tests.models_helpers.hub_cache import add_snapshot, use_hub_cache

pytest.importorskip("huggingface_hub")

REPO_ROOT = Path(__file__).resolve().parents[2]
FILES = ["README.md", "config.yaml", "model.safetensors"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training run folder: best.safetensors (tile 64, threshold 0.45) beside its config.yaml, plus a pair."""
    root = tmp_path_factory.mktemp("push")
    run_dir = root / "runs" / "train" / "exp"
    run_dir.mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model("resnet18", "image-only").eval()
    with torch.no_grad():  # a sharper head than at initialisation: probabilities spread over (0, 1)
        model.decoder.cls.weight.mul_(200)
    save_checkpoint(run_dir / "best.safetensors", model, CheckpointMeta(
        model=model.config, tile_size=64, threshold=0.45,
        training={"run_dir": str(run_dir), "dataset": str(root / "LEVIR-CD"), "iterations": 20, "epoch": 2}))
    (run_dir / "config.yaml").write_text("# resolved\ndataset: levir\ncrop_size: 64\niters: 20\n")
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(root / name)
    return run_dir


def test_dry_run_writes_the_folder_to_upload(run: Path, tmp_path: Path, cli) -> None:
    metrics = eval_json(tmp_path / "metrics.json")
    result = cli("push", run / "best.safetensors", "--repo", "alice/tiny-cd", "--eval", metrics,
                 "--dry-run", tmp_path / "upload", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["folder"] == str(tmp_path / "upload") and report["commit"] is None
    folder = tmp_path / "upload"
    assert sorted(p.name for p in folder.iterdir()) == FILES
    assert (folder / "config.yaml").read_text() == (run / "config.yaml").read_text()  # the run's own
    assert read_checkpoint_meta(folder / "model.safetensors") == read_checkpoint_meta(run / "best.safetensors")
    pushed, _ = load_checkpoint(folder / "model.safetensors")
    local, _ = load_checkpoint(run / "best.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(pushed.state_dict().values(), local.state_dict().values()))
    card = (folder / "README.md").read_text()
    assert "model-index" in card and "| F1 (change class) | 70.65 |" in card
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".upload")]  # no staging left behind


def test_an_old_checkpoint_is_upgraded_and_its_metadata_becomes_the_config(tmp_path: Path, cli) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", "full", text_dim=64)
    old = write_v1(tmp_path / "old.safetensors", model, {"threshold": 0.4, "mmchange_version": "0.0.9"})
    result = cli("push", old, "--repo", "alice/old", "--dry-run", tmp_path / "upload")
    assert result.exit_code == 0, result.output
    with safe_open(str(tmp_path / "upload" / "model.safetensors"), "pt") as handle:
        assert handle.metadata()["format_version"] == "2"
    config = yaml.safe_load((tmp_path / "upload" / "config.yaml").read_text())
    assert config["model"] == {"backbone": "resnet18", "variant": "full", "text_dim": 64, "in_channels": 3,
                               "num_classes": 2}
    assert config["threshold"] == 0.4


@pytest.mark.parametrize("args, message", [
    (["--repo", "alice"], "expected hf://OWNER/NAME"),
    (["--repo", "alice/m@dev"], "give the repository as OWNER/NAME and the branch with --branch"),
    (["--repo", "alice/m", "--license", "MIT License"], "not a Hub licence identifier"),
    (["--repo", "alice/m", "--eval", "missing.json"], "evaluation file not found"),
])
def test_bad_arguments_write_nothing(run: Path, tmp_path: Path, cli, args: list[str], message: str) -> None:
    result = cli("push", run / "best.safetensors", *args, "--dry-run", tmp_path / "upload")
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "upload").exists() and list(tmp_path.iterdir()) == []


def test_a_folder_with_files_is_not_overwritten(run: Path, tmp_path: Path, cli) -> None:
    (tmp_path / "upload").mkdir()
    (tmp_path / "upload" / "notes.txt").write_text("mine")
    result = cli("push", run / "best.safetensors", "--repo", "alice/m", "--dry-run", tmp_path / "upload")
    assert result.exit_code == 1 and "not an empty folder" in result.stderr
    assert [p.name for p in (tmp_path / "upload").iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_push_then_predict_from_the_hub_cache_gives_the_local_mask(run: Path, tmp_path: Path, cli,
                                                                   monkeypatch) -> None:
    pair = run.parents[2]
    folder = tmp_path / "upload"
    assert cli("push", run / "best.safetensors", "--repo", "alice/tiny-cd", "--dry-run", folder).exit_code == 0
    cache = tmp_path / "hub"
    use_hub_cache(monkeypatch, cache, offline=True)
    commit = add_snapshot(cache, "alice/tiny-cd", folder, refs=("main", "stable"))
    local = cli("predict", pair / "a.png", pair / "b.png", "-o", tmp_path / "local.png",
                "--prob", tmp_path / "local_prob.png", "--checkpoint", run / "best.safetensors")
    assert local.exit_code == 0, local.output
    # a separate process, configured only by the environment variables a user would set
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "mmchange_cli", "predict", str(pair / "a.png"), str(pair / "b.png"),
                           "-o", str(tmp_path / "hub.png"), "--prob", str(tmp_path / "hub_prob.png"),
                           "--checkpoint", "hf://alice/tiny-cd", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["threshold"] == 0.45
    local_prob = np.asarray(Image.open(tmp_path / "local_prob.png"))
    assert len(np.unique(local_prob)) > 50  # a varied map, so equality means something
    assert np.array_equal(np.asarray(Image.open(tmp_path / "hub_prob.png")), local_prob)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "hub.png")), np.asarray(Image.open(tmp_path / "local.png")))
    at_commit = cli("predict", pair / "a.png", pair / "b.png", "-o", tmp_path / "commit.png",
                    "--prob", tmp_path / "commit_prob.png", "--checkpoint", f"hf://alice/tiny-cd@{commit}")
    assert at_commit.exit_code == 0, at_commit.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "commit_prob.png")), local_prob)
    info = cli("info", "--checkpoint", "hf://alice/tiny-cd@stable", "--json")
    assert info.exit_code == 0, info.output
    shown = json.loads(info.stdout)
    assert shown["checkpoint"]["path"] == "hf://alice/tiny-cd@stable" and shown["checkpoint"]["threshold"] == 0.45
    assert Path(shown["checkpoint_file"]).parent.name == commit


def test_offline_and_not_cached_is_one_line(tmp_path: Path, cli, monkeypatch) -> None:
    use_hub_cache(monkeypatch, tmp_path / "hub", offline=True)
    result = cli("info", "--checkpoint", "hf://alice/tiny-cd@v2")
    assert result.exit_code == 1 and result.stdout == ""
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "hf://alice/tiny-cd@v2" in line and "HF_HUB_OFFLINE=0" in line
    assert "hf download alice/tiny-cd model.safetensors --revision v2" in line


class _RefusingHub(BaseHTTPRequestHandler):
    """A Hub that refuses every request's token, as huggingface.co does for a revoked one."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        body = b'{"error": "Invalid credentials in Authorization header"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST

    def log_message(self, *args: object) -> None:
        pass


def test_push_needs_a_login_and_the_hub(run: Path, tmp_path: Path, cli, monkeypatch) -> None:
    use_hub_cache(monkeypatch, tmp_path / "hub", offline=True)
    offline = cli("push", run / "best.safetensors", "--repo", "alice/tiny-cd")
    assert offline.exit_code == 1 and "HF_HUB_OFFLINE=1 forbids network access" in offline.stderr
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        use_hub_cache(monkeypatch, tmp_path / "hub", offline=False, endpoint=f"http://127.0.0.1:{server.server_port}")
        anonymous = cli("push", run / "best.safetensors", "--repo", "alice/tiny-cd")
        assert anonymous.exit_code == 1 and "not logged in" in anonymous.stderr and "hf auth login" in anonymous.stderr
        monkeypatch.setenv("HF_TOKEN", "hf_revoked")
        refused = cli("push", run / "best.safetensors", "--repo", "alice/tiny-cd")
    finally:
        server.shutdown()
        server.server_close()
    assert refused.exit_code == 1 and refused.stdout == "", refused.output
    assert "refused the token (HTTP 401)" in refused.stderr and "nothing was committed" in refused.stderr
    for result in (offline, anonymous, refused):
        assert len(result.stderr.strip().splitlines()) == 1 and "pushed" not in result.output
