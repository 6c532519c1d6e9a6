"""``mmchange caption`` with the real vlm and clip paths (tiny local models), and multi-process sharding."""

from __future__ import annotations

import json
import multiprocessing
import shlex
import socket
from collections import Counter
from pathlib import Path

import numpy as np

from mmchange_core.text import CaptionerConfig, CaptionStore, MissingCaptionsError, TextEncoderConfig, TextPipeline
from tests.text_helpers import make_dataset
from tests.text_helpers.ranks import caption_as_rank
from tests.text_helpers.tiny_models import CLIP_DIM, tiny_clip_dir, tiny_llava_dir  # noqa: F401 (fixtures)


def test_caption_with_vlm_and_clip_then_the_suggested_command(cli, tmp_path: Path, tiny_llava_dir: Path,
                                                              tiny_clip_dir: Path) -> None:
    root = make_dataset(tmp_path / "sysu", layout="sysu", pairs=1)
    args = ("--model", tiny_llava_dir, "--text-model", tiny_clip_dir, "--set", f"encoder.dim={CLIP_DIM}",
            "--max-new-tokens", "4", "--batch-size", "3", "--device", "cpu")
    result = cli("caption", root, *args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["captioned"], data["failed"], data["captioner"]["name"]) == (4, [], "vlm")
    assert data["captioner"]["prompt"] == "What are the components in this picture?"
    store = CaptionStore.open(root)
    keys = ["train/time1/train_0.png", "test/time2/test_0.png"]
    emb = store.embeddings_for(keys)
    assert emb.shape == (2, CLIP_DIM)
    captions = store.captions_for(keys)
    pipe = TextPipeline.from_description(store.text_description(), device="cpu")
    assert np.allclose(pipe.encode(captions).numpy(), emb, atol=1e-5)

    # A different prompt is a different setting: the error names the command that fills the store.
    other = TextPipeline(CaptionerConfig(model=str(tiny_llava_dir), prompt="prompt1", max_new_tokens=4),
                         TextEncoderConfig(model=str(tiny_clip_dir), dim=CLIP_DIM)).describe()
    try:
        store.embeddings_for(keys, other)
        raise AssertionError("expected MissingCaptionsError")
    except MissingCaptionsError as exc:
        command = str(exc).split("run: ", 1)[1]
    argv = shlex.split(command)
    assert argv[:3] == ["mmchange", "caption", str(root)] and "--prompt" in argv
    rerun = cli(*argv[1:], "--device", "cpu", "--json")
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["captioned"] == 4
    assert CaptionStore.open(root).embeddings_for(keys, other).shape == (2, CLIP_DIM)
    again = json.loads(cli("caption", root, *args, "--json").stdout)
    assert (again["skipped"], again["captioned"]) == (4, 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_caption_disjoint_shards_and_rank0_merges(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", pairs=3)
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    procs = [ctx.Process(target=caption_as_rank, args=(r, 2, port, str(root), str(outs[r]))) for r in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    reports = [json.loads(out.read_text()) for out in outs]
    assert reports[0]["world_size"] == 2 and reports[0]["captioned"] == 12 and reports[0]["distinct_captions"] == 12
    store = CaptionStore.open(root)
    records = [json.loads(line) for line in store.path.read_text().splitlines()]
    captions = [r for r in records if r["type"] == "caption"]
    assert len(captions) == 12 and len(Counter(r["key"] for r in captions)) == 12
    assert sum(r["type"] == "run" for r in records) == 1
    assert not list(root.glob("*.rank*.jsonl"))  # shards merged and removed
    assert store.text_description()["captioner"]["name"] == "basic"
