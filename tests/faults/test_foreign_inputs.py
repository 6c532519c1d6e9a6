"""Foreign inputs (issue 21, items 4 to 8): each is refused in one line before any work, or handled right.

* an ONNX model whose inputs or outputs are not what ``mmchange export`` writes (names, ranks, types);
* an ``hf://`` spec whose revision is a path (``..``) or whose repository name the Hub would refuse;
* STAC hrefs of files whose names hold ``#``, ``?``, ``%``, spaces or non-ASCII letters;
* a FIFO given for every file-valued option of every command (nothing may block reading or writing it);
* a pair list without labels given to eval (the advice is about the pair list);
* square brackets in text printed through rich (kept in notes, warnings, errors and table cells).

Every refusal checks the exit code (1), the one ``error:`` line naming the file or value (no
traceback), and that the inputs did not change and no output was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fifo_helpers import released
from tests.onnx_helpers.foreign import IMAGE_INPUTS, OUTPUTS, foreign_model, text_inputs

# --------------------------------------------------------------------------------------------------
# helpers


def digests(*roots: Path) -> dict[str, str]:
    """sha256 of every regular file under ``roots``; links and special files by their kind."""
    found: dict[str, str] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif not stat.S_ISDIR(mode):
                found[str(path)] = f"special {stat.S_IFMT(mode):o}"
    return found


def error_line(result) -> str:  # noqa: ANN001 - click's Result
    """The one ``error:`` line of a failed command (exit code 1, no traceback)."""
    output = result.output
    assert result.exit_code == 1, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny image-only and text checkpoint, an fp32 .onnx, a pair of PNGs and a captioned 3-pair dataset."""
    from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
    from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline, caption_dataset

    root = tmp_path_factory.mktemp("foreign")
    torch.manual_seed(0)
    image = build_model("resnet18", "image-only").eval()
    text = build_model("resnet18", "full", text_dim=64).eval()
    description = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing", dim=64),
                               device="cpu").describe()
    paths = {
        "image": save_checkpoint(root / "image.safetensors", image, CheckpointMeta(model=image.config, tile_size=64)),
        "text": save_checkpoint(root / "text.safetensors", text, CheckpointMeta(
            model=text.config, tile_size=64, text_description=description)),
        "onnx": foreign_model(root / "exported.onnx"),  # the signature of an export: quantisable
        "data": root / "data",
    }
    make_synthetic_dataset(paths["data"], SynthConfig(pairs=3, size=64, seed=0, text_signal=True))
    caption_dataset(paths["data"], captioner=CaptionerConfig(name="basic"),
                    encoder=TextEncoderConfig(name="hashing", dim=64), device="cpu")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        paths[name] = root / f"{name}.png"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(paths[name])
    return paths


# --------------------------------------------------------------------------------------------------
# 4. foreign ONNX models are checked at load


