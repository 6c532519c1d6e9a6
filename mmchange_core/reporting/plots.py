"""Static plots drawn with matplotlib (Agg): training curves, severity curves, probability maps.

Every figure has labelled axes with units and a legend, and is written atomically as a PNG whose
bytes depend only on the data (no software tag or timestamp in the file), so runs can be compared.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_path
from mmchange_core.io.images import TIFF_SUFFIXES, open_header

#: Largest side (pixels) of a probability map drawn in a figure; larger maps are area-averaged down.
FIGURE_MAX_SIDE = 1024
#: Dots per inch of every figure (small files, readable text).
DPI = 100
#: Suffix of the colour-bar figure written beside a probability map (``prob.png`` -> ``prob.colorbar.png``).
COLORBAR_SUFFIX = ".colorbar.png"


def _pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed, thread-safe enough for us)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str | Path) -> Path:
    """Write ``fig`` as a reproducible PNG atomically and close it."""
    plt = _pyplot()
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    return Path(out)


def _float(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def read_metrics_rows(metrics_csv: str | Path) -> list[dict[str, Any]]:
    """The rows of a training run's metrics.csv with numbers parsed (empty cells as None)."""
    path = Path(metrics_csv)
    if not path.is_file():
        raise InputError(f"{path} not found; pass the metrics.csv of a training run")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"step", "kind"} <= set(reader.fieldnames):
            raise InputError(f"{path} is not a training metrics.csv (it needs the columns step and kind)")
        rows = []
        for raw in reader:
            row: dict[str, Any] = {"kind": raw.get("kind", "")}
            for key, value in raw.items():
                if key != "kind":
                    row[key] = _float(value)
            rows.append(row)
    return rows


def _smooth(values: Sequence[float], weight: float = 0.8) -> list[float]:
    """TensorBoard-style exponential moving average, bias-corrected so the start is not pulled to 0."""
    out, last, norm = [], 0.0, 0.0
    for value in values:
        last = weight * last + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append(last / norm)
    return out


