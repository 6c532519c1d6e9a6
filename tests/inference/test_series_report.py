"""The series report: a picture per date (captions under them), the changed area of every interval as a chart
and a table, the first-change map with a legend of exactly the dates in the raster, every summary sentence,
and a refusal for rasters that do not belong to the series."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.errors import InputError
from mmchange_core.inference.series import IntervalResult, SeriesResult
from mmchange_core.inference.series_report import (
    DIM,
    interval_colours,
    read_pooled,
    series_report,
    write_series_report,
)
from mmchange_core.io.images import write_png
from mmchange_core.io.raster import write_image
from mmchange_core.reporting.plots import series_area_figure
from mmchange_core.reporting.report import render_html

DATES = ["2016-06-01", "2017-06-01", "2018-06-01", "2019-06-01"]
SIZE = 64
#: Changed blocks: interval 1 changes A, interval 2 changes B (inside A: already first seen in interval 1),
#: interval 3 changes C; so first_change holds 1 and 3 only (2018-06-01 is never a first-change date).
A = (slice(0, 8), slice(0, 8))        # 64 px
B = (slice(0, 4), slice(0, 8))        # 32 px
C = (slice(40, 50), slice(40, 50))    # 100 px
M2_PER_PIXEL = 100.0                  # 10 m pixels


def block(*where: tuple[slice, slice]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    for w in where:
        mask[w] = True
    return mask


def sentence(a: str, b: str, pixels: int) -> str:
    return f"Between {a} and {b}, {pixels * M2_PER_PIXEL / 1e4:.2f} ha changed in {1 if pixels else 0} polygon(s)."


def build_series(root: Path, *, projected: bool = True, captions: bool = False, first_change: np.ndarray | None = None,
                 suffix: str = ".png") -> SeriesResult:
    """A 4-date 64x64 series on disk: inputs, one mask per interval and first to last, and the index rasters."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i, date in enumerate(DATES):
        image = np.clip(rng.normal(60 + 50 * i, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        images.append(str(write_png(root / f"{date}.png", image)))

    def result(index: int, kind: str, a: int, b: int, mask: np.ndarray) -> IntervalResult:
        path = write_png(root / f"mask_{kind}_{index}.png", mask)
        pixels = int(mask.sum())
        summary = None
        if projected:
            summary = {"text": sentence(DATES[a], DATES[b], pixels), "area": pixels * M2_PER_PIXEL,
                       "area_unit": "m2", "area_text": f"{pixels * M2_PER_PIXEL:,.0f} m²",
                       "percent": 100 * pixels / SIZE**2, "polygons": 1 if pixels else 0}
        return IntervalResult(index, kind, DATES[a], DATES[b], images[a], images[b], str(path), pixels,
                              pixels / SIZE**2, 1 if pixels else 0, summary)

    intervals = [result(1, "interval", 0, 1, block(A)), result(2, "interval", 1, 2, block(B)),
                 result(3, "interval", 2, 3, block(C))]
    if first_change is None:
        first_change = np.zeros((SIZE, SIZE), np.uint8)
        first_change[A], first_change[C] = 1, 3
    count = block(A, C).astype(np.uint8) + block(B)
    last = np.zeros((SIZE, SIZE), np.uint8)
    last[A], last[B], last[C] = 1, 2, 3
    writer = write_png if suffix == ".png" else write_image
    outputs = {"first_change": str(writer(root / f"first_change{suffix}", first_change)),
               "last_change": str(writer(root / f"last_change{suffix}", last)),
               "change_count": str(writer(root / f"change_count{suffix}", count))}
    return SeriesResult("town", list(DATES), images, SIZE, SIZE, 4, 0.5, intervals,
                        result(0, "first_to_last", 0, 3, block(A, C)), outputs,
                        "EPSG:32631" if projected else None,
                        [f"caption of {d}: houses by a road" for d in DATES] if captions else None,
                        {"total": 12.5})


def write(tmp_path: Path, series: SeriesResult, **kwargs) -> str:
    out = write_series_report(tmp_path / "report.html", series, checkpoint="model.safetensors",
                              config={"detector": {"device": "cpu"}}, seconds=3.0, **kwargs)
    assert out == tmp_path / "report.html"
    return out.read_text(encoding="utf-8")


def section(text: str, title: str) -> str:
    """The HTML of the section titled ``title`` (up to the next section)."""
    start = text.index(f">{title}</h2>")
    end = text.find("<section>", start)
    return text[start:end if end > 0 else None]


def images_alt(text: str, prefix: str) -> list[str]:
    return [alt for alt in re.findall(r'<img [^>]*alt="([^"]*)"', text) if alt.startswith(prefix)]


def picture(text: str, alt: str) -> np.ndarray:
    src = re.search(rf'<img [^>]*src="data:image/png;base64,([^"]+)"[^>]*alt="{re.escape(alt)}"', text)
    assert src is not None, alt
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.group(1)))).convert("RGB"))


