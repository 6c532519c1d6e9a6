"""int8 on the CPU: made once from a calibration set, certified, cached; stale, corrupt and poor exports never used.

The tiny checkpoints and their fp32 exports come from ``tests/onnx_helpers`` (made once per session); each
test has its own int8 cache (``$MMCHANGE_CACHE``), seeded with that fp32 export, so a test only quantises,
certifies and runs (a few seconds), as a user's second calibration of the same checkpoint does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")

from tests.data_helpers import synth_dataset  # noqa: E402
from tests.onnx_helpers import exported  # noqa: E402
from tests.series_helpers.fixtures import synthetic_detector  # noqa: E402, F401 (a fixture)

from mmchange_core.errors import InputError  # noqa: E402
from mmchange_core.inference import int8  # noqa: E402
from mmchange_core.inference.backends import update_model_meta  # noqa: E402
from mmchange_core.inference.detector import ChangeDetector  # noqa: E402
from mmchange_core.models import save_checkpoint  # noqa: E402
from mmchange_core.models.checkpoint import load_checkpoint  # noqa: E402
from mmchange_core.models.int8_record import BOUND_AGREEMENT, int8_files, record_of  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """12 synthetic pairs of 64 px: train 8, val 2, test 2; captioned for the tiny text model (hashing, 64 wide)."""
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    root = synth_dataset(tmp_path_factory.mktemp("int8") / "data", pairs=12, size=64)
    caption_dataset(root, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing", dim=64),
                    device="cpu")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private mmchange cache for this test, seeded with the session's fp32 export of the image-only model."""
    home = tmp_path / "cache"
    monkeypatch.setenv("MMCHANGE_CACHE", str(home))
    image = exported("image")
    target = int8.Int8Cache().fp32_path(_sha256(image.checkpoint))
    target.parent.mkdir(parents=True)
    shutil.copyfile(image.onnx, target)
    return home / "int8"


def _checkpoint(tmp_path: Path, kind: str = "image") -> Path:
    """A copy of the session's tiny checkpoint (same bytes: its fp32 export is the cached one)."""
    path = tmp_path / f"{kind}.safetensors"
    shutil.copyfile(exported(kind).checkpoint, path)
    return path


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.int8.onnx"))


def test_int8_is_made_once_certified_cached_and_recorded(tmp_path, cache, dataset, monkeypatch) -> None:
    checkpoint = _checkpoint(tmp_path)
    said: list[str] = []
    detector = ChangeDetector.load(checkpoint, precision="int8", calibrate=str(dataset), device="cpu", warn=said.append)
    assert (detector.backend, detector.settings.precision) == ("onnxruntime", "int8")
    assert any("making the int8 export" in line for line in said)
    record = detector.record()
    certificate = record["int8"]["certificate"]
    assert certificate["checkpoint_sha256"] == _sha256(checkpoint)  # bound to this very file
    assert certificate["labelled"] and certificate["f1_fp32"] is not None and certificate["f1_int8"] is not None
    assert "'val' split" in certificate["held_out"] and certificate["calibration_windows"] == 8
    assert certificate["agreement"] >= BOUND_AGREEMENT and certificate["within_bound"]
    [entry] = _entries(cache)
    assert record["int8"]["sha256"] == _sha256(entry)
    assert json.loads(record_of(entry).read_text())["onnx_sha256"] == _sha256(entry)

    # made once: later loads read the cache (making again would fail here)
    monkeypatch.setattr(int8, "make_int8", lambda *a, **k: pytest.fail("the cached int8 export was made again"))
    again = ChangeDetector.load(checkpoint, precision="int8", calibrate=str(dataset), device="cpu")
    assert again.record()["int8"]["sha256"] == record["int8"]["sha256"]
    # --precision auto on a CPU runs the certified export; fp32 stays the torch network
    assert ChangeDetector.load(checkpoint, device="cpu").settings.precision == "int8"
    assert ChangeDetector.load(checkpoint, device="cpu", precision="fp32").backend == "torch"

    # one backend and precision: the API and predict give the same mask, bit for bit
    pair = next((dataset / "test" / "A").iterdir())
    result = again.predict(pair, dataset / "test" / "B" / pair.name)
    from mmchange_core.inference.predict import PredictConfig, predict_paths
    from mmchange_core.inference.settings import DetectorSettings

    out = tmp_path / "mask.png"
    predicted = predict_paths(checkpoint, pair, dataset / "test" / "B" / pair.name, out,
                              config=PredictConfig(detector=DetectorSettings(device="cpu", precision="int8")))
    assert predicted.settings["int8"]["sha256"] == record["int8"]["sha256"]
    with Image.open(out) as mask:
        assert np.array_equal(np.asarray(mask) > 0, result.mask)
    # ... and eval (its --save-pred masks, its metrics.json record)
    from mmchange_core.evaluation.run import EvalOptions, run_evaluation
    from mmchange_core.inference.predict import pair_name

    saved = tmp_path / "eval-masks"
    report = run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(dataset), save_pred=str(saved),
                                        project=str(tmp_path / "runs"),
                                        detector=DetectorSettings(device="cpu", precision="int8")))
    assert report.summary["detector"]["int8"]["sha256"] == record["int8"]["sha256"]
    with Image.open(saved / f"{pair_name(pair, dataset / 'test' / 'B' / pair.name)}.png") as mask:
        assert np.array_equal(np.asarray(mask) > 0, result.mask)


