"""One self-contained HTML page per run: what was run, its metrics, figures, galleries and sortable tables.

A :class:`Report` is plain data (built by each command from its own results) and :func:`write_report`
renders it to a single ``report.html`` that works offline: every picture is embedded as a ``data:``
URI, the style and the two small scripts (sortable tables, before/after swipe) are inline, and
nothing refers to another server. Metric values are rendered from the same dict that the run writes
to its JSON; each cell shows 4 decimals and carries the exact JSON number in ``data-value`` and its
tooltip. :func:`try_write_report` keeps a failing report from losing the run's other outputs.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.jsonio import finite_or_none
from mmchange_core.reporting.thumbnails import THUMB_SIDE, encode, thumbnail

#: The report file written into every run folder.
REPORT_FILE = "report.html"
#: Metric columns of a metrics table: (key in the run's JSON, header).
METRIC_COLUMNS = (("precision", "P"), ("recall", "R"), ("f1", "F1"), ("iou", "IoU"), ("oa", "OA"),
                  ("kappa", "Kappa"))


@dataclass
class Picture:
    """An encoded picture (PNG/JPEG bytes) with its pixel size, embedded as a ``data:`` URI."""

    data: bytes
    mime: str
    width: int
    height: int
    alt: str = ""

    @classmethod
    def from_array(cls, array: np.ndarray, alt: str = "", *, max_side: int = THUMB_SIDE,
                   fmt: str = "auto") -> Picture:
        """Downsample ``array`` (uint8 or bool) to ``max_side`` and encode it (JPEG photos, PNG masks)."""
        array = np.asarray(array)
        small = thumbnail(array.astype(np.uint8) * 255 if array.dtype == np.bool_ else array, max_side)
        data, mime = encode(small, fmt)
        return cls(data, mime, small.shape[1], small.shape[0], alt)

    @classmethod
    def from_file(cls, path: str | Path, alt: str = "") -> Picture:
        """A PNG or JPEG file (a plot) embedded as it is."""
        from PIL import Image

        data = Path(path).read_bytes()
        with Image.open(Path(path)) as img:
            mime = Image.MIME.get(img.format or "PNG", "image/png")
            return cls(data, mime, img.width, img.height, alt)

    def data_uri(self) -> str:
        """``data:<mime>;base64,...``."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass
class RunHeader:
    """What was run: the command line, inputs, versions, device and duration, as labelled strings."""

    command: str
    fields: dict[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] | None = None


@dataclass
class MetricsTable:
    """Rows of P, R, F1, IoU, OA and kappa, each row one metrics dict exactly as written to the run's JSON."""

    rows: list[tuple[str, Mapping[str, Any]]]
    title: str = "Metrics"
    note: str = ""


@dataclass
class Cell:
    """A table cell: the text shown and the value it sorts by."""

    text: str
    sort: float | str | None = None


CellValue = Union[Cell, str, float, int, None]


@dataclass
class Table:
    """A table; ``sortable`` tables sort by any column when its header is clicked."""

    columns: list[str]
    rows: list[list[CellValue]]
    title: str = ""
    sortable: bool = False
    table_id: str = ""
    numeric: Sequence[bool] | None = None  # per column; default: guessed from the first row


@dataclass
class Figure:
    """A picture with a caption."""

    picture: Picture
    caption: str = ""


@dataclass
class GalleryItem:
    """One pair in a gallery: labelled pictures side by side; ``swipe`` names the before/after pictures."""

    name: str
    pictures: list[tuple[str, Picture]]
    caption: str = ""
    swipe: tuple[str, str] | None = None


@dataclass
class Gallery:
    """Pairs as cards; a card enlarges into a viewer with a before/after swipe."""

    items: list[GalleryItem]
    title: str = ""
    legend: Sequence[tuple[str, tuple[int, int, int]]] = ()
    note: str = ""


@dataclass
class Text:
    """A paragraph of plain text."""

    text: str


Block = Union[MetricsTable, Table, Figure, Gallery, Text, "Section"]


