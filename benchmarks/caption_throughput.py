"""Caption throughput of the default VLM (TinyLLaVA-v1-hf architecture) at batch 1 and batched.

The model has exactly the architecture of ``bczhou/tiny-llava-v1-hf`` (CLIP ViT-L/14 at 336 px,
TinyLlama-1.1B language model, LLaVA projector; 1.41 B parameters) with random weights, so no
download is needed. It runs through mmchange's own ``VLMCaptioner`` (LLaVA prompt, CLIP image
processor, left-padded batched ``generate`` with the paper's sampling, decoding) with a fixed
generation length (``min_new_tokens = max_new_tokens``), so every batch size does the same work per
image. The tokenizer is a locally built word-level tokenizer with TinyLLaVA's vocabulary size and
special-token ids, so prompt lengths (576 image tokens + the question) match the real model.

Two figures per batch size, each the median of ``--runs`` timed runs after ``--warmup`` runs, with
CUDA synchronised around every run:

- end-to-end images/s of ``VLMCaptioner.caption`` (image preprocessing on the CPU, generation,
  decoding), which is what ``mmchange caption`` sustains;
- generate-only images/s (inputs prepared on the device beforehand), the model's own throughput.

The ratios batched / batch-1 are printed for both, with the peak GPU memory per batch size.

    python benchmarks/caption_throughput.py --device cuda --out caption_throughput.json
    python benchmarks/caption_throughput.py --tiny --device cpu --batch-sizes 1,4 --runs 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from a checkout
    sys.path.insert(0, str(REPO))

from mmchange_core.device import resolve_device  # noqa: E402
from mmchange_core.text.captioners.vlm import VLMCaptioner, vlm_dtype  # noqa: E402
from mmchange_core.text.config import CaptionerConfig  # noqa: E402

#: Special-token ids of TinyLLaVA-v1-hf (TinyLlama's <unk>, <s>, </s>; LLaVA's <image>; the added <pad>).
UNK, BOS, EOS, IMAGE, PAD = 0, 1, 2, 32000, 32001
PROMPT_WORDS = "USER ASSISTANT : ? What are the components in this picture".split()
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def tinyllava_v1_config(tiny: bool = False) -> Any:
    """The LlavaConfig of ``bczhou/tiny-llava-v1-hf`` (``tiny``: a 2-layer stand-in for smoke tests)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if tiny:
        vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                  image_size=56, patch_size=14, projection_dim=64)
        text = LlamaConfig(vocab_size=32064, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                           rms_norm_eps=1e-5, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    else:
        # CLIP ViT-L/14-336 vision tower.
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
        # TinyLlama-1.1B: 22 layers, width 2048, 32 heads with 4 key-value heads, vocabulary 32064.
        text = LlamaConfig(vocab_size=32064, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                           num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                           rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=BOS, eos_token_id=EOS,
                           pad_token_id=PAD)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE, pad_token_id=PAD,
                       projector_hidden_act="gelu", vision_feature_layer=-2,
                       vision_feature_select_strategy="default")


