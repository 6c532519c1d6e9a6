"""The reports in a real browser (headless Chromium through Playwright): they load offline without errors, every
picture decodes, the metrics shown are the run's JSON, the before/after swipe and the table sort work."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

#: The shared tiny runs (tests/reporting/conftest.py) take ~40 s of CPU; built once per session.
pytestmark = pytest.mark.slow

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """The system's Chromium driven by Playwright (never downloaded); skipped with the reason when absent."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (/usr/bin/chromium or chromium on PATH); "
                    "install it with: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=ARGS)
        yield launched
        launched.close()


class Opened:
    """A report opened in a fresh page, with every console error, page error and failed or non-local request."""

    def __init__(self, browser, path: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.set_default_timeout(10_000)
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))

        def route(route) -> None:
            url = route.request.url
            if url.startswith(("file:", "data:")):
                route.continue_()
            else:
                self.requests.append(url)
                route.abort()

        self.page.route("**/*", route)
        self.page.goto(Path(path).resolve().as_uri())
        self.page.wait_for_load_state("load")

    def check_clean(self) -> None:
        assert not self.errors and not self.requests, (self.errors, self.requests)
        images = self.page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
        assert images and all(complete and width > 0 for _, complete, width in images), images

    def metric_values(self) -> dict[str, dict[str, float]]:
        rows = self.page.eval_on_selector_all(
            "table.metrics tbody tr",
            "rows => rows.map(r => [r.dataset.row, Array.from(r.querySelectorAll('td')).map("
            "td => [td.dataset.key, td.dataset.value, td.textContent])])")
        out = {}
        for name, cells in rows:
            out[name] = {}
            for key, value, text in cells:
                number = json.loads(value)
                assert text == (f"{number:.4f}" if number is not None else "n/a")  # what a reader sees
                out[name][key] = number
        return out


@pytest.fixture(scope="module")
def pages(browser, runs):
    opened: dict[str, Opened] = {}

    def open_report(kind: str, path: Path) -> Opened:
        if kind not in opened:
            opened[kind] = Opened(browser, path)
        return opened[kind]

    yield open_report
    for page in opened.values():
        page.page.close()


def test_every_report_loads_cleanly(pages, runs) -> None:
    for kind, path in {"train": runs.train.report, "eval": runs.eval.report, "robustness": runs.robustness.report,
                       "predict": runs.predict_report, "predict-folder": runs.folder_report,
                       "demo": runs.demo_report}.items():
        opened = pages(kind, path)
        opened.check_clean()
        assert opened.page.title().startswith("mmchange"), kind


def test_eval_metrics_in_the_page_equal_metrics_json(pages, runs) -> None:
    written = runs.eval_json()["metrics"]
    shown = pages("eval", runs.eval.report).metric_values()
    assert shown == {"train split": {k: written[k] for k in ("precision", "recall", "f1", "iou", "oa", "kappa")}}
    demo = pages("demo", runs.demo_report).metric_values()
    assert demo["train split"] == shown["train split"]


def test_train_and_robustness_metrics_in_the_page(pages, runs) -> None:
    with open(runs.train.run_dir / "metrics.csv", newline="") as handle:
        val = [r for r in csv.DictReader(handle) if r["kind"] == "val"]
    shown = pages("train", runs.train.report).metric_values()
    final = next(v for k, v in shown.items() if k.startswith("final"))
    assert final == {k: float(val[-1][k]) for k in final}
    rows = json.loads((runs.robustness.run_dir / "robustness.json").read_text())["rows"]
    shown = pages("robustness", runs.robustness.report).metric_values()
    assert [{k: v[k] for k in ("precision", "recall", "f1", "iou")} for v in shown.values()] == \
           [{k: r[k] for k in ("precision", "recall", "f1", "iou")} for r in rows]


def test_swipe_moves_the_clip(pages, runs) -> None:
    for kind, path in (("eval", runs.eval.report), ("predict", runs.predict_report)):
        page = pages(kind, path).page
        page.click(".card .enlarge")
        slider = page.locator("dialog .swipe-slider")
        clip = page.locator("dialog .swipe .clip")
        assert page.locator("dialog").is_visible()
        assert clip.evaluate("e => e.style.width") == "50%"
        slider.fill("20")  # a range input takes fill(): sets the value and fires input
        assert clip.evaluate("e => e.style.width") == "20%"
        box = page.locator("dialog .swipe").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.up()
        width = float(clip.evaluate("e => e.style.width").rstrip("%"))
        assert 75 <= width <= 85, width
        assert slider.input_value() == str(round(width))
        images = page.eval_on_selector_all("dialog img", "els => els.map(e => e.naturalWidth)")
        assert len(images) >= 2 and all(w > 0 for w in images)
        page.click("dialog .close")
        assert not page.locator("dialog").is_visible()


def test_sort_by_f1(browser, runs) -> None:
    opened = Opened(browser, runs.eval.report)  # its own page: a failed swipe test may have left the viewer open
    page = opened.page
    column = "F1"
    header = page.locator("#per-image th", has_text=column).first
    index = header.evaluate("th => th.cellIndex")

    def values() -> list[float]:
        return page.eval_on_selector_all(
            "#per-image tbody tr", f"rows => rows.map(r => parseFloat(r.cells[{index}].dataset.sort))")

    before = values()
    assert len(before) == len(runs.eval.result.per_image)
    header.click()
    assert values() == sorted(before) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert values() == sorted(before, reverse=True) and header.get_attribute("aria-sort") == "descending"
    names = page.eval_on_selector_all("#per-image tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    assert sorted(names) == sorted(r.pair.name for r in runs.eval.result.per_image)
    opened.check_clean()
    page.close()
