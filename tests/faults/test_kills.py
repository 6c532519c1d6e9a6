"""Repeated kills (SIGKILL of real ``mmchange predict`` processes) and torn manifest tails, then a resume that
equals an uninterrupted run bit for bit.

The reported case: a kill in the middle of an append left a torn last line; the next record was glued
to it and lost. In block mode (one pair cut into blocks) a later resume then trusted blocks recorded
for an older, deleted stage and assembled a mask that differed from an uninterrupted run (599 pixels
in the report) and exited 0. Here a finished run's last record (the pair's) is torn, the rerun is
killed after its first block, then more kills at random points follow (by unit count through the test
hook, and by time), each leaving the tail as it is, torn at a random byte or ending in non-UTF-8 bytes.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from mmchange_core.inference.manifest import MANIFEST_NAME
from mmchange_core.inference.pair_writer import KILL_AFTER_UNITS_ENV
from tests.faults_helpers import BLOCKS, WINDOWS, error_line, hashes, leftovers, mmchange, start, wait_for

#: A threshold inside this random network's probabilities (about 0.480 to 0.486): about half the pixels change.
THRESHOLD = ("--threshold", "0.4845")
SEED = int(os.environ.get("MMCHANGE_FAULT_SEED", "21"))


def _tear(manifest: Path, rng: random.Random) -> str:
    """Damage the tail as a kill can: leave it, cut the last line at a random byte, or end in non-UTF-8 bytes."""
    data = manifest.read_bytes()
    action = rng.choice(["none", "tear", "binary"])
    if action == "tear" and data.endswith(b"\n"):
        last = data.rstrip(b"\n").rfind(b"\n") + 1
        manifest.write_bytes(data[:last + rng.randrange(1, len(data) - last - 1)])
    elif action == "binary":
        manifest.write_bytes(data + b'{"v":1,"unit":"m.png#rows\xff\xfe\x80')
    return action


def _same_pixels(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def test_repeated_kills_and_torn_tails_resume_bit_identical(cli, checkpoint, pair, tmp_path, one_thread) -> None:
    rng = random.Random(SEED)
    ref = tmp_path / "ref"
    done = cli("predict", *pair, "-o", ref / "m.png", "--prob", ref / "p.tif", "--checkpoint", checkpoint,
               *WINDOWS, *BLOCKS, *THRESHOLD)
    assert done.exit_code == 0, done.output
    out = tmp_path / "out"
    manifest = out / MANIFEST_NAME
    args = ("predict", *pair, "-o", out / "m.png", "--prob", out / "p.tif", "--checkpoint", checkpoint, *WINDOWS,
            *BLOCKS, *THRESHOLD)
    inputs = hashes(tmp_path / "in", checkpoint)
    log = [f"seed {SEED}"]

    first = cli(*args)  # in this process: the children below run with the same single thread
    assert first.exit_code == 0, first.output
    data = manifest.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    manifest.write_bytes(data[:last + (len(data) - last) // 2])  # killed while appending the pair's record
    killed = mmchange(*args, **{KILL_AFTER_UNITS_ENV: "1"})  # the pair again, from new stages: one block, killed
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    log.append("torn pair record, killed after 1 unit")

    for _ in range(2):  # more kills at random points
        if rng.random() < 0.5:
            units = rng.randint(1, 3)
            killed = mmchange(*args, **{KILL_AFTER_UNITS_ENV: str(units)})
            log.append(f"killed after {units} unit(s): {killed.returncode}")
        else:  # by time: a moment after the process recorded something new
            size = manifest.stat().st_size
            process = start(*args)
            wait_for(lambda: manifest.stat().st_size != size, process)
            time.sleep(rng.uniform(0.0, 0.3))
            process.kill()
            process.communicate()
            log.append(f"killed by time: {process.returncode}")
        log.append(f"tail: {_tear(manifest, rng)}")
        assert hashes(tmp_path / "in", checkpoint) == inputs, log

    final = cli(*args, "--json")
    assert final.exit_code == 0, (log, final.output)
    assert "Traceback" not in final.output and "UnicodeDecodeError" not in final.output, final.output
    for name in ("m.png", "p.tif"):
        assert _same_pixels(out / name, ref / name), (name, log)
    assert hashes(tmp_path / "in", checkpoint) == inputs and leftovers(out) == [], log
    finished = hashes(out)

    # a line in the middle that is not UTF-8: one warning naming the file and the line, the pair still skipped
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:2]) + b"\xff\xfe not utf-8 \x80\n" + b"".join(lines[2:]))
    again = cli(*args, "--json")
    assert again.exit_code == 0 and '"status": "skipped"' in again.output, again.output
    assert "Traceback" not in again.output and "UnicodeDecodeError" not in again.output, again.output
    warned = [line for line in again.output.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and str(manifest) in warned[0] and "line 3" in warned[0], again.output
    assert {k: v for k, v in hashes(out).items() if not k.endswith(MANIFEST_NAME)} == \
        {k: v for k, v in finished.items() if not k.endswith(MANIFEST_NAME)}


def test_an_unreadable_manifest_names_the_file(cli, checkpoint, pair, tmp_path) -> None:
    """A manifest the process may not read: one line naming it, exit 1, nothing written."""
    if os.geteuid() == 0:
        pytest.skip("root reads a file whatever its permission bits")
    out = tmp_path / "out"
    out.mkdir()
    manifest = out / MANIFEST_NAME
    manifest.write_bytes(b"")
    manifest.chmod(0)
    result = cli("predict", *pair, "-o", out / "m.png", "--checkpoint", checkpoint, *WINDOWS)
    manifest.chmod(0o644)
    assert result.exit_code == 1 and str(manifest) in error_line(result.output)