def build_processor(image_size: int, patch_size: int) -> Any:
    """A LlavaProcessor with TinyLLaVA's image processing and a word-level tokenizer of its vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

    vocab = {"<unk>": UNK, "<s>": BOS, "</s>": EOS}
    for word in PROMPT_WORDS:
        vocab.setdefault(word, len(vocab))
    while len(vocab) < IMAGE:
        vocab[f"tok{len(vocab)}"] = len(vocab)
    vocab["<image>"], vocab["<pad>"] = IMAGE, PAD
    for index in range(PAD + 1, 32064):
        vocab[f"extra{index}"] = index
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>",
                                        extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)


def build_captioner(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> VLMCaptioner:
    """VLMCaptioner around a randomly initialised TinyLLaVA-v1-hf model (built directly on ``device``)."""
    from transformers import LlavaForConditionalGeneration

    config = tinyllava_v1_config(args.tiny)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    processor = build_processor(config.vision_config.image_size, config.vision_config.patch_size)
    captioner = VLMCaptioner(CaptionerConfig(name="vlm", max_new_tokens=args.new_tokens, batch_size=1), device,
                             components=(processor, model))
    captioner.generation_overrides = {"min_new_tokens": args.new_tokens}
    return captioner


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], runs: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``runs`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(captioner: VLMCaptioner, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """End-to-end and generate-only images/s at one batch size."""
    device = captioner.device
    rng = np.random.default_rng(batch)
    images = [rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8) for _ in range(batch)]
    captioner.config.batch_size = batch
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    inputs = captioner.inputs(images)
    prompt_tokens = int(inputs["input_ids"].shape[1])

    @torch.inference_mode()
    def generate() -> torch.Tensor:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            return captioner.model.generate(**inputs, **captioner.generation_kwargs())

    generated = int(generate().shape[1]) - prompt_tokens
    if generated != args.new_tokens:
        raise RuntimeError(f"generation produced {generated} new tokens instead of {args.new_tokens}")
    generate_s = median_seconds(generate, args.runs, args.warmup, device)
    end_to_end_s = median_seconds(lambda: captioner.caption(images), args.runs, args.warmup, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"batch_size": batch, "status": "ok", "prompt_tokens": prompt_tokens, "new_tokens": generated,
            "end_to_end_seconds": end_to_end_s, "end_to_end_images_per_s": batch / end_to_end_s,
            "generate_seconds": generate_s, "generate_images_per_s": batch / generate_s,
            "peak_memory_gib": peak}


def environment(device: torch.device, dtype: torch.dtype, captioner: VLMCaptioner) -> dict[str, Any]:
    """Where the numbers come from."""
    import transformers

    params = sum(p.numel() for p in captioner.model.parameters())
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__, "dtype": str(dtype).split(".")[-1],
            "cpu_threads": torch.get_num_threads(), "parameters_b": round(params / 1e9, 3)}


def render(result: dict[str, Any]) -> None:
    """A rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    env = result["environment"]
    title = (f"caption throughput, {result['model']} ({env['parameters_b']} B params, random weights) on "
             f"{env['device']}, {env['dtype']}, {result['new_tokens']} new tokens/image, "
             f"median of {result['runs']} runs")
    table = Table(title=title, title_justify="left")
    for column in ("batch", "end-to-end img/s", "x batch 1", "generate img/s", "x batch 1", "prompt tokens",
                   "peak GiB"):
        table.add_column(column, justify="right")
    for row in result["results"]:
        if row["status"] != "ok":
            table.add_row(str(row["batch_size"]), row["status"], "", "", "", "", "")
            continue
        table.add_row(str(row["batch_size"]), f"{row['end_to_end_images_per_s']:.2f}",
                      f"{row.get('end_to_end_speedup', float('nan')):.1f}", f"{row['generate_images_per_s']:.2f}",
                      f"{row.get('generate_speedup', float('nan')):.1f}", str(row["prompt_tokens"]),
                      "-" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f}")
    Console().print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                        help="auto = what mmchange caption uses (bf16 on recent GPUs, fp32 on CPU)")
    parser.add_argument("--batch-sizes", default="1,16,32,64", help="comma-separated; 1 must be included")
    parser.add_argument("--new-tokens", type=int, default=32, help="generated tokens per image (fixed)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the random input images (px)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer stand-in of the same family (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON to this file")
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    args = parser.parse_args(argv)
    batches = sorted({int(b) for b in args.batch_sizes.split(",") if b.strip()})
    if 1 not in batches:
        parser.error("--batch-sizes must include 1 (the reference for the speed-up)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    dtype = vlm_dtype(device) if args.dtype == "auto" else DTYPES[args.dtype]
    captioner = build_captioner(args, device, dtype)
    rows = []
    for batch in batches:
        try:
            rows.append(measure(captioner, batch, args))
        except torch.OutOfMemoryError:
            rows.append({"batch_size": batch, "status": "out of memory"})
            torch.cuda.empty_cache()
        if not args.json:
            print(f"batch {batch}: {rows[-1].get('end_to_end_images_per_s', rows[-1]['status'])}", file=sys.stderr)
    base = next(r for r in rows if r["batch_size"] == 1)
    for row in rows:
        if row["status"] == "ok" and base["status"] == "ok":
            row["end_to_end_speedup"] = row["end_to_end_images_per_s"] / base["end_to_end_images_per_s"]
            row["generate_speedup"] = row["generate_images_per_s"] / base["generate_images_per_s"]
    result = {"benchmark": "caption_throughput", "model": "TinyLLaVA-v1-hf" + (" (tiny stand-in)" if args.tiny else ""),
              "new_tokens": args.new_tokens, "image_size": args.image_size, "runs": args.runs,
              "warmup": args.warmup, "environment": environment(device, dtype, captioner), "results": rows}
    if args.out is not None:
        from mmchange_core.io.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result)
        if args.out is not None:
            print(f"results written to {args.out}")
    return result


if __name__ == "__main__":
    main()
