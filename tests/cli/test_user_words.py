"""The commands in the user's own words work as written, in one folder, in this order (issue 20, deliverable 6).

    mmchange caption ./levir
    mmchange train --dataset levir   (plus only the options that make it small)
    mmchange predict a.png b.png -o mask.png
    mmchange robustness --noise --light

Each runs as a subprocess of the installed ``mmchange`` in one temporary folder holding ``./levir`` (a
small synthetic LEVIR-like dataset) and ``a.png``/``b.png`` (one test pair), in a CI-like environment
with the network off. No model option is given, so the default text models are used: TinyLLaVA
(``bczhou/tiny-llava-v1-hf``) and open_clip ViT-B-32/openai, found in an offline Hugging Face cache
the way a user who copied pre-downloaded weights there would have them (random weights: this checks
the plumbing, not caption quality).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data_helpers import synth_dataset
from tests.text_helpers.hub_models import (
    DEFAULT_CLIP,
    DEFAULT_VLM,
    default_text_models,  # noqa: F401 (session fixture)
    offline_hub_env,
)

pytestmark = pytest.mark.slow

#: The user's words, verbatim (train gets :data:`SMALL` appended).
CAPTION = "caption ./levir"
TRAIN = "train --dataset levir"
PREDICT = "predict a.png b.png -o mask.png"
ROBUSTNESS = "robustness --noise --light"
#: Only what makes training small: a small random trunk, one epoch of 64 px crops on the CPU. The
#: variant stays the default ``full`` (a text model), so the captions are used.
SMALL = "--backbone resnet18 --no-pretrained --iters 1 --batch-size 2 --crop-size 64 --device cpu --workers 0"
#: Says which checkpoint was used when none was named.
CHOSE = "no --checkpoint given"
#: Says which dataset was used when none was named.
TRAINED_ON = "no --dataset given"


@dataclass
class Ran:
    """One finished command."""

    words: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def stderr_lines(self, text: str) -> list[str]:
        return [line for line in self.stderr.splitlines() if text in line]

    def assert_ok(self) -> None:
        assert self.returncode == 0, f"mmchange {self.words} exited {self.returncode}:\n{self.output}"
        assert "Traceback" not in self.output, self.output


def _mmchange() -> list[str]:
    """The venv's ``mmchange`` entry point (what the user types), else ``python -m mmchange_cli``."""
    script = Path(sys.executable).with_name("mmchange")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mmchange_cli"]