def test_two_processes_share_one_export(tmp_path, cache, dataset) -> None:
    checkpoint = _checkpoint(tmp_path)
    script = ("import json, sys\n"
              "from mmchange_core.inference.detector import ChangeDetector\n"
              "said = []\n"
              "d = ChangeDetector.load(sys.argv[1], precision='int8', calibrate=sys.argv[2], device='cpu', "
              "warn=said.append)\n"
              "print(json.dumps({'file': d.record()['int8']['file'], 'made': any('making' in s for s in said)}))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(checkpoint), str(dataset)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sorted(r["made"] for r in results) == [False, True]  # one made it, the other waited and read it
    assert results[0]["file"] == results[1]["file"]
    assert len(_entries(cache)) == 1 and not list(cache.glob(".*"))  # no temporaries left


def _made(tmp_path: Path, dataset: Path) -> tuple[Path, Path]:
    checkpoint = _checkpoint(tmp_path)
    ChangeDetector.load(checkpoint, precision="int8", calibrate=str(dataset), device="cpu")
    return checkpoint, _entries(int8.Int8Cache().folder)[0]


def test_stale_and_corrupt_entries_are_made_again_never_used(tmp_path, cache, dataset) -> None:
    checkpoint, entry = _made(tmp_path, dataset)

    def load() -> tuple[ChangeDetector, list[str]]:
        said: list[str] = []
        return ChangeDetector.load(checkpoint, precision="int8", calibrate=str(dataset), device="cpu",
                                   warn=said.append), said

    record = json.loads(record_of(entry).read_text())
    record["certificate"]["checkpoint_sha256"] = "0" * 64  # the entry says it was made from another checkpoint
    record_of(entry).write_text(json.dumps(record))
    detector, said = load()
    assert any("stale" in line and "made again" in line for line in said), said
    assert any("making the int8 export" in line for line in said)
    assert detector.record()["int8"]["certificate"]["checkpoint_sha256"] == _sha256(checkpoint)

    [entry] = _entries(cache)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the graph
    entry.write_bytes(bytes(data))
    detector, said = load()
    assert any("corrupt" in line and "made again" in line for line in said), said
    [rebuilt] = _entries(cache)
    assert detector.record()["int8"]["sha256"] == _sha256(rebuilt)
    assert json.loads(record_of(rebuilt).read_text())["onnx_sha256"] == _sha256(rebuilt)

    record_of(rebuilt).write_text(record_of(rebuilt).read_text()[:40])  # a record cut short
    said = []
    key = rebuilt.name[:64]
    assert int8.Int8Cache().read(key, _sha256(checkpoint), said.append) is None
    assert any("corrupt" in line for line in said) and not rebuilt.exists() and not record_of(rebuilt).exists()


def test_the_export_beside_a_checkpoint_follows_its_weights_not_its_name(tmp_path, cache, dataset) -> None:
    checkpoint, entry = _made(tmp_path, dataset)
    beside, record = int8_files(checkpoint)  # as train writes it: image.int8.onnx + image.int8.json
    shutil.copyfile(entry, beside)
    shutil.copyfile(record_of(entry), record)
    shutil.rmtree(cache)
    assert ChangeDetector.load(checkpoint, device="cpu").record()["int8"]["file"] == str(beside)
    # a tuned threshold rewrites the checkpoint's metadata, not its weights: the export stays bound to it
    update_model_meta(checkpoint, threshold=0.3)
    tuned = ChangeDetector.load(checkpoint, device="cpu")
    assert tuned.settings.precision == "int8" and tuned.threshold == pytest.approx(0.3)
    # push stages the export with the card, its record bound to the staged weights
    pytest.importorskip("huggingface_hub")
    from mmchange_core.models.push import write_model_folder

    folder = write_model_folder(checkpoint, tmp_path / "hub", repo_id="someone/model").folder
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.yaml", "model.int8.json",
                                                         "model.int8.onnx", "model.safetensors"]
    staged = json.loads((folder / "model.int8.json").read_text())
    assert staged["certificate"]["checkpoint_sha256"] == _sha256(folder / "model.safetensors")
    assert staged["onnx_sha256"] == _sha256(folder / "model.int8.onnx") == _sha256(beside)
    assert "model.int8.onnx" in (folder / "README.md").read_text()
    assert ChangeDetector.load(folder / "model.safetensors", device="cpu").settings.precision == "int8"
    # new weights under the same name: the old export is never used
    model, meta = load_checkpoint(checkpoint)
    for parameter in model.parameters():
        parameter.data.add_(0.01)
    save_checkpoint(checkpoint, model, meta)
    said: list[str] = []
    assert ChangeDetector.load(checkpoint, device="cpu", warn=said.append).backend == "torch"
    assert any("another version of the checkpoint" in line for line in said), said


