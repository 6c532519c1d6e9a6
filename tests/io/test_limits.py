"""Image reading on hostile inputs: pixel limit from headers, non-regular files, malformed files, NaN rasters."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from mmchange_core.data.dataset import read_labelled_pair
from mmchange_core.data.layouts import ImagePair
from mmchange_core.errors import InputError
from mmchange_core.inference.detector import check_pair
from mmchange_core.io import images
from mmchange_core.io.images import MAX_PIXELS_ENV, image_size, max_pixels, read_mask, read_rgb, stretch_to_uint8
from mmchange_core.io.raster import open_source

READERS = {"read_rgb": read_rgb, "read_mask": read_mask, "image_size": image_size, "open_source": open_source}


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` RGB but whose data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any Pillow pixel decode fail loudly, so a test proves that only headers were read."""
    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("reader", READERS)
def test_a_huge_header_is_refused_before_decoding(reader: str, tmp_path: Path, no_decoding: None) -> None:
    path = png_claiming(tmp_path / "huge.png", 100_000, 100_000)
    with pytest.raises(InputError) as info:
        READERS[reader](path)
    message = str(info.value)
    assert "huge.png" in message and "10,000,000,000 pixels" in message and f"{max_pixels():,}" in message
    assert MAX_PIXELS_ENV in message and "\n" not in message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(1, 40), height=st.integers(1, 40), limit=st.integers(1, 2000))
def test_the_limit_is_the_env_var_and_refuses_exactly_above_it(width: int, height: int, limit: int,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / f"{width}x{height}.png"
    Image.fromarray(np.full((height, width, 3), 7, np.uint8)).save(path)
    os.environ[MAX_PIXELS_ENV] = str(limit)
    try:
        if width * height <= limit:
            assert read_rgb(path).shape == (height, width, 3)
            assert open_source(path).read_rows(0, height).shape == (height, width, 3)
        else:  # Pillow's own bomb check (above twice the limit) and ours give the same error
            for reader in READERS.values():
                with pytest.raises(InputError, match=rf"{path.name} is .*{width * height:,} pixels.*limit of "
                                                     rf"{limit:,} pixels.*{MAX_PIXELS_ENV}={width * height}"):
                    reader(path)
    finally:
        del os.environ[MAX_PIXELS_ENV]


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_a_bad_limit_names_the_variable(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    with pytest.raises(InputError, match=f"{MAX_PIXELS_ENV}='{value}' is not a positive whole number"):
        read_rgb(path)


def test_the_default_limit_lets_a_20000_square_geotiff_stream() -> None:
    assert images.DEFAULT_MAX_PIXELS >= 20000 * 20000 and max_pixels() == images.DEFAULT_MAX_PIXELS


def test_a_pair_of_different_sizes_is_refused_from_headers(tmp_path: Path, no_decoding: None) -> None:
    a = png_claiming(tmp_path / "a.png", 300, 200)
    b = png_claiming(tmp_path / "b.png", 300, 201)
    label = png_claiming(tmp_path / "l.png", 300, 200)
    with open_source(a) as source_a, open_source(b) as source_b:
        with pytest.raises(InputError, match="size mismatch: .*a.png is 300x200 but .*b.png is 300x201"):
            check_pair(source_a, source_b, a, b)
    with pytest.raises(InputError, match="b.png is 300x201 but .*a.png is 300x200"):
        read_labelled_pair(ImagePair("a.png", a, b, label))
    with pytest.raises(InputError, match="b.png is 300x201 but .*a.png is 300x200"):
        read_labelled_pair(ImagePair("a.png", a, label, b))


def _special_files(tmp_path: Path) -> dict[str, Path]:
    files = {"directory": tmp_path / "folder.png"}
    files["directory"].mkdir()
    if hasattr(os, "mkfifo"):
        for suffix in (".png", ".tif"):
            os.mkfifo(tmp_path / f"fifo{suffix}")
            files[f"fifo{suffix}"] = tmp_path / f"fifo{suffix}"
    if Path("/dev/zero").exists():
        files["device"] = Path("/dev/zero")
    return files


@pytest.mark.parametrize("reader", READERS)
def test_fifos_devices_and_folders_are_refused_without_blocking(reader: str, tmp_path: Path) -> None:
    for kind, path in _special_files(tmp_path).items():
        outcome: list[BaseException] = []

        def read() -> None:
            try:
                READERS[reader](path)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome.append(exc)

        worker = threading.Thread(target=read, daemon=True)  # a blocked open would hang here, not the suite
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), f"{reader} blocked on a {kind}"
        assert len(outcome) == 1 and isinstance(outcome[0], InputError), (kind, outcome)
        message = str(outcome[0])
        assert str(path) in message and ("folder" if kind == "directory" else "not a regular file") in message


def _malformed(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "g.tif")
    files = {"empty.png": b"", "empty.tif": b"", "random.png": os.urandom(4096), "random.tif": os.urandom(4096),
             "truncated.png": good.read_bytes()[:2000], "truncated.tif": (tmp_path / "g.tif").read_bytes()[:4000],
             "text.jpg": b"not an image"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


@pytest.mark.parametrize("reader", READERS)
def test_malformed_files_give_one_line_errors_naming_them(reader: str, tmp_path: Path) -> None:
    for name, path in _malformed(tmp_path).items():
        if reader == "image_size" and name.startswith("truncated"):
            assert image_size(path) == (64, 64)  # a header is all it reads
            continue
        with pytest.raises(InputError) as info:
            source = READERS[reader](path)
            if hasattr(source, "read_rows"):
                source.read_rows(0, source.height)
        assert name in str(info.value) and "\n" not in str(info.value), (name, str(info.value))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"\xff\xd8"]),
       suffix=st.sampled_from([".png", ".tif", ".jpg"]))