def legend(html_part: str) -> list[str]:
    return re.findall(r'<span class="swatch" style="[^"]*"></span>([^<]*)</span>', html_part)


def table_rows(text: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', text, re.DOTALL)
    assert body is not None, table_id
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body.group(1))]


def test_report_has_a_picture_per_date_and_the_first_change_dates_in_its_legend(tmp_path) -> None:
    series = build_series(tmp_path / "s")
    text = write(tmp_path, series)
    assert "http://" not in text and "https://" not in text
    assert all(src.startswith("data:image/") for src in re.findall(r'src="([^"]*)"', text))
    assert images_alt(text, "date ") == [f"date {d}" for d in DATES]  # one picture per date, in order
    # the legend names exactly the dates present in the raster (1 and 3; 2018-06-01 never is a first change)
    assert legend(section(text, "First change date")) == ["first seen 2017-06-01", "first seen 2019-06-01"]
    assert [r[:3] for r in table_rows(text, "first-seen")] == [
        ["2017-06-01", "2016-06-01 → 2017-06-01", "64"], ["2019-06-01", "2018-06-01 → 2019-06-01", "100"]]
    # the map: interval k's colour where change was first seen in k, the last date dimmed elsewhere
    colours = interval_colours(3)
    shown = picture(text, "first-change map")
    assert shown.shape == (SIZE, SIZE, 3)
    assert (shown[A] == colours[0]).all() and (shown[C] == colours[2]).all()
    last = np.asarray(Image.open(series.images[-1]).convert("RGB"), np.float32)
    dim = np.rint(last.mean(axis=2) * DIM)
    rest = ~block(A, C)
    assert np.abs(shown[rest][:, 0].astype(np.float32) - dim[rest]).max() <= 1
    assert legend(section(text, "Change count")) == ["changed in 1 interval", "changed in 2 intervals"]


def test_interval_table_chart_and_sentences(tmp_path) -> None:
    series = build_series(tmp_path / "s")
    text = write(tmp_path, series)
    rows = table_rows(text, "intervals")
    assert len(rows) == len(DATES) - 1
    assert [r[:5] for r in rows] == [["1", "2016-06-01", "2017-06-01", "0.64 ha", "64"],
                                    ["2", "2017-06-01", "2018-06-01", "0.32 ha", "32"],
                                    ["3", "2018-06-01", "2019-06-01", "1.00 ha", "100"]]
    assert [r[5] for r in rows] == ["1.562", "0.781", "2.441"]
    assert "changed area (ha)" in text
    for item in series.intervals:
        assert rows[item.index - 1][-1] == sentence(item.date_a, item.date_b, item.changed_pixels)
        assert f"interval {item.index} ({item.date_a} → {item.date_b}): {item.summary['text']}" in text
    first_last = section(text, "First to last: 2016-06-01 → 2019-06-01")
    assert series.first_to_last.summary["text"] in first_last
    assert series.first_to_last.summary["text"] in section(text, "Summary")
    assert "1.64 ha" in section(text, "Summary")
    # the chart of changed areas is drawn (a real PNG, wider than a thumbnail)
    chart = section(text, "Changed area per interval")
    assert images_alt(chart, "changed area per interval") == ["changed area per interval"]
    assert picture(chart, "changed area per interval").shape[1] >= 500
    assert len(images_alt(text, "interval ")) == 4 * 3  # each interval: its two dates, outline, mask
    assert re.search(r'data-name="interval 2" data-before="2017-06-01" data-after="2018-06-01"', text)


def test_report_in_pixels_with_captions_and_tiff_rasters(tmp_path) -> None:
    series = build_series(tmp_path / "s", projected=False, captions=True, suffix=".tif")
    text = write(tmp_path, series)
    rows = table_rows(text, "intervals")
    assert [r[3] for r in rows] == ["64 px", "32 px", "100 px"]
    assert "changed area (pixels)" in text
    for item in series.intervals:  # no summary: a plain sentence from the numbers
        assert f"{item.changed_pixels:,} pixels changed" in rows[item.index - 1][-1]
    dates = section(text, "Dates")
    for date, caption in zip(DATES, series.captions):
        card = re.search(rf'data-name="{date}".*?</div></div>', dates, re.DOTALL)
        assert card is not None and f"<figcaption>{caption}</figcaption>" in card.group(0)
    assert legend(section(text, "First change date")) == ["first seen 2017-06-01", "first seen 2019-06-01"]


