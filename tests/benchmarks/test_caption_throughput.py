"""The caption-throughput benchmark script: real-size config and a tiny CPU smoke run (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.caption_throughput import IMAGE, build_processor, main, tinyllava_v1_config


def test_benchmark_model_has_tinyllava_v1_size_and_prompt_length() -> None:
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration._from_config(tinyllava_v1_config())
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 1.41
    processor = build_processor(336, 14)
    batch = processor(images=[np.zeros((256, 256, 3), np.uint8)],
                      text=["USER: <image>\nWhat are the components in this picture? ASSISTANT:"], return_tensors="pt")
    assert int((batch["input_ids"] == IMAGE).sum()) == 576 and batch["pixel_values"].shape[-1] == 336


def test_benchmark_smoke_run_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "caption_throughput.json"
    result = main(["--tiny", "--device", "cpu", "--batch-sizes", "1,2", "--new-tokens", "2", "--runs", "1",
                   "--warmup", "0", "--image-size", "32", "--out", str(out), "--json"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    rows = {r["batch_size"]: r for r in saved["results"]}
    assert set(rows) == {1, 2} and all(r["status"] == "ok" and r["new_tokens"] == 2 for r in rows.values())
    assert rows[1]["end_to_end_speedup"] == 1.0 and rows[2]["generate_images_per_s"] > 0
