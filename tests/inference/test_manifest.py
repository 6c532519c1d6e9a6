"""The predict run manifest: records, fingerprints, output stamps and a line cut short by a kill."""

from __future__ import annotations

from mmchange_core.inference.manifest import RunManifest, file_stamp, fingerprint, finished


def test_records_last_wins_and_a_cut_line_is_ignored(tmp_path) -> None:
    manifest = RunManifest(tmp_path)
    assert manifest.records() == [] and manifest.latest() == {}
    manifest.append("a.png", "f1", changed=3)
    manifest.append("b.png", "f2")
    manifest.append("a.png", "f3", changed=4)
    with open(manifest.path, "a") as handle:
        handle.write('{"v":1,"unit":"c.png","finger')  # killed while writing
    latest = manifest.latest()
    assert sorted(latest) == ["a.png", "b.png"]
    assert latest["a.png"]["fingerprint"] == "f3" and latest["a.png"]["changed"] == 4
    assert latest["a.png"]["seq"] > latest["b.png"]["seq"]
    manifest.reset()
    assert manifest.latest() == {}


def test_finished_needs_the_same_fingerprint_and_untouched_outputs(tmp_path) -> None:
    out = tmp_path / "mask.png"
    out.write_bytes(b"mask")
    record = {"fingerprint": "f", "stamps": {"mask": file_stamp(out)}}
    assert finished(record, "f", {"mask": out})
    assert not finished(record, "g", {"mask": out})
    assert not finished({**record, "failed": "bad size"}, "f")
    assert not finished(record, "f", {"mask": out, "prob": tmp_path / "prob.png"})
    out.write_bytes(b"changed by hand")
    assert not finished(record, "f", {"mask": out})
    out.unlink()
    assert not finished(record, "f", {"mask": out}) and file_stamp(out) is None
    assert fingerprint(a=1, b=[2, 3]) == fingerprint(b=[2, 3], a=1) != fingerprint(a=1, b=[3, 2])


def test_an_append_after_a_torn_tail_starts_a_fresh_line(tmp_path) -> None:
    import pytest

    from mmchange_core.errors import OneLineWarning

    manifest = RunManifest(tmp_path)
    manifest.append("a.png", "f1")
    with open(manifest.path, "ab") as handle:
        handle.write(b'{"v":1,"unit":"b.png","finger')  # killed while writing
    with pytest.warns(OneLineWarning, match=r"mmchange_manifest.jsonl: ignoring a torn or unreadable line \(line 2\)"):
        assert sorted(manifest.latest()) == ["a.png"]
    manifest.append("c.png", "f3")  # not glued to the torn line, so not lost with it
    assert sorted(manifest.latest()) == ["a.png", "c.png"]
    assert manifest.path.read_bytes().count(b"\n") == 3


def test_a_line_that_is_not_utf8_is_skipped_not_raised(tmp_path) -> None:
    import pytest

    from mmchange_core.errors import OneLineWarning

    manifest = RunManifest(tmp_path)
    manifest.append("a.png", "f1")
    with open(manifest.path, "ab") as handle:
        handle.write(b'{"v":1,"unit":"\xff\xfe.png","fingerprint":"f2"}\n')
    manifest.append("c.png", "f3")
    with pytest.warns(OneLineWarning, match=r"\(line 2\)"):
        assert sorted(manifest.latest()) == ["a.png", "c.png"]