@pytest.mark.parametrize("bad", ["value", "size"])
def test_a_first_change_raster_from_another_series_is_refused(tmp_path, bad) -> None:
    if bad == "value":  # 4 dates have intervals 1..3: a 4 cannot be a first-change interval
        first_change = np.zeros((SIZE, SIZE), np.uint8)
        first_change[A], first_change[5, 60] = 1, 4
    else:
        first_change = np.zeros((SIZE, SIZE // 2), np.uint8)
    series = build_series(tmp_path / "s", first_change=first_change)
    with pytest.raises(InputError, match="does not belong to this series") as caught:
        series_report(series, checkpoint=None, config={})
    assert ("value(s) 4" in str(caught.value)) if bad == "value" else ("32x64" in str(caught.value))
    warnings: list[str] = []
    out = write_series_report(tmp_path / "report.html", series, checkpoint=None, config={}, warn=warnings.append)
    assert out is None and not (tmp_path / "report.html").exists()
    assert len(warnings) == 1 and "does not belong to this series" in warnings[0]
    # the last interval (3 = N - 1) is a valid first-change value
    ok = np.zeros((SIZE, SIZE), np.uint8)
    ok[C] = 3
    good = replace(series, outputs={**series.outputs, "first_change": str(write_png(tmp_path / "ok.png", ok))})
    assert legend(section(render_html(series_report(good, checkpoint=None, config={})), "First change date")) == [
        "first seen 2019-06-01"]


def test_rasters_pooled_to_picture_size_keep_small_changes_and_exact_counts(tmp_path) -> None:
    index = np.zeros((1000, 700), np.uint8)
    index[:500] = 2
    index[3, 3] = 1          # one pixel first seen earlier, inside a block of 2s
    index[900, 650] = 3      # one lone pixel
    for suffix in (".png", ".tif"):
        path = write_png(tmp_path / "i.png", index) if suffix == ".png" else write_image(tmp_path / "i.tif", index)
        pooled = read_pooled(path, 100, 70, earliest=True, size=(1000, 700))
        assert pooled.values() == [0, 1, 2, 3]
        assert pooled.counts[1] == 1 and pooled.counts[3] == 1 and pooled.counts[2] == 500 * 700 - 1
        assert pooled.preview.shape == (100, 70)
        assert pooled.preview[0, 0] == 1 and pooled.preview[90, 65] == 3 and pooled.preview[10, 10] == 2
        assert pooled.preview[80, 10] == 0
        assert read_pooled(path, 100, 70).preview[0, 0] == 2  # largest value of the block


def test_series_area_figure_draws_the_values(tmp_path) -> None:
    labels = ["2016 → 2017", "2017 → 2018", "2018 → 2019"]
    one = series_area_figure(labels, [1.0, 2.0, 3.0], tmp_path / "a.png", unit="ha", reference=("first → last", 4.0))
    again = series_area_figure(labels, [1.0, 2.0, 3.0], tmp_path / "b.png", unit="ha",
                               reference=("first → last", 4.0))
    other = series_area_figure(labels, [1.0, 3.0, 3.0], tmp_path / "c.png", unit="ha",
                               reference=("first → last", 4.0))
    assert one.read_bytes() == again.read_bytes() and one.read_bytes() != other.read_bytes()
    with Image.open(one) as image:
        assert image.format == "PNG" and image.width >= 500
    # bar heights follow the values: pixels of each bar's colour in the ratio 1 : 2 : 3
    colours = [(255, 0, 0), (0, 200, 0), (0, 0, 255)]
    bars = series_area_figure(labels, [1.0, 2.0, 3.0], tmp_path / "e.png", unit="ha", colours=colours)
    pixels = np.asarray(Image.open(bars).convert("RGB"))
    counts = [int((pixels == colour).all(axis=2).sum()) for colour in colours]
    assert counts[0] > 1000 and counts[1] / counts[0] == pytest.approx(2, rel=0.05)
    assert counts[2] / counts[0] == pytest.approx(3, rel=0.05)
    with pytest.raises(InputError):
        series_area_figure(labels, [1.0], tmp_path / "d.png", unit="ha")
