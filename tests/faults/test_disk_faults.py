"""A full disk, an exhausted quota and a read-only folder: one line naming the path and what to do, exit 1,
no stage or temporary file left, no input or finished output changed.

The full disk is a small tmpfs mounted where the test runs (root only: skipped with the reason otherwise);
the read-only folder is a tmpfs remounted read-only as root (root ignores permission bits), else chmod.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from mmchange_core.inference.manifest import MANIFEST_NAME
from tests.faults_helpers import BLOCKS, WINDOWS, error_line, fill, hashes, leftovers, read_only, tmpfs


def _whole_lines(path: Path) -> None:
    """Every line of a log is one whole JSON object (no torn line was left by the failed write)."""
    if path.exists():
        for line in path.read_bytes().splitlines():
            assert isinstance(json.loads(line.decode("utf-8")), dict), line


@pytest.mark.parametrize("free_kib", [24, 72])
def test_predict_on_a_full_disk_names_the_path_and_leaves_nothing(free_kib, cli, checkpoint, pair, tmp_path) -> None:
    """24 KiB: the stages fill the disk (in the writer thread); 72 KiB: the final files do (GDAL)."""
    with tmpfs(tmp_path / "disk", "256k") as disk:
        out = disk / "out"
        out.mkdir()
        fill(disk, leave=free_kib * 1024)
        before = hashes(tmp_path / "in", checkpoint)
        result = cli("predict", *pair, "-o", out / "m.png", "--prob", out / "p.tif", "--checkpoint", checkpoint,
                     *WINDOWS, *BLOCKS)
        assert result.exit_code == 1, result.output
        line = error_line(result.output)
        assert f"no space left on the device of {out}" in line and "free space on it or write elsewhere" in line, line
        assert str(out / "m.png") in line or str(out / "p.tif") in line or str(out / MANIFEST_NAME) in line, line
        assert leftovers(out) == [] and not (out / "p.tif").exists()  # the mask may be finished, not the pair:
        _whole_lines(out / MANIFEST_NAME)
        if (out / MANIFEST_NAME).exists():  # the pair is not recorded as done, so a rerun does it again
            units = [json.loads(line)["unit"] for line in (out / MANIFEST_NAME).read_bytes().splitlines()]
            assert "m.png" not in units, units
        assert hashes(tmp_path / "in", checkpoint) == before


def test_caption_store_on_a_full_disk_names_the_store(cli, tmp_path) -> None:
    from tests.text_helpers import make_dataset

    root = make_dataset(tmp_path / "ds", pairs=2)
    images = hashes(root)
    with tmpfs(tmp_path / "disk", "64k") as disk:
        store = disk / "captions.jsonl"
        fill(disk, leave=0)
        result = cli("caption", "--dataset", root, "--captioner", "basic", "--text-encoder", "hashing",
                     "--device", "cpu", "--captions", store)
        assert result.exit_code == 1, result.output
        line = error_line(result.output)
        assert f"no space left on the device of {disk}" in line and str(store) in line and "free space" in line, line
        _whole_lines(store)
        assert leftovers(disk) == []
    assert hashes(root) == images


def test_a_full_disk_during_an_atomic_write_keeps_the_old_file(tmp_path) -> None:
    from mmchange_core.errors import OutputError
    from mmchange_core.io.atomic import atomic_write_bytes

    with tmpfs(tmp_path / "disk", "64k") as disk:
        report = disk / "report.html"
        report.write_bytes(b"the previous report")
        fill(disk, leave=8192)
        with pytest.raises(OutputError) as info:
            atomic_write_bytes(report, b"x" * 100_000)
        message = str(info.value)
        assert message == (f"no space left on the device of {disk} while writing {report}; "
                           f"free space on it or write elsewhere")
        assert report.read_bytes() == b"the previous report" and leftovers(disk) == []


def test_a_quota_error_names_the_path_and_what_to_free(tmp_path, monkeypatch) -> None:
    """EDQUOT cannot be produced without quota tools: the write itself is made to fail with it."""
    from mmchange_core.errors import OutputError
    from mmchange_core.inference.manifest import RunManifest
    from mmchange_core.io import atomic

    real_write = os.write

    def over_quota(fd: int, data) -> int:
        if os.fstat(fd).st_size >= 0 and len(data) > 10:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        return real_write(fd, data)

    target = tmp_path / "out" / "metrics.json"
    manifest = RunManifest(tmp_path / "out")
    manifest.append("a.png", "f1")
    before = manifest.path.read_bytes()
    monkeypatch.setattr(os, "write", over_quota)
    with pytest.raises(OutputError) as info:
        atomic.atomic_write_bytes(target, b"{}" * 100)
    assert str(info.value) == (f"disk quota exceeded in {target.parent} while writing {target}; "
                               f"free space within your quota or write elsewhere")
    with pytest.raises(OutputError, match=f"disk quota exceeded in .* while writing {manifest.path}"):
        manifest.append("b.png", "f2")
    monkeypatch.undo()
    assert manifest.path.read_bytes() == before and not target.exists() and leftovers(tmp_path) == []


def test_predict_into_a_read_only_folder(cli, checkpoint, pair, tmp_path) -> None:
    with read_only(tmp_path / "ro") as folder:
        before = hashes(tmp_path / "in", checkpoint)
        result = cli("predict", *pair, "-o", folder / "m.png", "--checkpoint", checkpoint, *WINDOWS)
        assert result.exit_code == 1, result.output
        line = error_line(result.output)
        assert str(folder) in line and ("read-only" in line or "permission" in line) and "elsewhere" in line, line
        assert list(folder.iterdir()) == []
    assert hashes(tmp_path / "in", checkpoint) == before


def test_caption_and_eval_into_a_read_only_folder(cli, checkpoint, tmp_path) -> None:
    from tests.text_helpers import make_dataset

    root = make_dataset(tmp_path / "ds", pairs=2, size=64)
    images = hashes(root)
    with read_only(tmp_path / "ro") as folder:
        caption = cli("caption", "--dataset", root, "--captioner", "basic", "--text-encoder", "hashing",
                      "--device", "cpu", "--captions", folder / "captions.jsonl")
        assert caption.exit_code == 1, caption.output
        line = error_line(caption.output)
        assert str(folder) in line and ("read-only" in line or "permission" in line), line
        evaluated = cli("eval", "--checkpoint", checkpoint, "--dataset", root, "--device", "cpu", "--tile-size", "64",
                        "--project", folder / "runs")
        assert evaluated.exit_code == 1, evaluated.output
        line = error_line(evaluated.output)
        assert str(folder) in line and ("read-only" in line or "permission" in line), line
        assert "OSError" not in line and "--debug" not in line, line
        assert list(folder.iterdir()) == []
    assert hashes(root) == images