@pytest.fixture(scope="module")
def trained(synthetic_detector, tmp_path_factory) -> tuple[Path, Path, Path]:
    """The session's trained detector, its training data and an fp32-export cache for it: (checkpoint, data, cache)."""
    from mmchange_core.inference.backends import export_model_file
    from mmchange_core.models.checkpoint import read_checkpoint_meta

    home = tmp_path_factory.mktemp("trained-cache")
    target = int8.Int8Cache(home / "int8").fp32_path(_sha256(synthetic_detector))
    export_model_file(synthetic_detector, target)
    return synthetic_detector, Path(read_checkpoint_meta(synthetic_detector).training["dataset"]), home


@pytest.fixture(scope="module")
def poor_dataset(trained, tmp_path_factory) -> Path:
    """The trained detector's own pairs, with a train split of flat grey images: a calibration that sees nothing
    like the data (and the same labelled val split to be measured on)."""
    _, data, _ = trained
    root = tmp_path_factory.mktemp("poor") / "data"
    shutil.copytree(data / "val", root / "val")
    for split in ("train",):
        for sub in ("A", "B", "label"):
            (root / split / sub).mkdir(parents=True)
        for path in sorted((data / split / "A").iterdir())[:16]:
            grey = Image.new("RGB", Image.open(path).size, (128, 128, 128))
            grey.save(root / split / "A" / path.name)
            grey.save(root / split / "B" / path.name)
            shutil.copyfile(data / split / "label" / path.name, root / split / "label" / path.name)
    return root


def test_a_trained_model_is_certified_and_a_poor_calibration_refused(tmp_path, trained, poor_dataset, cli,
                                                                      monkeypatch) -> None:
    checkpoint, data, home = trained
    monkeypatch.setenv("MMCHANGE_CACHE", str(home))
    # calibrated on its training split (the default: the dataset its metadata records), measured on val
    good = ChangeDetector.load(checkpoint, precision="int8", device="cpu")
    certificate = good.record()["int8"]["certificate"]
    assert certificate["within_bound"] and certificate["f1_fp32"] > 0.5, certificate
    assert str(data) in certificate["calibration"] and "'val' split" in certificate["held_out"]
    with pytest.raises(InputError) as info:
        ChangeDetector.load(checkpoint, precision="int8", calibrate=str(poor_dataset), device="cpu")
    message = str(info.value)
    assert "below the accuracy bound" in message and "agreement with fp32" in message and "F1" in message
    assert "--accept-int8-drift" in message and "\n" not in message
    # the CLI: one line, exit 1, nothing written; with the override it runs and says so
    pair = sorted((poor_dataset / "val" / "A").iterdir())[0]
    out = tmp_path / "out" / "mask.png"
    args = ["predict", pair, poor_dataset / "val" / "B" / pair.name, "-o", out, "--checkpoint", checkpoint,
            "--device", "cpu", "--precision", "int8", "--calibrate", poor_dataset]
    refused = cli(*args)
    assert refused.exit_code == 1 and "below the accuracy bound" in refused.output and not out.exists()
    assert "Traceback" not in refused.output
    accepted = cli(*args, "--accept-int8-drift", "--json")
    assert accepted.exit_code == 0, accepted.output
    assert "below the accuracy bound (--accept-int8-drift)" in accepted.output
    settings = json.loads(accepted.stdout)["settings"]
    assert settings["precision"] == "int8" and settings["int8"]["certificate"]["within_bound"] is False


def test_int8_refusals_are_one_line(tmp_path, cache, dataset, cli, monkeypatch) -> None:
    checkpoint = _checkpoint(tmp_path)  # its metadata records no training dataset
    pair = sorted((dataset / "test" / "A").iterdir())[0]
    out = tmp_path / "mask.png"
    result = cli("predict", pair, dataset / "test" / "B" / pair.name, "-o", out, "--checkpoint", checkpoint,
                 "--device", "cpu", "--precision", "int8")
    assert result.exit_code == 1 and "needs calibration data" in result.output and "--calibrate" in result.output
    assert not out.exists() and "Traceback" not in result.output
    import torch

    monkeypatch.setattr(int8, "resolve_device", lambda spec: torch.device("cuda:0"))
    with pytest.raises(InputError, match="--precision int8 runs on the CPU"):
        ChangeDetector.load(checkpoint, precision="int8", calibrate=str(dataset), device="cuda")
    with pytest.raises(InputError, match="int8 runs the checkpoint's calibrated int8 export"):
        model, meta = load_checkpoint(checkpoint)
        ChangeDetector(model, meta, precision="int8")