def _user_env(hub: Path, data_home: Path) -> dict[str, str]:
    """CI-like, offline, nothing from the developer's Hugging Face or mmchange settings leaking in."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_", "MMCHANGE_"))}
    env.update(offline_hub_env(hub), CI="true", NO_COLOR="1", PYTHONUNBUFFERED="1",
               # `--dataset levir` must find ./levir, not $MMCHANGE_DATA/LEVIR-CD: point that at an empty folder
               MMCHANGE_DATA=str(data_home))
    if "MMCHANGE_CACHE" in os.environ:  # the tests' private cache (tests/conftest.py)
        env["MMCHANGE_CACHE"] = os.environ["MMCHANGE_CACHE"]
    return env


def _cpu_of_children() -> float:
    """CPU seconds of finished subprocesses (0 where the resource module is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(words: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> Ran:
    start, cpu = time.perf_counter(), _cpu_of_children()
    done = subprocess.run([*_mmchange(), *shlex.split(words)], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    ran = Ran(words, done.returncode, done.stdout, done.stderr, time.perf_counter() - start,
              _cpu_of_children() - cpu)
    print(f"mmchange {words}: exit {ran.returncode}, {ran.seconds:.1f} s wall, {ran.cpu_seconds:.1f} s CPU")
    return ran


@dataclass
class UserFolder:
    """The user's folder after the four commands (stopped at the first that failed)."""

    path: Path
    env: dict[str, str]
    ran: dict[str, Ran] = field(default_factory=dict)

    def result(self, words: str) -> Ran:
        if words not in self.ran:
            failed = "; ".join(f"'{r.words}' exited {r.returncode}" for r in self.ran.values() if r.returncode)
            pytest.fail(f"'mmchange {words}' did not run: an earlier command failed ({failed})")
        return self.ran[words]

    def train_run(self) -> Path:
        runs = sorted((self.path / "runs" / "train").iterdir())
        assert len(runs) == 1, runs
        return runs[0]

    def best(self) -> str:
        """The trained run's best checkpoint, as the commands name it (relative to the folder)."""
        best = self.train_run() / "best.safetensors"
        assert best.is_file()
        return str(best.relative_to(self.path))


@pytest.fixture(scope="module")
def user_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> UserFolder:
    hub = request.getfixturevalue("default_text_models")
    root = tmp_path_factory.mktemp("user_words")
    work, data_home = root / "work", root / "no_data_here"
    work.mkdir()
    data_home.mkdir()
    levir = synth_dataset(work / "levir", pairs=6, size=64, seed=3)  # train 4, val 1, test 1
    test_pair = min((levir / "test" / "A").glob("*.png")).name
    shutil.copy(levir / "test" / "A" / test_pair, work / "a.png")
    shutil.copy(levir / "test" / "B" / test_pair, work / "b.png")
    folder = UserFolder(work, _user_env(hub, data_home))
    for words in (CAPTION, f"{TRAIN} {SMALL}", PREDICT, ROBUSTNESS, f"{PREDICT} --json"):
        ran = folder.ran[words] = _run(words, work, folder.env)
        if ran.returncode != 0:
            break
    return folder


def test_caption_takes_the_positional_folder(user_folder: UserFolder) -> None:
    ran = user_folder.result(CAPTION)
    ran.assert_ok()
    assert "deprecat" not in ran.output.lower(), ran.output
    assert f"by vlm {DEFAULT_VLM}" in ran.stdout  # the default captioner, from the offline cache
    assert (user_folder.path / "levir" / "mmchange_captions.jsonl").is_file()


def test_train_finds_levir_in_the_working_folder(user_folder: UserFolder) -> None:
    from mmchange_core.inference.backends import read_model_meta

    user_folder.result(f"{TRAIN} {SMALL}").assert_ok()
    meta = read_model_meta(user_folder.path / user_folder.best())
    assert meta.training["dataset"] == "levir"  # the user's word, resolved again by later commands
    store = user_folder.path / "levir" / "mmchange_captions.jsonl"  # ./levir, not $MMCHANGE_DATA/LEVIR-CD
    assert Path(meta.training["caption_store"]["path"]).resolve() == store.resolve()
    assert meta.model.variant == "full"  # a text model: the captions matter
    assert meta.text_description["captioner"]["model"] == DEFAULT_VLM
    encoder = meta.text_description["encoder"]
    assert (encoder["name"], encoder["model"], encoder["pretrained"]) == ("clip", *DEFAULT_CLIP)
    # the run ends with the best checkpoint's certified int8 export, for CPUs
    best = user_folder.path / user_folder.best()
    record = json.loads(best.with_name("best.int8.json").read_text())
    assert record["certificate"]["checkpoint_sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert best.with_name("best.int8.onnx").is_file() and "'val' split" in record["certificate"]["held_out"]


def test_predict_uses_the_latest_run_and_says_so(user_folder: UserFolder) -> None:
    ran = user_folder.result(PREDICT)
    ran.assert_ok()
    chose = ran.stderr_lines(CHOSE)
    assert len(chose) == 1 and user_folder.best() in chose[0], ran.stderr
    with Image.open(user_folder.path / "a.png") as image_a:
        size = image_a.size
    with Image.open(user_folder.path / "mask.png") as mask_image:
        assert mask_image.size == size and mask_image.mode == "L"
        mask = np.asarray(mask_image)
    assert set(np.unique(mask).tolist()) <= {0, 255}


def test_predict_json_rerun_records_the_chosen_checkpoint(user_folder: UserFolder) -> None:
    ran = user_folder.result(f"{PREDICT} --json")
    ran.assert_ok()
    result = json.loads(ran.stdout)  # the one line goes to stderr, the JSON alone to stdout
    best = user_folder.best()
    assert result["checkpoint"] == best and result["settings"]["checkpoint"] == best
    # on this CPU the default precision runs the run's int8 export when its certificate is within the bound
    certificate = json.loads((user_folder.path / best).with_name("best.int8.json").read_text())["certificate"]
    expected = ("onnxruntime", "int8") if certificate["within_bound"] else ("torch", "fp32")
    assert (result["settings"]["backend"], result["settings"]["precision"]) == expected, result["settings"]
    assert CHOSE in result["settings"].get("checkpoint_chosen", ""), result["settings"]
    assert best in result["settings"]["checkpoint_chosen"]
    assert len(ran.stderr_lines(CHOSE)) == 1, ran.stderr
    assert result["status"] == "skipped"  # the same checkpoint chosen again: the finished pair is not redone
    assert len(result["captions"]) == 2 and all(result["captions"])  # both dates captioned by the default VLM
    with Image.open(user_folder.path / "mask.png") as mask_image:
        assert int((np.asarray(mask_image) == 255).sum()) == result["changed_pixels"]


def test_predict_manifest_records_the_chosen_checkpoint(user_folder: UserFolder) -> None:
    user_folder.result(PREDICT).assert_ok()
    lines = (user_folder.path / "mmchange_manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    pair = [r for r in records if r.get("unit") == "mask.png"][-1]["result"]
    assert pair["checkpoint"] == user_folder.best()
    assert CHOSE in pair["settings"]["checkpoint_chosen"]


def test_robustness_uses_the_latest_run_and_its_dataset(user_folder: UserFolder) -> None:
    ran = user_folder.result(ROBUSTNESS)
    ran.assert_ok()
    best = user_folder.best()
    chose = ran.stderr_lines(CHOSE)
    assert len(chose) == 1 and best in chose[0], ran.stderr
    trained_on = ran.stderr_lines(TRAINED_ON)
    assert len(trained_on) == 1 and "using levir" in trained_on[0] and "trained on" in trained_on[0], ran.stderr
    assert any(line.startswith("dataset levir:") for line in ran.stderr.splitlines()), ran.stderr
    runs = sorted((user_folder.path / "runs" / "robustness").iterdir())
    assert len(runs) == 1
    written = json.loads((runs[0] / "robustness.json").read_text())
    assert [row["condition"] for row in written["rows"]] == ["clean", "noise", "light", "noise+light"]
    assert written["dataset"] == "levir"  # the dataset the checkpoint was trained on, recorded
    assert written["detectors"][0]["checkpoint"] == best
    assert CHOSE in written["detectors"][0].get("checkpoint_chosen", ""), written["detectors"][0]
    assert best in written["detectors"][0]["checkpoint_chosen"]


def test_predict_without_any_run_says_to_train_first(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a folder with no training run, the user's predict is refused in one line and writes nothing.

    Run in-process (it stops before any model is loaded, so a subprocess would only add imports).
    """
    pixels = np.zeros((64, 64, 3), np.uint8)
    for name in ("a.png", "b.png"):  # the images are there: only the model is missing
        Image.fromarray(pixels).save(tmp_path / name)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    result = cli(*shlex.split(PREDICT))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "mmchange train" in lines[0] and "--checkpoint" in lines[0], lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
