"""Links and special files planted at the name of an output, a stage or a log are refused, never written through.

The reproduced bug: ``out/.m.png.stage`` linked to the second date's image made ``mmchange predict a.png
b.png -o out/m.png`` exit 0 after writing mask bytes into ``b.png``. Each case plants a link (or a FIFO)
at one name, runs the command and checks: exit 1, one ``error:`` line naming the planted path, the
link target and every input unchanged, the link itself still in place, and no stage or temporary file left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults_helpers import WINDOWS, error_line, hashes, leftovers

#: name of the case -> (extra predict options, the planted path relative to the work folder)
PREDICT_CASES = {
    "mask": ((), "out/m.png"),
    "prob": (("--prob", "out/p.png"), "out/p.png"),
    "overlay": (("--overlay", "out/o.png"), "out/o.png"),
    "vector": (("--vector", "out/v.geojson"), "out/v.geojson"),
    "stac item": (("--stac",), "out/m.stac.json"),
    "report": (("--report", "out/r.html"), "out/r.html"),
    "run manifest": ((), "out/mmchange_manifest.jsonl"),
    "mask stage": ((), "out/.m.png.stage"),
    "invalid-pixel stage": ((), "out/.m.png.invalid.stage"),
    "prob stage": (("--prob", "out/p.tif"), "out/.p.tif.stage"),
}


def _predict(cli, work: Path, pair: tuple[Path, Path], checkpoint: Path, extra: tuple[str, ...]):
    extra = tuple(str(work / e) if e.startswith("out/") else e for e in extra)
    return cli("predict", *pair, "-o", work / "out" / "m.png", "--checkpoint", checkpoint, *WINDOWS, *extra)


@pytest.mark.parametrize("case", sorted(PREDICT_CASES))
def test_predict_refuses_a_link_at_every_output_and_stage_name(case, cli, checkpoint, pair, tmp_path) -> None:
    """A link to a file that is no input (so no collision check catches it) is refused as a link."""
    extra, planted = PREDICT_CASES[case]
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"someone's file\n")
    link = work / planted
    link.symlink_to(victim)
    before = hashes(tmp_path / "in", checkpoint, victim)
    result = _predict(cli, work, pair, checkpoint, extra)
    assert result.exit_code == 1, result.output
    line = error_line(result.output)
    assert str(link) in line and "symbolic link" in line and "remove it" in line, line
    assert hashes(tmp_path / "in", checkpoint, victim) == before  # neither the target nor an input changed
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert leftovers(work) == []


@pytest.mark.parametrize("planted", ["out/.m.png.stage", "out/.m.png.invalid.stage"])
def test_a_stage_link_to_the_second_date_is_refused(planted, cli, checkpoint, pair, tmp_path) -> None:
    """The reported case: the stage name linked to ``b.png`` must not write mask bytes into it."""
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    link = work / planted
    link.symlink_to(pair[1])
    before = hashes(tmp_path / "in", checkpoint)
    result = _predict(cli, work, pair, checkpoint, ())
    assert result.exit_code == 1, result.output
    line = error_line(result.output)
    assert str(link) in line and "symbolic link" in line, line
    assert hashes(tmp_path / "in", checkpoint) == before
    assert link.is_symlink() and leftovers(work) == [] and not (work / "out" / "m.png").exists()


@pytest.mark.parametrize("planted", ["out/.m.png.stage", "out/.m.png.invalid.stage"])
def test_predict_refuses_a_fifo_at_a_stage_name_without_blocking(planted, cli, checkpoint, pair, tmp_path) -> None:
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    fifo = work / planted
    os.mkfifo(fifo)
    result = _predict(cli, work, pair, checkpoint, ())
    assert result.exit_code == 1, result.output
    line = error_line(result.output)
    assert str(fifo) in line and "FIFO" in line, line
    assert leftovers(work) == [] and not (work / "out" / "m.png").exists()


def test_caption_refuses_a_link_at_the_store_name(cli, tmp_path) -> None:
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset
    from tests.text_helpers import make_dataset

    other = make_dataset(tmp_path / "other", pairs=1)  # the user's other dataset and its store: the link's target
    caption_dataset(other, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing"),
                    device="cpu")
    store = other / "mmchange_captions.jsonl"
    root = make_dataset(tmp_path / "ds", pairs=1)
    link = root / "mmchange_captions.jsonl"
    link.symlink_to(store)
    before = hashes(other, root)
    result = cli("caption", "--dataset", root, "--captioner", "basic", "--text-encoder", "hashing", "--device", "cpu")
    assert result.exit_code == 1, result.output
    line = error_line(result.output)
    assert str(link) in line and "symbolic link" in line, line
    assert hashes(other, root) == before and leftovers(root) == []


def test_export_refuses_a_link_at_the_output_name(cli, checkpoint, tmp_path) -> None:
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(b"an older export\n")
    link = tmp_path / "model.onnx"
    link.symlink_to(victim)
    result = cli("export", checkpoint, "-o", link)
    assert result.exit_code == 1, result.output
    line = error_line(result.output)
    assert str(link) in line and "symbolic link" in line, line
    assert victim.read_bytes() == b"an older export\n" and link.is_symlink() and leftovers(tmp_path) == []


def test_checkpoint_and_training_state_saves_refuse_a_link(tmp_path) -> None:
    import torch

    from mmchange_core.errors import OutputError
    from mmchange_core.models import build_model, save_checkpoint

    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep me\n")
    model = build_model("resnet18", "image-only")
    for name in ("best.safetensors", "last.safetensors"):
        link = tmp_path / name
        link.symlink_to(victim)
        with pytest.raises(OutputError, match=f"{link}.* is a symbolic link.*remove it"):
            save_checkpoint(link, model)
    from mmchange_core.io.atomic import atomic_write_bytes

    state = tmp_path / "state.pt"
    state.symlink_to(victim)
    with pytest.raises(OutputError, match="state.pt is a symbolic link"):
        atomic_write_bytes(state, torch.zeros(1).numpy().tobytes())
    assert victim.read_bytes() == b"keep me\n" and leftovers(tmp_path) == []
