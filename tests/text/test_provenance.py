"""Caption provenance: every command checks each image's sha256 against its caption record before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mmchange_core.io.hashing as hashing
from mmchange_core.data.layouts import detect_layout
from mmchange_core.evaluation.robustness import RobustnessConfig, run_robustness
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.evaluation.run import EvalOptions, run_evaluation
from mmchange_core.text import CaptionStore, StaleCaptionsError
from mmchange_core.text.features import verify_pair_captions
from mmchange_core.training.loop import train
from tests.data_helpers import caption_basic, synth_dataset, tiny_config


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A captioned dataset and a text checkpoint trained on it."""
    base = tmp_path_factory.mktemp("provenance")
    root = synth_dataset(base / "ds", pairs=8, size=64, text_signal=True)
    caption_basic(root)
    result = train(tiny_config(root, base / "runs", variant="full", iters=1, batch_size=2, val_split=None))
    return root, result.best_checkpoint


def _copy(root: Path, dest: Path) -> Path:
    return Path(shutil.copytree(root, dest))


def _change(path: Path) -> None:
    image = np.asarray(Image.open(path)).copy()
    image[:8] = 255 - image[:8]
    Image.fromarray(image).save(path)


def test_a_changed_image_stops_eval_train_and_robustness_before_any_run_folder(captioned, tmp_path: Path) -> None:
    root, checkpoint = captioned
    data = _copy(root, tmp_path / "ds")
    test_pair = detect_layout(data).pairs("test")[0]
    _change(test_pair.image_b)
    key = test_pair.relative(data)[1]
    project = tmp_path / "runs"
    attempts = [
        lambda: run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(data), project=str(project), detector=DetectorSettings(device="cpu"))),
        lambda: run_robustness(RobustnessConfig(checkpoints=[str(checkpoint)], dataset=str(data), light=False, project=str(project), detector=DetectorSettings(device="cpu"))),
        lambda: train(tiny_config(data, project, variant="full", iters=1, batch_size=2, val_split="test")),
    ]
    for attempt, images in zip(attempts, (2, 2, 14)):  # test split; test split; train + test (validation)
        with pytest.raises(StaleCaptionsError) as error:
            attempt()
        message = str(error.value)
        assert "\n" not in message and f"1 of {images} captioned image(s) changed" in message
        assert key in message and f"mmchange caption {data} --captioner basic" in message
        assert "--accept-stale-captions" in message and "another dataset" not in message
        assert not project.exists()

    notes: list[str] = []
    accepted = run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(data), project=str(project), accept_stale_captions=True, detector=DetectorSettings(device="cpu")), message=notes.append)
    assert accepted.run_dir.is_dir() and any("1 image(s) that changed" in n and key in n for n in notes)

    report = caption_basic_report(data)  # the command the error names re-captions only the changed image
    assert (report.captioned, report.skipped + report.reused) == (1, report.images - 1)
    assert run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(data), project=str(project), detector=DetectorSettings(device="cpu"))).run_dir.is_dir()


def caption_basic_report(root: Path):
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    return caption_dataset(root, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing"),
                           device="cpu")


def test_the_store_of_another_dataset_is_refused(captioned, tmp_path: Path, cli) -> None:
    root, checkpoint = captioned
    other = synth_dataset(tmp_path / "other", pairs=8, size=64, seed=11, text_signal=True)
    result = cli("eval", "--checkpoint", checkpoint, "--dataset", other, "--device", "cpu",
                 "--captions", root / "mmchange_captions.jsonl", "--project", tmp_path / "runs")
    assert result.exit_code != 0 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "2 of 2 captioned image(s) changed" in text and "another dataset" in text, result.output
    assert not (tmp_path / "runs").exists()
    accepted = cli("eval", "--checkpoint", checkpoint, "--dataset", other, "--device", "cpu", "--json",
                   "--captions", root / "mmchange_captions.jsonl", "--project", tmp_path / "runs",
                   "--accept-stale-captions")
    assert accepted.exit_code == 0, accepted.output


def test_each_image_is_hashed_once_while_it_stays_the_same(captioned, tmp_path: Path, monkeypatch) -> None:
    root, _ = captioned
    data = _copy(root, tmp_path / "ds")
    store = CaptionStore.open(data)
    pairs = detect_layout(data).pairs("train")
    hashed: list[Path] = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda path, size=None: hashed.append(Path(path)) or real(path, size))
    verify_pair_captions(store, data, pairs)
    verify_pair_captions(store, data, pairs)
    assert len(hashed) == 2 * len(pairs) == len(set(hashed))
    _change(pairs[0].image_a)
    with pytest.raises(StaleCaptionsError, match=pairs[0].relative(data)[0]):
        verify_pair_captions(store, data, pairs)
    assert hashed[-1] == pairs[0].image_a and len(hashed) == 2 * len(pairs) + 1