@dataclass
class Section:
    """A titled group of blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    """A whole page: a title, the run header and sections."""

    title: str
    header: RunHeader
    sections: list[Section] = field(default_factory=list)


def format_duration(seconds: float | None) -> str:
    """``'1 h 02 min 03 s'`` style duration (``'n/a'`` when unknown)."""
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def run_header(command: str, *, checkpoint: str | Path | None = None, dataset: str | Path | None = None,
               config: Mapping[str, Any] | None = None, config_file: str | Path | None = None,
               device: str | None = None, seconds: float | None = None, argv: Sequence[str] | None = None,
               extra: Mapping[str, Any] | None = None, detector: Mapping[str, Any] | None = None) -> RunHeader:
    """The header of a run's report: the command line (``sys.argv``), inputs, versions, device and duration, and
    how the detector ran (``detector``: its record; default the config's ``detector`` when it is one)."""
    import torch

    from mmchange_core.environment import __version__

    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    fields = {"command": command, "command line": shlex.join(argv) if argv else "(library call)"}
    for key, value in (("checkpoint", checkpoint), ("dataset", dataset), ("config", config_file)):
        if value is not None:
            fields[key] = str(value)
    fields.update({"mmchange": __version__, "torch": torch.__version__, "device": device or "n/a",
                   "duration": format_duration(seconds),
                   "written": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")})
    if detector is None and config is not None and isinstance(config.get("detector"), Mapping):
        detector = config["detector"]
    if detector is not None and "backend" in detector:
        fields["runtime"] = runtime_text(detector)
    for key, value in (extra or {}).items():
        fields[key] = str(value)
    return RunHeader(command, fields, dict(config) if config is not None else None)


def runtime_text(record: Mapping[str, Any]) -> str:
    """How a detector ran, in words, from its record: ``torch fp32 on cpu``, or ``onnxruntime int8 on cpu (certified:
    agreement with fp32 99.91% ...)``, for summaries and report headers."""
    text = f"{record.get('backend', '?')} {record.get('precision', '?')} on {record.get('device', '?')}"
    int8 = record.get("int8")
    if isinstance(int8, dict):
        certificate = int8.get("certificate") or {}
        if certificate:
            figures = f"agreement with fp32 {100 * certificate.get('agreement', 0):.2f}%"
            if certificate.get("f1_int8") is not None and certificate.get("f1_fp32") is not None:
                figures += f", F1 {certificate['f1_int8']:.4f} vs fp32 {certificate['f1_fp32']:.4f}"
            state = "certified" if certificate.get("within_bound") else "below the bound, accepted"
            text += f" ({state}: {figures} on {certificate.get('held_out', 'held-out windows')})"
        else:
            text += " (no certificate)"
    return text


# ---------------------------------------------------------------------------------------------- rendering

def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def json_number(value: Any) -> str:
    """The JSON text of a value, as the run's JSON file writes it (non-finite numbers as ``null``)."""
    return json.dumps(finite_or_none(value))


def metric_text(value: Any) -> str:
    """How a metric is shown: 4 decimals (``n/a`` for a missing or non-finite value)."""
    value = finite_or_none(value)
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metrics_html(block: MetricsTable) -> str:
    head = "".join(f"<th>{_e(label)}</th>" for _, label in METRIC_COLUMNS)
    rows = []
    for name, metrics in block.rows:
        cells = "".join(
            f'<td class="num" data-key="{key}" data-value="{_e(json_number(metrics.get(key)))}" '
            f'title="{_e(json_number(metrics.get(key)))}">{_e(metric_text(metrics.get(key)))}</td>'
            for key, _ in METRIC_COLUMNS)
        rows.append(f'<tr data-row="{_e(name)}"><th scope="row">{_e(name)}</th>{cells}</tr>')
    note = f'<p class="note">{_e(block.note)}</p>' if block.note else ""
    return (f"<h3>{_e(block.title)}</h3>{note}<table class=\"metrics\"><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _cell(value: CellValue) -> Cell:
    if isinstance(value, Cell):
        return value
    if value is None:
        return Cell("n/a", None)
    if isinstance(value, bool):
        return Cell("yes" if value else "no", int(value))
    if isinstance(value, float):
        return Cell(metric_text(value), value)
    if isinstance(value, int):
        return Cell(str(value), value)
    return Cell(str(value), str(value))


def _table_html(block: Table) -> str:
    rows = [[_cell(v) for v in row] for row in block.rows]
    numeric = list(block.numeric) if block.numeric is not None else [
        bool(rows) and isinstance(rows[0][i].sort, (int, float)) for i in range(len(block.columns))]
    kind = ' class="sortable"' if block.sortable else ""
    ident = f' id="{_e(block.table_id)}"' if block.table_id else ""
    clickable = ' tabindex="0" title="click to sort"' if block.sortable else ""
    head = "".join(f'<th scope="col" data-type="{"num" if numeric[i] else "text"}"{clickable}>{_e(c)}</th>'
                   for i, c in enumerate(block.columns))
    body = []
    for row in rows:
        tds = []
        for i, cell in enumerate(row):
            sort = cell.sort
            if numeric[i] and not isinstance(sort, (int, float)):
                sort = "-Infinity"
            attr = f' data-sort="{_e(json_number(sort) if isinstance(sort, (int, float)) else sort)}"' \
                if block.sortable and sort is not None else ""
            css = ' class="num"' if numeric[i] else ""
            tds.append(f"<td{css}{attr}>{_e(cell.text)}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    title = f"<h3>{_e(block.title)}</h3>" if block.title else ""
    return (f'{title}<div class="scroll"><table{kind}{ident}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _img(picture: Picture, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return (f'<img{cls} src="{picture.data_uri()}" width="{picture.width}" height="{picture.height}" '
            f'alt="{_e(picture.alt)}" title="{_e(picture.alt)}">')


def _figure_html(block: Figure) -> str:
    caption = f"<figcaption>{_e(block.caption)}</figcaption>" if block.caption else ""
    return f'<figure class="plot">{_img(block.picture)}{caption}</figure>'


def _legend_html(legend: Sequence[tuple[str, tuple[int, int, int]]]) -> str:
    if not legend:
        return ""
    items = "".join(f'<span class="key"><span class="swatch" style="background:rgb{tuple(colour)}"></span>'
                    f"{_e(label)}</span>" for label, colour in legend)
    return f'<p class="legend">{items}</p>'


def _gallery_html(block: Gallery) -> str:
    cards = []
    for index, item in enumerate(block.items):
        pictures = "".join(f'<figure data-label="{_e(label)}">{_img(pic, "thumb")}<figcaption>{_e(label)}'
                           f"</figcaption></figure>" for label, pic in item.pictures)
        swipe = ""
        if item.swipe:
            swipe = (f' data-before="{_e(item.swipe[0])}" data-after="{_e(item.swipe[1])}"')
        button = '<button type="button" class="enlarge">enlarge</button>' if item.swipe else ""
        cards.append(f'<div class="card" data-index="{index}" data-name="{_e(item.name)}"{swipe}>'
                     f'<div class="card-head"><b>{_e(item.name)}</b> <span>{_e(item.caption)}</span>{button}</div>'
                     f'<div class="pics">{pictures}</div></div>')
    title = f"<h3>{_e(block.title)}</h3>" if block.title else ""
    note = f'<p class="note">{_e(block.note)}</p>' if block.note else ""
    return f'{title}{note}{_legend_html(block.legend)}<div class="gallery">{"".join(cards)}</div>'


def _block_html(block: Block, depth: int) -> str:
    if isinstance(block, MetricsTable):
        return _metrics_html(block)
    if isinstance(block, Table):
        return _table_html(block)
    if isinstance(block, Figure):
        return _figure_html(block)
    if isinstance(block, Gallery):
        return _gallery_html(block)
    if isinstance(block, Text):
        return f"<p>{_e(block.text)}</p>"
    if isinstance(block, Section):
        return _section_html(block, depth + 1)
    raise TypeError(f"not a report block: {type(block).__name__}")


def _section_html(section: Section, depth: int = 2) -> str:
    level = min(depth, 4)
    inner = "".join(_block_html(b, depth) for b in section.blocks)
    return f"<section><h{level}>{_e(section.title)}</h{level}>{inner}</section>"


def _header_html(header: RunHeader) -> str:
    rows = "".join(f"<tr><th scope=\"row\">{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in header.fields.items())
    config = ""
    if header.config is not None:
        text = json.dumps(finite_or_none(header.config), indent=2, default=str)
        config = f"<details><summary>settings</summary><pre>{_e(text)}</pre></details>"
    return f'<table class="run">{rows}</table>{config}'


_STYLE = """
:root{color-scheme:light;--fg:#1d2125;--muted:#5f6b76;--line:#d7dde3;--bg:#fff;--soft:#f4f6f8}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1240px;padding:16px 20px 40px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}p.note{color:var(--muted);margin:4px 0 8px}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 9px;border-bottom:1px solid var(--line);
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.run{font-size:13px}table.run th{color:var(--muted);font-weight:600;white-space:nowrap}
table.run td{word-break:break-all}table.metrics td{min-width:64px}
table.sortable th{cursor:pointer;user-select:none;background:var(--soft)}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
div.scroll{max-height:440px;overflow:auto;display:inline-block;border:1px solid var(--line)}
figure{margin:0}figure.plot{display:inline-block;margin:6px 10px 6px 0}figure.plot img{max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:12px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid var(--line);border-radius:6px;padding:6px;
background:var(--soft)}.card-head{display:flex;gap:8px;align-items:baseline;margin-bottom:4px}
.card-head button{margin-left:auto}.pics{display:flex;gap:4px}.pics figure{text-align:center}
img.thumb{width:112px;height:auto;image-rendering:auto;display:block}
.legend .key{margin-right:14px;white-space:nowrap}.swatch{display:inline-block;width:12px;height:12px;
border:1px solid #333;margin-right:4px;vertical-align:-1px}
pre{background:var(--soft);padding:8px;overflow:auto;max-height:320px;font-size:12px}
dialog{max-width:96vw;border:1px solid var(--line);border-radius:8px;padding:12px}
.swipe{position:relative;display:inline-block;line-height:0;user-select:none}
.swipe-wrap{display:flex;flex-direction:column;width:min(480px,86vw,70vh)}
.swipe img{display:block;width:min(480px,86vw,70vh);height:auto}
.swipe .clip{position:absolute;top:0;left:0;height:100%;overflow:hidden;border-right:2px solid #fff}
.swipe .clip img{max-width:none}.swipe input{width:100%;margin:6px 0 0}
.viewer-row{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-start}
"""

_SCRIPT = """
(function(){
function key(row,col,num){var c=row.cells[col];var v=c.hasAttribute('data-sort')?c.getAttribute('data-sort'):c.textContent;
 if(num){var f=parseFloat(v);return isNaN(f)?-Infinity:f;}return v.toLowerCase();}
function sortBy(th){var table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex,num=th.dataset.type==='num';
 var asc=th.getAttribute('aria-sort')!=='ascending';
 Array.prototype.forEach.call(table.tHead.rows[0].cells,function(h){h.removeAttribute('aria-sort');});
 th.setAttribute('aria-sort',asc?'ascending':'descending');
 var rows=Array.prototype.slice.call(body.rows).map(function(r,i){return [key(r,col,num),i,r];});
 rows.sort(function(a,b){return (a[0]<b[0]?-1:a[0]>b[0]?1:a[1]-b[1])*(asc||a[0]===b[0]?1:-1)||0;});
 rows.forEach(function(r){body.appendChild(r[2]);});}
document.querySelectorAll('table.sortable th').forEach(function(th){
 th.addEventListener('click',function(){sortBy(th);});
 th.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();sortBy(th);}});});
function setSwipe(box,value){box.querySelector('.clip').style.width=value+'%';}
var dialog=document.getElementById('viewer');
document.querySelectorAll('.card .enlarge').forEach(function(button){button.addEventListener('click',function(){
 var card=button.closest('.card');function pic(label){var f=card.querySelector('figure[data-label="'+label+'"] img');return f?f.src:'';}
 var body=dialog.querySelector('.viewer-body');body.textContent='';
 var title=document.createElement('h3');title.textContent=card.dataset.name+' \\u2014 drag the slider: '+card.dataset.before+' | '+card.dataset.after;
 body.appendChild(title);var row=document.createElement('div');row.className='viewer-row';body.appendChild(row);
 var box=document.createElement('div');box.className='swipe';
 var after=document.createElement('img');after.src=pic(card.dataset.after);after.alt=card.dataset.after;after.className='after';
 var clip=document.createElement('div');clip.className='clip';
 var before=document.createElement('img');before.src=pic(card.dataset.before);before.alt=card.dataset.before;before.className='before';
 clip.appendChild(before);box.appendChild(after);box.appendChild(clip);
 var slider=document.createElement('input');slider.type='range';slider.min='0';slider.max='100';slider.value='50';
 slider.className='swipe-slider';slider.setAttribute('aria-label','before/after');
 var wrap=document.createElement('div');wrap.className='swipe-wrap';wrap.appendChild(box);wrap.appendChild(slider);row.appendChild(wrap);
 slider.addEventListener('input',function(){setSwipe(box,slider.value);});
 box.addEventListener('pointerdown',function(e){box.setPointerCapture(e.pointerId);move(e);});
 box.addEventListener('pointermove',function(e){if(e.buttons)move(e);});
 function move(e){var r=box.getBoundingClientRect();var v=Math.max(0,Math.min(100,100*(e.clientX-r.left)/r.width));
  slider.value=String(Math.round(v));setSwipe(box,v);}
 Array.prototype.forEach.call(card.querySelectorAll('figure'),function(f){
  if(f.dataset.label===card.dataset.before||f.dataset.label===card.dataset.after)return;
  var fig=document.createElement('figure');var img=document.createElement('img');img.src=f.querySelector('img').src;
  img.alt=f.dataset.label;img.style.width='min(240px,80vw)';var cap=document.createElement('figcaption');
  cap.textContent=f.dataset.label;fig.appendChild(img);fig.appendChild(cap);row.appendChild(fig);});
 setSwipe(box,50);dialog.showModal();});});
if(dialog){dialog.querySelector('.close').addEventListener('click',function(){dialog.close();});}
})();
"""


def render_html(report: Report) -> str:
    """The report as one HTML document (inline style and script, pictures as ``data:`` URIs)."""
    sections = "".join(_section_html(s) for s in report.sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_e(report.title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{_e(report.title)}</h1>{_header_html(report.header)}</header>{sections}"
        "<dialog id=\"viewer\"><div class=\"viewer-body\"></div>"
        "<p><button type=\"button\" class=\"close\">close</button></p></dialog>"
        f"<script>{_SCRIPT}</script></body></html>\n")


def write_report(path: str | Path, report: Report) -> Path:
    """Render ``report`` and write it to ``path`` atomically; returns the path."""
    return atomic_write_text(path, render_html(report))


def try_write_report(path: str | Path, build: Callable[[], Report],
                     warn: Callable[[str], None] | None = None) -> Path | None:
    """Build and write a report; a failure is reported through ``warn`` and returns None (the run's other
    outputs are already written and stay)."""
    try:
        return write_report(path, build())
    except Exception as exc:  # noqa: BLE001 - a report must never cost the run its results
        if warn is not None:
            warn(f"the HTML report {path} could not be written ({type(exc).__name__}: {exc}); "
                 f"the run's other outputs are complete")
        return None


def report_fields(path: str | Path | None) -> dict[str, Any]:
    """``{"report": path, "report_bytes": size}`` for a command's summary (empty when there is no report)."""
    if path is None or not Path(path).is_file():
        return {}
    return {"report": str(path), "report_bytes": Path(path).stat().st_size}