FOREIGN = {
    "no-logits": (dict(outputs={"out0": OUTPUTS["logits"]}),
                  "has no output 'logits' (outputs: out0); export it with 'mmchange export'"),
    "logits-rank-3": (dict(outputs={"logits": ("float", ["N", "H", "W"])}),
                      "has output 'logits' of rank 3 (shape [N, H, W]), but mmchange exports float32 [N, 1, H, W]"),
    "logits-double": (dict(outputs={"logits": ("double", ["N", 1, "H", "W"])}),
                      "has output 'logits' of type tensor(double), but mmchange exports float32 [N, 1, H, W]"),
    "image-4-bands": (dict(inputs={"image_a": ("float", ["N", 4, "H", "W"]), "image_b": IMAGE_INPUTS["image_b"]}),
                      "has input 'image_a' of shape [N, 4, H, W] (axis 1 is 4, not 3)"),
    "renamed-input": (dict(inputs={"input0": IMAGE_INPUTS["image_a"], "image_b": IMAGE_INPUTS["image_b"]}),
                      "has no input 'image_a' (inputs: input0, image_b)"),
    "text-width": (dict(inputs=text_inputs(32), text=True),
                   "has input 'text_a' of shape [1, 32] (axis 1 is 32, not 64), but mmchange exports float32 [1, 64]"),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_a_foreign_onnx_model_is_refused_at_load_before_any_output(case: str, material, tmp_path: Path, cli) -> None:
    options, expected = FOREIGN[case]
    model = foreign_model(tmp_path / "model.onnx", **options)
    out = tmp_path / "out"
    before = digests(material["a"], material["b"], model)
    result = cli("predict", material["a"], material["b"], "-o", out / "mask.png", "--prob", out / "prob.tif",
                 "--checkpoint", model, "--device", "cpu")
    line = error_line(result)
    assert line == f"error: {model} {expected}; export it with 'mmchange export'" or \
        (line.startswith(f"error: {model} ") and expected in line), line
    assert files_under(out) == []  # no mask, no stage file, no manifest
    assert digests(material["a"], material["b"], model) == before


# --------------------------------------------------------------------------------------------------
# 5. hf:// specs are validated before the Hub cache is read


def test_a_revision_with_dot_dot_does_not_reach_another_snapshot(material, tmp_path: Path, cli, monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    from tests.models_helpers.hub_cache import add_snapshot, use_hub_cache

    cache = tmp_path / "hub"
    use_hub_cache(monkeypatch, cache, offline=True)
    public, private = tmp_path / "public", tmp_path / "private"
    public.mkdir()
    private.mkdir()
    (public / "model.safetensors").write_bytes(b"not the model asked for")
    (private / "model.safetensors").write_bytes(material["image"].read_bytes())
    add_snapshot(cache, "alice/cd-model", public)
    add_snapshot(cache, "alice/cd-model", private, refs=("private",))
    out = tmp_path / "out"
    spec = "hf://alice/cd-model@../refs/private"
    before = digests(cache, material["a"], material["b"])
    result = cli("predict", material["a"], material["b"], "-o", out / "mask.png", "--checkpoint", spec,
                 "--device", "cpu")
    line = error_line(result)
    assert line.startswith(f"error: {spec}: the revision '../refs/private' is not a branch, tag or commit "
                           f"(it contains '..'); give a git branch, tag or commit hash"), line
    assert files_under(out) == []
    assert digests(cache, material["a"], material["b"]) == before


@pytest.mark.parametrize("spec, fragment", [
    ("hf://alice/cd-model@/etc/passwd", "the revision '/etc/passwd' is not a branch, tag or commit"),
    ("hf://alice/cd-model@main\\..\\x", "the revision 'main\\\\..\\\\x' is not a branch, tag or commit"),
    ("hf://alice-/cd-model", "'alice-/cd-model' is not a valid repository name (the owner 'alice-'"),
])
def test_bad_hub_specs_are_one_line_errors_in_the_cli(spec: str, fragment: str, material, tmp_path: Path,
                                                      cli) -> None:
    out = tmp_path / "out"
    result = cli("predict", material["a"], material["b"], "-o", out / "mask.png", "--checkpoint", spec,
                 "--device", "cpu")
    line = error_line(result)
    assert line.startswith(f"error: {spec}: ") and fragment in line, line
    assert files_under(out) == []


# --------------------------------------------------------------------------------------------------
# 6. STAC hrefs resolve to the right file, whatever its name


ODD_NAMES = ("site #3.png", "q?x=1%20&y.png", "données été.png", "a:b [1] 100%.png")


def resolve_href(item_path: Path, href: str) -> Path:
    """What a STAC client opens for ``href``: the URL reference resolved against the Item's URL, unquoted."""
    url = urljoin(item_path.resolve().as_uri(), href)
    parts = urlsplit(url)
    assert parts.scheme == "file" and not parts.query and not parts.fragment, url
    return Path(unquote(parts.path))


@pytest.mark.parametrize("name", ODD_NAMES)
def test_stac_hrefs_of_odd_file_names_resolve_to_the_files(name: str, material, tmp_path: Path, cli) -> None:
    pytest.importorskip("pystac")
    from mmchange_core.io.stac import stac_problems

    folder = tmp_path / "in #1"
    image_a, image_b = folder / "A" / name, folder / "B" / name
    for source, target in ((material["a"], image_a), (material["b"], image_b)):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    out = tmp_path / "out?"
    mask = out / f"mask {Path(name).stem}.png"
    result = cli("predict", image_a, image_b, "-o", mask, "--prob", out / f"prob {Path(name).stem}.tif",
                 "--checkpoint", material["image"], "--device", "cpu", "--stac")
    assert result.exit_code == 0, result.output
    item_path = mask.with_name(f"{mask.stem}.stac.json")
    item = json.loads(item_path.read_text(encoding="utf-8"))
    resolved = {key: resolve_href(item_path, asset["href"]) for key, asset in item["assets"].items()}
    assert resolved["image_a"] == image_a.resolve() and resolved["image_b"] == image_b.resolve()
    assert resolved["mask"] == mask.resolve()
    assert resolved["prob"] == (out / f"prob {Path(name).stem}.tif").resolve()
    assert all(path.is_file() for path in resolved.values())
    assert stac_problems(item_path) == []


# --------------------------------------------------------------------------------------------------
# 7. no command blocks on a FIFO given where a regular file is expected


_PREDICT = ("predict", "{a}", "{b}", "-o", "{out}/mask.png", "--checkpoint", "{image}", "--device", "cpu")
_EVAL = ("--dataset", "{data}", "--device", "cpu", "--project", "{out}")
_TRAIN = ("train", "--dataset", "{data}", "--backbone", "resnet18", "--iters", "1", "--crop-size", "64",
          "--batch-size", "1", "--no-pretrained", "--project", "{out}")
_CAPTION = ("caption", "--dataset", "{data}", "--captioner", "basic", "--text-encoder", "hashing")
#: Every file-valued option of every command: the command line, with ``{fifo...}`` where the FIFO goes.
FIFO_CASES = {
    "caption --captions": (*_CAPTION, "--captions", "{fifo.jsonl}"),
    "caption --captions FOLDER": (*_CAPTION, "--captions", "{fifo-folder}"),
    "caption --config": (*_CAPTION, "--config", "{fifo.yaml}"),
    "caption --dataset LIST": ("caption", "--dataset", "{fifo.csv}", "--captioner", "basic"),
    "predict IMAGE_A": ("predict", "{fifo.png}", "{b}", *_PREDICT[3:]),
    "predict IMAGE_B": ("predict", "{a}", "{fifo.png}", *_PREDICT[3:]),
    "predict --checkpoint": (*_PREDICT[:5], "--checkpoint", "{fifo.safetensors}", "--device", "cpu"),
    "predict --checkpoint ONNX": (*_PREDICT[:5], "--checkpoint", "{fifo.onnx}", "--device", "cpu"),
    "predict --captions": (*_PREDICT[:5], "--checkpoint", "{text}", "--device", "cpu", "--captions", "{fifo.yaml}"),
    "predict --config": (*_PREDICT, "--config", "{fifo.yaml}"),
    "predict --output": ("predict", "{a}", "{b}", "-o", "{fifo.png}", "--checkpoint", "{image}", "--device", "cpu"),
    "predict --prob": (*_PREDICT, "--prob", "{fifo.tif}"),
    "predict --overlay": (*_PREDICT, "--overlay", "{fifo.png}"),
    "predict --vector": (*_PREDICT, "--vector", "{fifo.geojson}"),
    "predict --report": (*_PREDICT, "--report", "{fifo.html}"),
    "eval --checkpoint": ("eval", "--checkpoint", "{fifo.safetensors}", *_EVAL),
    "eval --dataset LIST": ("eval", "--checkpoint", "{image}", "--dataset", "{fifo.csv}", *_EVAL[2:]),
    "eval --captions": ("eval", "--checkpoint", "{text}", *_EVAL, "--captions", "{fifo.jsonl}"),
    "eval --config": ("eval", "--checkpoint", "{image}", *_EVAL, "--config", "{fifo.yaml}"),
    "eval --save-pred": ("eval", "--checkpoint", "{image}", *_EVAL, "--save-pred", "{fifo}"),
    "robustness --checkpoint": ("robustness", "--checkpoint", "{fifo.safetensors}", *_EVAL),
    "robustness --dataset LIST": ("robustness", "--checkpoint", "{image}", "--dataset", "{fifo.csv}", *_EVAL[2:]),
    "robustness --captions": ("robustness", "--checkpoint", "{text}", *_EVAL, "--captions", "{fifo.jsonl}"),
    "robustness --config": ("robustness", "--checkpoint", "{image}", *_EVAL, "--config", "{fifo.yaml}"),
    "train --dataset LIST": ("train", "--dataset", "{fifo.csv}", *_TRAIN[3:]),
    "train --captions": (*_TRAIN, "--captions", "{fifo.jsonl}"),
    "train --config": (*_TRAIN, "--config", "{fifo.yaml}"),
    "export CHECKPOINT": ("export", "{fifo.safetensors}", "-o", "{out}/model.onnx"),
    "export --output": ("export", "{image}", "-o", "{fifo.onnx}"),
    "export --calibrate": ("export", "{onnx}", "-o", "{out}/q.onnx", "--quantize", "int8", "--calibrate",
                           "{fifo.csv}"),
    "export --check": ("export", "{onnx}", "-o", "{out}/q.onnx", "--quantize", "int8-dynamic", "--check",
                       "{fifo.csv}"),
    "export --config": ("export", "{image}", "-o", "{out}/model.onnx", "--config", "{fifo.yaml}"),
    "info --checkpoint": ("info", "--checkpoint", "{fifo.safetensors}"),
    "info --checkpoint ONNX": ("info", "--checkpoint", "{fifo.onnx}"),
    "push CHECKPOINT": ("push", "{fifo.safetensors}", "--repo", "alice/m", "--dry-run", "{out}/push"),
    "push --eval": ("push", "{image}", "--repo", "alice/m", "--eval", "{fifo.json}", "--dry-run", "{out}/push"),
    "push --dry-run": ("push", "{image}", "--repo", "alice/m", "--dry-run", "{fifo}"),
    "convert SOURCE": ("convert", "{fifo.pth}", "-o", "{out}/model.safetensors"),
    "convert --output": ("convert", "{image}", "-o", "{fifo.safetensors}"),
    "benchmark --config": ("benchmark", "--config", "{fifo.yaml}"),
    "benchmark --checkpoint": ("benchmark", "--checkpoint", "{fifo.safetensors}", "--size", "64"),
    "demo --config": ("demo", "--quick", "--config", "{fifo.yaml}", "--output", "{out}/demo"),
    "demo --output": ("demo", "--quick", "--output", "{fifo}"),
    "synth OUTPUT": ("synth", "{fifo}", "--pairs", "3", "--size", "64"),
}


def _fifo_command(case: str, material: dict[str, Path], tmp_path: Path) -> tuple[list[str], Path]:
    out = tmp_path / "out"
    out.mkdir()
    args, fifo = [], None
    for arg in FIFO_CASES[case]:
        if arg.startswith("{fifo"):
            if arg == "{fifo-folder}":
                folder = tmp_path / "store"
                folder.mkdir()
                fifo = folder / "mmchange_captions.jsonl"
                arg = str(folder)
            else:
                fifo = tmp_path / f"fifo{arg[5:-1]}"
                arg = str(fifo)
            os.mkfifo(fifo)
        else:
            arg = arg.format(out=out, **{key: str(value) for key, value in material.items()})
        args.append(arg)
    assert fifo is not None
    return args, fifo


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("case", FIFO_CASES)
def test_a_fifo_given_for_a_file_option_is_refused_without_blocking(case: str, material, tmp_path: Path,
                                                                     cli) -> None:
    args, fifo = _fifo_command(case, material, tmp_path)
    inputs = [material[key] for key in ("a", "b", "image", "text", "onnx", "data")]
    before = digests(*inputs)
    with released(fifo) as blocked:
        result = cli(*args)
    assert not blocked, f"{case} blocked on the FIFO {fifo}: {result.output}"
    line = error_line(result)
    assert str(fifo) in line, line
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left as it was: not replaced, not written
    assert digests(*inputs) == before
    assert [name for name in files_under(tmp_path / "out") if not name.startswith("demo")] == []


# --------------------------------------------------------------------------------------------------
# 8. advice that fits the input


def _unlabelled_list(material: dict[str, Path], folder: Path, suffix: str) -> Path:
    pairs = [(material["data"] / "test" / "A" / name.name, material["data"] / "test" / "B" / name.name)
             for name in sorted((material["data"] / "test" / "A").iterdir())]
    path = folder / f"pairs{suffix}"
    if suffix == ".csv":
        path.write_text("image_a,image_b\n" + "".join(f"{a},{b}\n" for a, b in pairs), encoding="utf-8")
    else:
        path.write_text(json.dumps([{"image_a": str(a), "image_b": str(b), "label": ""} for a, b in pairs]),
                        encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix, expected", [
    (".csv", "{list} has no 'label' column; add one with each pair's label path (relative to {folder})"),
    (".json", "{list} item 1: no label for pair"),
])
def test_eval_of_a_pair_list_without_labels_is_told_about_the_pair_list(suffix: str, expected: str, material,
                                                                         tmp_path: Path, cli) -> None:
    pairs = _unlabelled_list(material, tmp_path, suffix)
    before = digests(pairs, material["data"])
    result = cli("eval", "--checkpoint", material["image"], "--dataset", pairs, "--device", "cpu",
                 "--project", tmp_path / "runs")
    line = error_line(result)
    assert expected.format(list=pairs, folder=tmp_path) in line, line
    assert "'label' folder" not in line
    assert digests(pairs, material["data"]) == before


BRACKETS = 'install it with: pip install "mmchange[tensorboard]" ([bold] stays [/bold] text)'


def test_the_demo_tensorboard_hint_keeps_its_brackets(capsys) -> None:
    """The demo prints the training loop's notes (e.g. the TensorBoard hint) above its progress bars."""
    from mmchange_cli.commands.demo import _make_observer
    from mmchange_core.training.metrics_log import TENSORBOARD_MISSING

    observer = _make_observer()
    observer.on_step(1, 1, "step [x]")
    observer.on_message(TENSORBOARD_MISSING)
    observer.on_message(BRACKETS)
    observer.close()
    printed = capsys.readouterr().err
    assert 'pip install "mmchange[tensorboard]"' in printed and BRACKETS in printed, printed


def test_an_error_naming_a_file_with_brackets_keeps_them(material, tmp_path: Path, cli) -> None:
    missing = tmp_path / "[bold]site [tensorboard].png"
    result = cli("predict", missing, material["b"], "-o", tmp_path / "out" / "mask.png", "--checkpoint",
                 material["image"], "--device", "cpu")
    assert str(missing) in error_line(result)


def test_table_cells_and_titles_keep_brackets_in_the_cli(material, tmp_path: Path, cli) -> None:
    """caption's tables: the title names the dataset, the cells of the failure table name images and errors."""
    data = tmp_path / "[bold]data [tensorboard]"
    odd = "[bold]x [tensorboard].png"
    for split in ("train", "val", "test"):
        for sub in ("A", "B", "label"):
            (data / split / sub).mkdir(parents=True)
            for path in (material["data"] / split / sub).iterdir():
                name = odd if (split, path.name) == ("train", "0000.png") else path.name
                (data / split / sub / name).write_bytes(path.read_bytes())
    (data / "train" / "A" / odd).write_bytes(b"not an image")
    before = digests(data)
    result = cli("caption", "--dataset", data, "--captioner", "basic", "--text-encoder", "hashing",
                 "--captions", tmp_path / "captions.jsonl")
    assert result.exit_code == 1, result.output  # the unreadable image fails the run, the others are captioned
    table = " ".join(result.stdout.split())
    assert f"captions of {data}" in table, result.stdout
    assert f"train/A/{odd}" in table, result.stdout
    assert digests(data) == before