def plot_training_curves(metrics_csv: str | Path, out: str | Path) -> Path:
    """curves.png of a run: training loss, validation F1/IoU (best checkpoint marked) and learning rate
    against the iteration."""
    plt = _pyplot()
    rows = read_metrics_rows(metrics_csv)
    train = [r for r in rows if r["kind"] == "train" and r.get("step") is not None]
    val = [r for r in rows if r["kind"] == "val" and r.get("step") is not None]
    fig, (ax_loss, ax_val, ax_lr) = plt.subplots(1, 3, figsize=(13.5, 3.8), layout="constrained")

    losses = [(r["step"], r["loss"]) for r in train if r.get("loss") is not None]
    if losses:
        steps, values = zip(*losses)
        ax_loss.plot(steps, values, color="tab:blue", alpha=0.35, linewidth=1, label="logged step")
        if len(values) > 2:
            ax_loss.plot(steps, _smooth(values), color="tab:blue", linewidth=2, label="smoothed (EMA 0.8)")
        ax_loss.legend(loc="upper right", fontsize="small")
    else:
        ax_loss.text(0.5, 0.5, "no training steps logged yet", ha="center", va="center", transform=ax_loss.transAxes)
    ax_loss.set(title="training loss", xlabel="iteration", ylabel="loss (BCE + Dice, 4 outputs)")

    if val:
        steps = [r["step"] for r in val]
        for key, label, color in (("f1", "F1", "tab:green"), ("iou", "IoU", "tab:orange")):
            ax_val.plot(steps, [r.get(key) if r.get(key) is not None else float("nan") for r in val], marker="o",
                        markersize=3, color=color, label=f"validation {label}")
        best = [r for r in val if r.get("best") == 1]
        if best:
            b = best[-1]
            ax_val.axvline(b["step"], color="grey", linestyle="--", linewidth=1)
            ax_val.plot([b["step"]], [b.get("f1") or 0.0], marker="*", markersize=14, color="gold",
                        markeredgecolor="black", linestyle="none",
                        label=f"best checkpoint: F1 {b.get('f1') or 0:.3f} @ iter {b['step']:g}")
        ax_val.set_ylim(0, 1)
        ax_val.legend(loc="best", fontsize="small")
    else:
        ax_val.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=ax_val.transAxes)
    ax_val.set(title="validation (change class)", xlabel="iteration", ylabel="score (fraction, 0-1)")

    rates = [(r["step"], r["lr"]) for r in train if r.get("lr") is not None]
    if rates:
        steps, values = zip(*rates)
        ax_lr.plot(steps, values, color="tab:purple", label="learning rate (group 0)")
        ax_lr.legend(loc="upper right", fontsize="small")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    else:
        ax_lr.text(0.5, 0.5, "no training steps logged yet", ha="center", va="center", transform=ax_lr.transAxes)
    ax_lr.set(title="learning rate", xlabel="iteration", ylabel="learning rate (per step)")
    from matplotlib.ticker import MaxNLocator

    last = max((r["step"] for r in rows if r.get("step") is not None), default=1.0)
    for ax in (ax_loss, ax_val, ax_lr):
        ax.set_xlim(0, max(1.0, last) * 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_severity_curves(series: dict[str, list[tuple[float, float]]], out: str | Path, *, ylabel: str = "F1",
                         title: str = "") -> Path:
    """One line per ``{"model condition": [(severity, value), ...]}``; severity 0 is the clean result."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    for name, points in series.items():
        if points:
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=name)
    ax.set(xlabel="perturbation severity (0 = clean, 1 = default strength)", ylabel=f"{ylabel} (fraction, 0-1)",
           title=title or f"{ylabel} against perturbation severity")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    return _save(fig, out)


def _downsample(prob: np.ndarray, max_side: int = FIGURE_MAX_SIDE) -> np.ndarray:
    """Area-average ``prob`` by an integer factor so its longest side is <= ``max_side``."""
    factor = math.ceil(max(prob.shape) / max_side)
    if factor <= 1:
        return prob
    h, w = (prob.shape[0] // factor) * factor, (prob.shape[1] // factor) * factor
    if h == 0 or w == 0:
        return prob[::factor, ::factor]
    return prob[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def probability_figure(prob: np.ndarray, out: str | Path, *, title: str = "",
                       size: tuple[int, int] | None = None) -> Path:
    """The change probability map in viridis with a colour bar (0-1); uint8 maps are read as 0..255.

    ``size`` (height, width) labels the axes in the pixels of the full map when ``prob`` is a preview of it.
    """
    plt = _pyplot()
    prob = np.asarray(prob)
    if prob.ndim != 2 or prob.size == 0:
        raise InputError(f"a probability map must be a non-empty 2-D array, got shape {list(prob.shape)}")
    values = prob.astype(np.float32) / 255.0 if prob.dtype == np.uint8 else prob.astype(np.float32)
    shown = _downsample(values)
    full_h, full_w = size or prob.shape
    height, width = shown.shape
    scale = 5.5 / max(height, width)
    fig, ax = plt.subplots(figsize=(max(3.0, width * scale) + 1.4, max(2.5, height * scale) + 0.9),
                           layout="constrained")
    image = ax.imshow(shown, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest",
                      extent=(0, full_w, full_h, 0))
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label("change probability")
    ax.set(xlabel="x (pixels)", ylabel="y (pixels)", title=title or "change probability")
    return _save(fig, out)


def colorbar_path(prob_path: str | Path) -> Path:
    """Where the colour-bar figure of a probability map goes: ``prob.png`` -> ``prob.colorbar.png``."""
    path = Path(prob_path)
    return path.with_name(path.stem + COLORBAR_SUFFIX)


def read_probability_preview(path: str | Path, max_side: int = FIGURE_MAX_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """A written probability map (8-bit PNG or float32 TIFF) as float32 0-1, at most ``max_side`` on its longer
    side, with the full map's (height, width); a TIFF is read decimated, so a scene is never held whole."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        from mmchange_core.io.geo import require_rasterio

        rasterio = require_rasterio(f"reading {path}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a plain map is fine
            with rasterio.open(path) as dataset:
                size = (dataset.height, dataset.width)
                factor = max(1, math.ceil(max(size) / max_side))
                shape = (max(1, size[0] // factor), max(1, size[1] // factor))
                data = dataset.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.average)
                scale = 255.0 if dataset.dtypes[0] == "uint8" else 1.0
        return data.astype(np.float32) / scale, size
    from PIL import Image

    with open_header(path) as image:
        size = (image.height, image.width)
        gray = image.convert("L")
    gray.thumbnail((max_side, max_side), Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.float32) / 255.0, size


def write_probability_figure(prob_path: str | Path, out: str | Path | None = None, *, title: str = "") -> Path:
    """The colour-bar figure of the probability map written at ``prob_path`` (default ``<stem>.colorbar.png``)."""
    preview, size = read_probability_preview(prob_path)
    return probability_figure(preview, out or colorbar_path(prob_path), title=title, size=size)


def series_area_figure(labels: Sequence[str], values: Sequence[float], out: str | Path, *, unit: str,
                       title: str = "", colours: Sequence[tuple[int, int, int]] | None = None,
                       reference: tuple[str, float] | None = None) -> Path:
    """Changed area per interval of a time series as bars (one per ``labels[i]``, e.g. ``'d0 → d1'``), each
    labelled with its value; ``reference`` (label, value) is drawn as a dashed line (the first-to-last change)."""
    plt = _pyplot()
    if len(labels) != len(values):
        raise InputError(f"{len(labels)} interval labels for {len(values)} areas")
    count = len(values)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * count + 2.5), 4.4), layout="constrained")
    positions = np.arange(count)
    colour = [tuple(c / 255 for c in colours[i % len(colours)]) for i in range(count)] if colours else "tab:blue"
    bars = ax.bar(positions, [float(v) for v in values], color=colour, edgecolor="black", linewidth=0.6,
                  label="change in the interval")
    digits = 0 if unit == "pixels" else 2
    ax.bar_label(bars, labels=[f"{float(v):,.{digits}f}" for v in values], fontsize="small", padding=2)
    if reference is not None:
        ax.axhline(float(reference[1]), color="grey", linestyle="--", linewidth=1.2,
                   label=f"{reference[0]}: {float(reference[1]):,.{digits}f} {unit}")
    slanted = sum(len(label) for label in labels) > 60  # long labels side by side would overlap
    ax.set_xticks(positions, list(labels), rotation=25 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")
    ax.set(xlabel="interval (from date → to date)", ylabel=f"changed area ({unit})",
           title=title or "changed area per interval")
    top = max([float(v) for v in values] + [float(reference[1]) if reference else 0.0, 0.0])
    ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, out)


def confusion_figure(matrix: np.ndarray | Sequence[Sequence[int]], names: Sequence[str], out: str | Path, *,
                     title: str = "") -> Path:
    """The K x K confusion matrix as a heatmap: rows (label classes) normalised to the share of their pixels,
    each cell labelled with its pixel count and share, the class names as tick labels."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(names):
        raise InputError(f"a confusion matrix is K x K with one name per class, got shape {list(counts.shape)} "
                         f"and {len(names)} names")
    k = counts.shape[0]
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    side = max(4.5, 0.9 * k + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("share of the label class's pixels (row-normalised)")
    size = "small" if k <= 8 else "x-small"
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(counts[i, j]):,}\n{100 * shares[i, j]:.1f}%", ha="center", va="center",
                    fontsize=size, color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), list(names), rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), list(names))
    ax.set(xlabel="predicted class", ylabel="label class (truth)",
           title=title or "confusion matrix (pixels; rows normalised by the label)")
    return _save(fig, out)
