"""Staged rasters finished as Cloud-Optimized GeoTIFFs: layout, georeference, nodata, several writers, atomicity."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from mmchange_core.errors import InputError, OutputError  # noqa: E402
from mmchange_core.io.cog import COG_BLOCKSIZE, StagedRaster, stage_path, validate_cog  # noqa: E402
from mmchange_core.io.geo import GeoReference  # noqa: E402
from mmchange_core.io.raster import open_row_writer, open_source, write_image  # noqa: E402

GEOREF = GeoReference(CRS.from_epsg(32631), from_origin(500000.0, 4600000.0, 10.0, 10.0))
#: Larger than one 512 tile in both directions, so the COG has overviews; odd sizes test the edge tiles.
H, W = 1100, 900


def _mask(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((H, W)) > 0.5).astype(np.uint8) * 255


def _invalid() -> np.ndarray:
    bad = np.zeros((H, W), bool)
    bad[:70] = True              # a band of rows with no input data
    bad[500:600, 100:300] = True
    return bad


def _leftovers(folder) -> list[str]:
    """Hidden files (stages, temporary TIFFs) still in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_mask_is_a_valid_cog_with_georeference_and_an_internal_mask(tmp_path) -> None:
    final = tmp_path / "mask.tif"
    mask, bad = _mask(), _invalid()
    stage = StagedRaster.create(final, H, W, np.uint8)
    invalid = StagedRaster.create(final, H, W, bool, part="invalid")
    for y0 in range(0, H, 300):  # strips in any order
        stage.write(y0, mask[y0:y0 + 300])
    invalid.write(0, bad)
    assert stage.finish(GEOREF, invalid=invalid) == final
    assert not stage.path.exists() and invalid.path.exists()   # the invalid stage may serve another output
    invalid.abort()
    assert _leftovers(tmp_path) == []

    assert validate_cog(final) == []
    with rasterio.open(final) as ds:
        assert ds.crs == GEOREF.crs and ds.transform == GEOREF.transform
        assert ds.block_shapes == [(COG_BLOCKSIZE, COG_BLOCKSIZE)] and ds.compression.name == "deflate"
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert ds.overviews(1) == [2, 4]
        assert ds.nodata is None
        values, valid = ds.read(1), ds.dataset_mask()
        overview = ds.read(1, out_shape=(H // 2, W // 2))
    np.testing.assert_array_equal(valid == 0, bad)
    np.testing.assert_array_equal(values[~bad], mask[~bad])
    assert (values[bad] == 0).all()
    assert set(np.unique(overview)) <= {0, 255}   # nearest: a mask stays binary in its overviews


def test_probability_is_a_cog_with_nan_nodata_and_averaged_overviews(tmp_path) -> None:
    final = tmp_path / "prob.tif"
    checker = ((np.indices((H, W)).sum(axis=0) % 2) * 0.75).astype(np.float32)   # 0 / 0.75 alternating
    bad = _invalid()
    stage = StagedRaster.create(final, H, W, np.float32)
    invalid = StagedRaster.create(final, H, W, bool, part="invalid")
    stage.write(0, checker)
    invalid.write(0, bad)
    stage.finish(GEOREF, invalid=invalid)
    invalid.abort()

    assert validate_cog(final) == []
    with rasterio.open(final) as ds:
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.crs == GEOREF.crs and ds.transform == GEOREF.transform
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3" and ds.overviews(1) == [2, 4]
        values = ds.read(1)
        overview = ds.read(1, out_shape=(H // 2, W // 2))
    np.testing.assert_array_equal(np.isnan(values), bad)
    np.testing.assert_array_equal(values[~bad], checker[~bad])
    np.testing.assert_allclose(overview[100:200, 400:], 0.375)   # average of the 2x2 checker


def _write_half(final, rows: slice, seed: int) -> None:
    """A second process: attach to the stage and write some rows."""
    stage = StagedRaster.attach(final, H, W, np.uint8)
    stage.write(rows.start, _mask(seed)[rows])
    stage.flush()
    stage.detach()


def test_two_processes_fill_one_stage_like_one_writer(tmp_path) -> None:
    final, reference = tmp_path / "two.tif", tmp_path / "one.tif"
    stage = StagedRaster.create(final, H, W, np.uint8)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_half, args=(final, rows, 3))
               for rows in (slice(0, 600), slice(600, H))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    stage.finish(GEOREF)
    write_image(reference, _mask(3), GEOREF)
    assert final.read_bytes() == reference.read_bytes()
    assert _leftovers(tmp_path) == [] and not stage_path(final).exists()


def test_a_failing_finish_leaves_no_final_file_and_keeps_the_stage(tmp_path, monkeypatch) -> None:
    import rasterio.shutil

    final = tmp_path / "mask.tif"
    final.write_bytes(b"the previous result")
    stage = StagedRaster.create(final, H, W, np.uint8)
    stage.write(0, _mask())

    def broken_copy(*args, **kwargs):
        raise rasterio.errors.RasterioIOError("disk full")

    monkeypatch.setattr(rasterio.shutil, "copy", broken_copy)
    with pytest.raises(OutputError, match="no space left on the device of .* while writing .*mask.tif; free space"):
        stage.finish(GEOREF)
    assert final.read_bytes() == b"the previous result"
    assert _leftovers(tmp_path) == [stage.path.name]     # no temporary TIFF left behind
    monkeypatch.undo()
    stage.finish(GEOREF)                                  # the kept stage can be finished again
    assert validate_cog(final) == [] and _leftovers(tmp_path) == []


def test_attach_checks_the_stage(tmp_path) -> None:
    final = tmp_path / "mask.tif"
    with pytest.raises(InputError, match="created by StagedRaster.create"):
        StagedRaster.attach(final, H, W, np.uint8)
    StagedRaster.create(final, H, W, np.uint8).detach()
    with pytest.raises(InputError, match="not the .* of a 900x1100x1 float32 raster"):
        StagedRaster.attach(final, H, W, np.float32)
    stage = StagedRaster.attach(final, H, W, np.uint8)
    with pytest.raises(ValueError, match="outside"):
        stage.write(H - 1, np.zeros((2, W), np.uint8))
    with pytest.raises(ValueError, match="do not fit"):
        stage.write(0, np.zeros((2, W + 1), np.uint8))
    stage.abort()
    assert not stage.path.exists()
    with pytest.raises(InputError, match="name it .tif"):
        StagedRaster.create(tmp_path / "prob.png", H, W, np.float32)


def test_png_final_and_rgb_cog(tmp_path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    stage = StagedRaster.create(tmp_path / "overlay.png", H, W, np.uint8, bands=3)
    stage.write(0, rgb)
    stage.finish()
    assert np.array_equal(open_source(tmp_path / "overlay.png").read_rows(0, H), rgb)

    writer = open_row_writer(tmp_path / "overlay.tif", H, W, bands=3, georef=GEOREF)   # the one TIFF path
    assert isinstance(writer, StagedRaster)
    writer.write(0, rgb)
    writer.close()
    assert validate_cog(tmp_path / "overlay.tif") == []
    with rasterio.open(tmp_path / "overlay.tif") as ds:
        assert ds.count == 3 and ds.crs == GEOREF.crs and np.array_equal(np.moveaxis(ds.read(), 0, -1), rgb)
    assert _leftovers(tmp_path) == []


def test_validate_cog_reports_a_plain_tiff(tmp_path) -> None:
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", height=H, width=W, count=1, dtype="uint8", crs=GEOREF.crs,
                       transform=GEOREF.transform) as dst:
        dst.write(_mask()[None])
    problems = validate_cog(plain)
    assert any("LAYOUT=COG" in p for p in problems) and any("not tiled" in p for p in problems)
    assert any("not compressed" in p for p in problems) and any("overviews" in p for p in problems)


def _geotiff(path, bands: np.ndarray, **extra) -> None:
    count, height, width = bands.shape
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count, dtype=bands.dtype.name,
                       crs=GEOREF.crs, transform=GEOREF.transform, **extra) as dst:
        dst.write(bands)


def test_read_valid_from_nodata_nan_and_plain_inputs(tmp_path) -> None:
    rgb = np.random.default_rng(2).integers(1, 256, (3, 64, 80), dtype=np.uint8)
    rgb[:, 10:20, 5:15] = 0          # nodata in every band: invalid
    rgb[0, 30, 30] = 0               # nodata in one band only: still valid (GDAL's per-dataset rule)
    _geotiff(tmp_path / "nodata.tif", rgb, nodata=0)
    with open_source(tmp_path / "nodata.tif") as source:
        valid = source.read_valid(8, 20)
        assert valid.shape == (20, 80) and valid.dtype == bool
        expected = np.ones((64, 80), bool)
        expected[10:20, 5:15] = False
        np.testing.assert_array_equal(valid, expected[8:28])
        assert source.read_valid(30, 10) is None            # a fully valid strip

    floats = np.random.default_rng(3).random((3, 64, 80)).astype(np.float32)
    floats[1, 40:42, :] = np.nan
    _geotiff(tmp_path / "nan.tif", floats)
    with open_source(tmp_path / "nan.tif") as source:
        assert (~source.read_valid(0, 64)).sum() == 2 * 80

    _geotiff(tmp_path / "plain.tif", rgb)
    write_image(tmp_path / "plain.png", np.moveaxis(rgb, 0, -1))
    for name in ("plain.tif", "plain.png"):
        with open_source(tmp_path / name) as source:
            assert source.read_valid(0, 64) is None


def test_finish_memory_stays_bounded(tmp_path) -> None:
    """A 12288x12288 mask (144 MiB) finishes holding well under its size (VmHWM: this process's peak).

    The growth is GDAL's cache and a few strips (about 80 MiB whatever the size); holding the mosaic
    would add at least 144 MiB. A child process, as the peak of this one is unrelated.
    """
    script = textwrap.dedent(f"""
        import re, numpy as np
        from mmchange_core.io.cog import StagedRaster

        def peak_mib():
            return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024

        side = 12288
        stage = StagedRaster.create({str(tmp_path / 'big.tif')!r}, side, side, np.uint8)
        rows = np.zeros((512, side), np.uint8)
        rows[50:120, ::7] = 255
        for y0 in range(0, side, 512):
            stage.write(y0, rows)
        before = peak_mib()
        stage.finish()
        print(before, peak_mib() - before)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, grown = map(int, out.stdout.split()[-2:])
    assert 0 < before and grown < 0.75 * 144, f"finish grew peak memory by {grown} MiB for a 144 MiB raster"


def test_without_rasterio_a_tiff_stage_is_a_plain_tiff_and_other_types_name_the_extra(tmp_path, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.setitem(sys.modules, "rasterio", None)    # as if the geo extra were not installed
    prob = np.random.default_rng(4).random((40, 50)).astype(np.float32)
    stage = StagedRaster.create(tmp_path / "prob.tif", 40, 50, np.float32)
    invalid = StagedRaster.create(tmp_path / "prob.tif", 40, 50, bool, part="invalid")
    stage.write(0, prob)
    invalid.write(0, np.arange(40)[:, None].repeat(50, 1) < 5)
    stage.finish(invalid=invalid)
    invalid.abort()
    written = np.asarray(Image.open(tmp_path / "prob.tif"))
    assert np.isnan(written[:5]).all() and np.array_equal(written[5:], prob[5:])
    with pytest.raises(InputError, match=r'rasterio is not installed \(.*uint16 x1\)\).*pip install "mmchange\[geo\]"'):
        StagedRaster.create(tmp_path / "deep.tif", 40, 50, np.uint16)
    assert _leftovers(tmp_path) == []
