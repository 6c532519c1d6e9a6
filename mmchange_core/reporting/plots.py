"""Small line plots drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mmchange_core.io.atomic import atomic_path

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    step = (hi - lo) / count
    return [lo + i * step for i in range(count + 1)]


def write_line_plot(path: str | Path, series: dict[str, list[tuple[float, float]]], *, title: str = "",
                    x_label: str = "", y_label: str = "", y_range: tuple[float, float] | None = None,
                    size: tuple[int, int] = (900, 560)) -> Path:
    """Draw one line with markers per series and a legend; write a PNG atomically."""
    width, height = size
    left, right, top, bottom = 70, 230, 40, 60
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    xs = [x for points in series.values() for x, _ in points] or [0.0, 1.0]
    ys = [y for points in series.values() for _, y in points] or [0.0, 1.0]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1.0
    y_lo, y_hi = y_range or (max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.05))
    if y_hi <= y_lo:
        y_hi = y_lo + 0.1
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * plot_w, top + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h)

    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(0, 0, 0))
    for tick in _nice_ticks(y_lo, y_hi):
        _, py = to_px(x_lo, tick)
        draw.line([left - 4, py, left, py], fill=(0, 0, 0))
        draw.line([left, py, left + plot_w, py], fill=(230, 230, 230))
        draw.text((left - 44, py - 6), f"{tick:.2f}", fill=(0, 0, 0), font=font)
    for tick in sorted(set(xs)):
        px, _ = to_px(tick, y_lo)
        draw.line([px, top + plot_h, px, top + plot_h + 4], fill=(0, 0, 0))
        draw.text((px - 8, top + plot_h + 8), f"{tick:g}", fill=(0, 0, 0), font=font)
    draw.text((left, 12), title, fill=(0, 0, 0), font=font)
    draw.text((left + plot_w // 2 - 20, height - 28), x_label, fill=(0, 0, 0), font=font)
    draw.text((8, top - 24), y_label, fill=(0, 0, 0), font=font)
    for i, (name, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pixels = [to_px(x, y) for x, y in points]
        if len(pixels) > 1:
            draw.line(pixels, fill=color, width=2)
        for px, py in pixels:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
        ly = top + 14 * i
        draw.line([width - right + 12, ly + 6, width - right + 32, ly + 6], fill=color, width=3)
        draw.text((width - right + 38, ly), name[:30], fill=(0, 0, 0), font=font)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