def test_a_text_model_runs_at_int8_and_a_converted_one_is_refused(tmp_path, monkeypatch, dataset) -> None:
    monkeypatch.setenv("MMCHANGE_CACHE", str(tmp_path / "cache"))
    text = exported("text")
    target = int8.Int8Cache().fp32_path(_sha256(text.checkpoint))
    target.parent.mkdir(parents=True)
    shutil.copyfile(text.onnx, target)
    checkpoint = _checkpoint(tmp_path, "text")
    detector = ChangeDetector.load(checkpoint, precision="int8", calibrate=str(dataset), device="cpu")
    assert detector.uses_text and detector.settings.precision == "int8"
    assert detector.record()["int8"]["certificate"]["labelled"]
    pair = sorted((dataset / "test" / "A").iterdir())[0]
    result = detector.predict(pair, dataset / "test" / "B" / pair.name, captions=["a field", "a field with houses"])
    fp32 = ChangeDetector.load(checkpoint, precision="fp32", device="cpu").predict(
        pair, dataset / "test" / "B" / pair.name, captions=["a field", "a field with houses"])
    assert np.abs(result.probability - fp32.probability).max() < 0.05
    # an authors' checkpoint converted by mmchange records no text pipeline: calibration cannot caption its pairs
    model, meta = load_checkpoint(checkpoint)
    import dataclasses

    converted = save_checkpoint(tmp_path / "converted.safetensors", model, dataclasses.replace(meta, text_description=None))
    with pytest.raises(InputError, match="records no text pipeline") as info:
        ChangeDetector.load(converted, precision="int8", calibrate=str(dataset), device="cpu")
    assert "\n" not in str(info.value)


def test_the_cache_keeps_to_its_size_limit_and_clears(tmp_path, monkeypatch, cli) -> None:
    monkeypatch.setenv("MMCHANGE_CACHE", str(tmp_path / "cache"))
    cache = int8.Int8Cache(limit=2500)
    cache.folder.mkdir(parents=True)
    for i, key in enumerate("abc"):
        path = cache.path(key * 64)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + i, 1000 + i))  # a is the least recently used
    cache.make_room(1000)
    assert [p.name[0] for p in _entries(cache.folder)] == ["c"]
    listed = cli("cache", "int8", "--json")
    assert json.loads(listed.stdout)[0]["entries"] == 1
    cleared = cli("cache", "int8", "--clear", "--json")
    assert cleared.exit_code == 0 and json.loads(cleared.stdout)[0]["entries"] == 1
    assert not _entries(cache.folder)
    monkeypatch.setenv(int8.LIMIT_ENV, "lots")
    with pytest.raises(InputError, match="MMCHANGE_INT8_CACHE_GB='lots' is not a size in GB"):
        int8.Int8Cache()


def test_reports_say_which_backend_and_precision_ran_and_the_certificate() -> None:
    from mmchange_core.models.int8_record import Int8Certificate
    from mmchange_core.reporting.report import run_header, runtime_text

    certificate = Int8Certificate(checkpoint_sha256="a" * 64, calibration="8 windows of 'train' of data",
                                  calibration_windows=8, held_out="4 windows of the labelled 'val' split of data",
                                  labelled=True, windows=4, pixels=16384, agreement=0.99875, f1_fp32=0.9012,
                                  f1_int8=0.9008)
    record = {"backend": "onnxruntime", "precision": "int8", "device": "cpu",
              "int8": {"file": "x.int8.onnx", "sha256": "b" * 64, "certificate": certificate.to_dict()}}
    text = runtime_text(record)
    assert text.startswith("onnxruntime int8 on cpu (certified: agreement with fp32 99.88%")
    assert "F1 0.9008 vs fp32 0.9012" in text and "'val' split" in text
    assert run_header("predict", config={"detector": record}).fields["runtime"] == text
    below = {**record, "int8": {**record["int8"], "certificate": {**certificate.to_dict(), "within_bound": False}}}
    assert "below the bound, accepted" in runtime_text(below)
    assert runtime_text({"backend": "torch", "precision": "fp32", "device": "cpu"}) == "torch fp32 on cpu"
    # the bound: agreement below 99.5 %, or F1 more than 0.005 under fp32's
    assert certificate.within_bound
    assert "below 99.5%" in Int8Certificate(**{**vars(certificate), "agreement": 0.99}).problem()
    assert "more than 0.005 lower" in Int8Certificate(**{**vars(certificate), "f1_int8": 0.89}).problem()