def test_arbitrary_bytes_give_pixels_or_an_input_error(data: bytes, prefix: bytes, suffix: str,
                                                        tmp_path: Path) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(prefix + data)
    for reader in (read_rgb, open_source):
        try:
            source = reader(path)
            rows = source if isinstance(source, np.ndarray) else source.read_rows(0, source.height)
            assert rows.dtype == np.uint8 and rows.ndim == 3
        except InputError as exc:
            assert "fuzz" in str(exc)


def test_stretch_of_nan_pixels_is_deterministic_and_all_nan_is_refused() -> None:
    values = np.array([[np.nan, 0.0, 1.0], [2.0, np.inf, 3.0]], np.float32)
    first = stretch_to_uint8(values, "x.tif")
    assert first[0, 0] == 0 and first[1, 1] == 255 and np.array_equal(first, stretch_to_uint8(values, "x.tif"))
    with pytest.raises(InputError, match="all-nan.tif has no valid pixels"):
        stretch_to_uint8(np.full((4, 4), np.nan, np.float32), "all-nan.tif")


def test_an_all_nan_float_tiff_read_by_pillow_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(path)
    with pytest.raises(InputError, match="nan.tif has no valid pixels"):
        read_rgb(path)


class TestRasterio:
    rasterio = pytest.importorskip("rasterio")

    def write(self, path: Path, bands: np.ndarray, **profile) -> Path:
        with self.rasterio.open(path, "w", driver="GTiff", height=bands.shape[1], width=bands.shape[2],
                                count=bands.shape[0], dtype=bands.dtype.name, **profile) as dst:
            dst.write(bands)
        return path

    @pytest.mark.parametrize("case", ["nan", "nodata"])
    def test_a_raster_without_valid_pixels_is_refused(self, case: str, tmp_path: Path) -> None:
        if case == "nan":
            path = self.write(tmp_path / "allnan.tif", np.full((1, 16, 16), np.nan, np.float32))
        else:
            path = self.write(tmp_path / "allnodata.tif", np.full((3, 16, 16), 9, np.uint16), nodata=9)
        with pytest.raises(InputError, match=f"{path.name} has no valid pixels") as info:
            open_source(path)
        assert "\n" not in str(info.value)

    def test_nan_and_nodata_pixels_become_zero_and_stay_out_of_the_stretch(self, tmp_path: Path) -> None:
        ramp = np.linspace(1000, 2000, 32 * 32, dtype=np.float32).reshape(1, 32, 32)
        with_nan = ramp.copy()
        with_nan[0, :4] = np.nan
        with_nodata = ramp.astype(np.uint16)
        with_nodata[0, :4] = 65535
        for path, nodata in ((self.write(tmp_path / "nan.tif", with_nan), None),
                             (self.write(tmp_path / "nodata.tif", with_nodata, nodata=65535), 65535)):
            with open_source(path) as source:
                rows = source.read_rows(0, 32)
                again = source.read_rows(0, 32)
            assert np.array_equal(rows, again) and (rows[:4] == 0).all(), path.name
            assert rows[4:].max() == 255 and rows[31, 31].min() == 255, path.name   # nodata did not widen the range

    def test_a_huge_geotiff_header_is_refused(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = self.write(tmp_path / "big.tif", np.zeros((1, 64, 64), np.uint8))
        monkeypatch.setenv(MAX_PIXELS_ENV, "4000")
        with pytest.raises(InputError, match=f"big.tif is 64x64 \\(4,096 pixels\\).*{MAX_PIXELS_ENV}=4096"):
            open_source(path)
