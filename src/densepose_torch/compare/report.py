"""Writing a comparison's report: index.html (self-contained: inline CSS, JS and SVG, pictures
as relative files inside the report folder), results.csv and results.json.

Every number is rounded once (summary.model_row) and written from that value, so the three
files agree cell for cell.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import cv2
import numpy as np

from ..io.atomic import atomic_write
from ..io.images import write_picture
from .summary import Column, cell_text

REPORT_FORMAT = "densepose-compare/1"
THUMBNAIL_HEIGHT = 160
# Viridis at five stops: perceptually even, readable in grey, no red/green contrast.
_VIRIDIS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float64)


@dataclass(frozen=True)
class Report:
    """Everything the report shows."""

    title: str
    lead: str  # one-paragraph summary under the title
    table: list[Column]
    rows: list[dict[str, Any]]
    plot_points: list[tuple[str, float, float]]  # (model, images/s, quality)
    quality_label: str
    quality_limits: tuple[float, float]  # the quality's possible range (AP: 0..100, agreement: 0..1)
    agreement_models: list[str]
    agreement: list[list[float | None]]
    agreement_means: list[float | None]  # each model's mean agreement with the others
    images: list[str]  # image names, the grid's rows
    image_thumbnails: list[str]  # relative paths
    grid_models: list[str]  # the grid's columns
    grid: list[list[tuple[str, str]]]  # [image][model] -> (relative thumbnail path, caption)
    settings: dict[str, Any]
    extra: dict[str, Any]  # more results.json content (per-image figures, full evaluations)


def write_thumbnail(path: Path, rgb: np.ndarray, height: int = THUMBNAIL_HEIGHT) -> None:
    """The picture scaled to `height` pixels high, written atomically (JPEG by the extension)."""
    scale = height / rgb.shape[0]
    size = (max(1, round(rgb.shape[1] * scale)), height)
    write_picture(path, cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))


def _colour(value: float) -> tuple[int, int, int]:
    position = min(max(value, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    low = min(int(position), len(_VIRIDIS) - 2)
    mixed = _VIRIDIS[low] + (position - low) * (_VIRIDIS[low + 1] - _VIRIDIS[low])
    return tuple(round(float(c)) for c in mixed)


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    span = high - low
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    intervals = max(1, math.ceil((high - first) / step - 1e-9))
    return [first + k * step for k in range(intervals + 1)]


def _range(values: list[float], limits: tuple[float, float]) -> tuple[float, float]:
    """The values' span with a margin, kept within the quantity's possible `limits`."""
    low, high = min(values), max(values)
    if high - low > 1e-9:
        pad = (high - low) * 0.08
    else:  # a single value: a margin of 10 % of it (or of the possible range, around zero)
        pad = abs(high) * 0.1 or (0.1 * (limits[1] - limits[0]) if math.isfinite(limits[1] - limits[0]) else 1.0)
    return max(low - pad, limits[0]), min(high + pad, limits[1])


def speed_quality_svg(points: list[tuple[str, float, float]], x_label: str, y_label: str, y_limits: tuple[float, float]) -> str:
    """A scatter plot (inline SVG): one labelled dot per model; x (a speed) is at least 0, y lies
    within `y_limits`."""
    if not points:
        return "<p><em>No model has both a speed and a quality figure.</em></p>"
    width, height, left, right, top, bottom = 760, 420, 64, 150, 16, 48
    x_ticks = _nice_ticks(*_range([p[1] for p in points], (0.0, math.inf)))
    y_ticks = _nice_ticks(*_range([p[2] for p in points], y_limits))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(value: float) -> float:
        return left + (value - x0) / (x1 - x0) * (width - left - right)

    def py(value: float) -> float:
        return height - bottom - (value - y0) / (y1 - y0) * (height - top - bottom)

    parts = [(f'<svg class="plot" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
              f'aria-label="{html.escape(y_label)} versus {html.escape(x_label)}">')]
    for tick in x_ticks:
        parts.append(f'<line class="grid" x1="{px(tick):.1f}" y1="{top}" x2="{px(tick):.1f}" y2="{height - bottom}"/>')
        parts.append(f'<text x="{px(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick:g}</text>')
    for tick in y_ticks:
        parts.append(f'<line class="grid" x1="{left}" y1="{py(tick):.1f}" x2="{width - right}" y2="{py(tick):.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"/>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>')
    parts.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 10}" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {(top + height - bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">{html.escape(y_label)}</text>')
    placed: list[tuple[float, float, float]] = []  # labels drawn so far: (left, right, baseline)
    dots = []
    for name, speed, quality in sorted(points, key=lambda point: -point[2]):
        label = html.escape(name)
        x, y = px(speed), py(quality)
        text_left, text_right, baseline = x + 7, x + 7 + 6.5 * len(name), y + 4
        # Models with close figures would print their names on top of each other: move a name
        # down a line until it overlaps none drawn before.
        while any(left < text_right and text_left < right and abs(baseline - other) < 12 for left, right, other in placed):
            baseline += 12
        placed.append((text_left, text_right, baseline))
        parts.append(f'<text class="label" x="{text_left:.1f}" y="{baseline:.1f}">{label}</text>')
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5"><title>{label}: {speed:g} images/s, '
                    f'{html.escape(y_label)} {quality:g}</title></circle>')
    parts += dots  # on top of the names, so that no dot is hidden
    parts.append("</svg>")
    return "\n".join(parts)


def heatmap_html(models: list[str], matrix: list[list[float | None]]) -> str:
    """The agreement matrix as a table of coloured cells; columns are numbered like the rows."""
    if len(models) < 2:
        return "<p><em>Agreement needs at least two models that ran.</em></p>"
    lines = ['<table class="heatmap"><thead><tr><th></th>']
    lines += [f'<th title="{html.escape(name)}">{k + 1}</th>' for k, name in enumerate(models)]
    lines.append("</tr></thead><tbody>")
    for i, name in enumerate(models):
        cells = [f'<tr><th class="row">{i + 1}. {html.escape(name)}</th>']
        for j, value in enumerate(matrix[i]):
            tip = html.escape(f"{name} vs {models[j]}")
            if value is None:
                cells.append(f'<td class="none" title="{tip}: no body found by either">-</td>')
                continue
            red, green, blue = _colour(value)
            ink = "#000" if value > 0.6 else "#fff"
            cells.append(f'<td style="background:rgb({red},{green},{blue});color:{ink}" title="{tip}: {value:.3f}">{value:.2f}</td>')
        cells.append("</tr>")
        lines.append("".join(cells))
    lines.append("</tbody></table>")
    return "\n".join(lines)


def agreement_summary(models: list[str], matrix: list[list[float | None]], means: list[float | None]) -> str:
    """One line naming the closest pair and, with three models or more, the least agreeing one."""
    pairs = [(matrix[i][j], i, j) for i in range(len(models)) for j in range(i + 1, len(models)) if matrix[i][j] is not None]
    if not pairs:
        return ""
    value, i, j = max(pairs)
    text = f"Closest pair: <b>{html.escape(models[i])}</b> and <b>{html.escape(models[j])}</b> ({value:.3f})."
    scored = [(mean, k) for k, mean in enumerate(means) if mean is not None]
    if len(scored) >= 3:
        mean, k = min(scored)
        text += f" Least in agreement with the others: <b>{html.escape(models[k])}</b> (mean {mean:.3f})."
    return f'<p class="note">{text}</p>'


def table_html(table: list[Column], rows: list[dict[str, Any]]) -> str:
    head = "".join(f'<th title="{html.escape(column.help)}">{html.escape(column.label)}</th>' for column in table)
    lines = [f'<div class="scroll"><table class="models sortable" id="models"><thead><tr>{head}</tr></thead><tbody>']
    for row in rows:
        skipped = str(row.get("status", "")).startswith("skipped")
        cells = []
        for column in table:
            text = cell_text(row[column.key], column)
            kind = "number" if column.decimals is not None else column.key
            title = f' title="{html.escape(text)}"' if column.key in ("status", "source") else ""
            cells.append(f'<td class="{kind}" data-value="{html.escape(text)}"{title}>{html.escape(text) or "-"}</td>')
        lines.append(f'<tr class="{"skipped" if skipped else "ran"}">' + "".join(cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def grid_html(report: Report) -> str:
    head = '<th class="image">image</th>' + "".join(f"<th>{html.escape(name)}</th>" for name in report.grid_models)
    lines = [f'<table class="pictures-grid"><thead><tr>{head}</tr></thead><tbody>']
    for name, thumbnail, row in zip(report.images, report.image_thumbnails, report.grid):
        cells = [(f'<td class="image"><img src="{html.escape(thumbnail)}" alt="{html.escape(name)}" loading="lazy">'
                  f'<div class="caption" title="{html.escape(name)}">{html.escape(name)}</div></td>')]
        for model, (path, caption) in zip(report.grid_models, row):
            alt = html.escape(f"{model} on {name}")
            cells.append(f'<td><img src="{html.escape(path)}" alt="{alt}" title="{alt}: {html.escape(caption)}" loading="lazy">'
                         f'<div class="caption">{html.escape(caption)}</div></td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def settings_html(settings: dict[str, Any]) -> str:
    items = "".join(f"<dt>{html.escape(str(key))}</dt><dd>{html.escape(str(value))}</dd>" for key, value in settings.items())
    return f'<dl class="settings">{items}</dl>'


def render_html(report: Report) -> str:
    template = Template(resources.files(__package__).joinpath("report.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=html.escape(report.title),
        lead=html.escape(report.lead),
        table=table_html(report.table, report.rows),
        plot_note=html.escape(f"Images per second (x) against {report.quality_label} (y); hover a dot for its figures."),
        plot=speed_quality_svg(report.plot_points, "images/s", report.quality_label, report.quality_limits),
        agreement_summary=agreement_summary(report.agreement_models, report.agreement, report.agreement_means),
        heatmap=heatmap_html(report.agreement_models, report.agreement),
        grid_note=html.escape(f"One row per image, one column per model that ran: the {report.settings.get('render')} "
                              "preset at the minimum score; captions give the number of detections."),
        grid=grid_html(report),
        settings=settings_html(report.settings),
        thumbnail_height=str(THUMBNAIL_HEIGHT),
    )


def csv_text(table: list[Column], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.key for column in table])
    for row in rows:
        writer.writerow([cell_text(row[column.key], column) for column in table])
    return buffer.getvalue()


def write_report(folder: Path, report: Report) -> Path:
    """Write index.html, results.csv and results.json into `folder`; returns index.html's path."""
    payload = {
        "format": REPORT_FORMAT,
        "settings": report.settings,
        "columns": [{"key": c.key, "label": c.label, "decimals": c.decimals, "help": c.help} for c in report.table],
        "models": report.rows,
        "images": report.images,
        "agreement": {"models": report.agreement_models, "miou": report.agreement},
        **report.extra,
    }
    with atomic_write(folder / "results.json", "w") as handle:
        json.dump(payload, handle, indent=1)
    with atomic_write(folder / "results.csv", "wb") as handle:
        handle.write(csv_text(report.table, report.rows).encode("utf-8"))
    index = folder / "index.html"
    with atomic_write(index, "wb") as handle:
        handle.write(render_html(report).encode("utf-8"))
    return index
