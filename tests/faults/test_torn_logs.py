"""Torn and undecodable tails of the append-only logs: the predict run manifest and the caption store.

A kill in the middle of an append leaves a last line without its newline. The reader ignores it with
one warning naming the file and the line; the next append starts on a fresh line, so the new record
is not glued to the torn one and lost (which made a finished pair be predicted again, every run).
"""

from __future__ import annotations

import json
from pathlib import Path

from mmchange_core.inference.manifest import MANIFEST_NAME
from tests.faults_helpers import WINDOWS, hashes, leftovers, write_pair


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


def _statuses(output: str) -> list[str]:
    return [pair["status"] for pair in json.loads(output[output.index("{"):])["pairs"]]


def test_a_torn_manifest_tail_costs_one_redo_not_one_per_run(cli, checkpoint, tmp_path) -> None:
    for name, seed in (("a.png", 1), ("b.png", 2)):
        write_pair(tmp_path / "in", name, height=64, seed=seed)
    out = tmp_path / "out"
    args = ("predict", tmp_path / "in" / "A", tmp_path / "in" / "B", "-o", out, "--checkpoint", checkpoint,
            *WINDOWS, "--json")
    first = cli(*args)
    assert first.exit_code == 0 and _statuses(first.output) == ["ok", "ok"], first.output
    manifest = out / MANIFEST_NAME
    data = manifest.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    manifest.write_bytes(data[:last + 40])  # b's record, cut by a kill 40 bytes in: line 2 of the file
    inputs = hashes(tmp_path / "in", checkpoint)

    second = cli(*args)  # b is done again (its record is lost) and recorded on a fresh line
    assert second.exit_code == 0 and _statuses(second.output) == ["skipped", "ok"], second.output
    warned = _warnings(second.output)
    assert len(warned) == 1 and str(manifest) in warned[0] and "line 2" in warned[0], second.output
    finished = hashes(out)
    third = cli(*args)  # nothing left to do: b's new record counts
    assert third.exit_code == 0 and _statuses(third.output) == ["skipped", "skipped"], third.output
    assert hashes(out) == finished and hashes(tmp_path / "in", checkpoint) == inputs and leftovers(out) == []
    lines = manifest.read_bytes().split(b"\n")
    assert all(isinstance(json.loads(line), dict) for i, line in enumerate(lines) if line and i != 1), lines


def test_a_torn_non_utf8_caption_store_tail_is_one_warning_and_the_next_append_starts_fresh(cli, tmp_path) -> None:
    from tests.text_helpers import make_dataset

    root = make_dataset(tmp_path / "ds", pairs=2)
    args = ("caption", "--dataset", root, "--captioner", "basic", "--text-encoder", "hashing", "--device", "cpu")
    assert cli(*args).exit_code == 0
    store = root / "mmchange_captions.jsonl"
    lines = store.read_bytes().splitlines(keepends=True)
    caption_lines = [i for i, line in enumerate(lines) if b'"type":"caption"' in line]
    cut = caption_lines[-1]  # the last caption record, torn by a kill, its bytes garbled (not UTF-8)
    store.write_bytes(b"".join(lines[:cut]) + lines[cut][:30] + b"\xff\xfe\x80")
    images = hashes(root / "train", root / "test")

    again = cli(*args, "--json")
    assert again.exit_code == 0, again.output
    assert "Traceback" not in again.output and "UnicodeDecodeError" not in again.output
    warned = _warnings(again.output)
    assert len(warned) == 1 and str(store) in warned[0] and f"line {cut + 1}" in warned[0], again.output
    report = json.loads(again.output[again.output.index("{"):])
    assert report["captioned"] == 1, report  # only the image whose record was torn
    for line in store.read_bytes().splitlines():
        assert isinstance(json.loads(line.decode("utf-8")), dict), line  # every line whole again
    assert cli(*args, "--json").exit_code == 0
    assert hashes(root / "train", root / "test") == images


def test_a_checked_line_with_a_changed_byte_is_not_trusted(tmp_path: Path) -> None:
    """A bit flip or a hand edit inside a record fails its checksum; an older line without one still reads."""
    from mmchange_core.io.logfile import read_lines, seal

    good = seal(b'{"v":1,"unit":"m.png#rows0-1","changed":12}')
    edited = good.replace(b'"changed":12', b'"changed":13')
    old_format = b'{"v":1,"unit":"old.png"}\n'
    glued = good[:20] + good
    found = read_lines(good + edited + old_format + glued + good[:25])
    assert [n for n, _ in found.records] == [1, 3] and found.bad == [2, 4, 5] and found.torn_tail
    assert found.records[0][1] == {"v": 1, "unit": "m.png#rows0-1", "changed": 12}
    assert "line 2, 4, 5" in found.describe("m.jsonl", "redone")
