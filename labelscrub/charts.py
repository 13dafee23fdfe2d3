"""Inline SVG charts for the audit page: line charts over epochs and a count heatmap. Plain strings, no library, so
the page works offline; every label passes through `html.escape`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 420, 200
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 44, 12, 28, 34


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]  # one per epoch; None where not measured
    colour: str
    dashed: bool = False


def line_chart(title: str, series: list[Series], *, y_label: str, y_max: float | None = None,
               percent: bool = False) -> str:
    """An SVG line chart of `series` over epochs 1..n, with a legend; gaps where a value is None."""
    points = [value for line in series for value in line.values if value is not None]
    epochs = max((len(line.values) for line in series), default=0)
    if not points or epochs == 0:
        return f'<p class="muted">{escape(title)}: not recorded by this run.</p>'
    top = y_max if y_max is not None else _nice_ceiling(max(points))
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(epoch: int) -> float:
        return MARGIN_LEFT + (epoch / max(1, epochs - 1)) * plot_width

    def y(value: float) -> float:
        return MARGIN_TOP + plot_height * (1 - min(value, top) / top if top else 1)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for fraction in (0, 0.5, 1):
        level = top * fraction
        text = f"{level:.0%}" if percent else f"{level:.2g}"
        parts.append(f'<line class="grid" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y(level):.1f}" '
                     f'y2="{y(level):.1f}"/><text class="tick" x="{MARGIN_LEFT - 4}" y="{y(level) + 4:.1f}" '
                     f'text-anchor="end">{text}</text>')
    for epoch in sorted({0, (epochs - 1) // 2, epochs - 1}):
        parts.append(f'<text class="tick" x="{x(epoch):.1f}" y="{HEIGHT - MARGIN_BOTTOM + 14}" '
                     f'text-anchor="middle">{epoch + 1}</text>')
    parts.append(f'<text class="tick" x="{MARGIN_LEFT + plot_width / 2:.1f}" y="{HEIGHT - 4}" '
                 f'text-anchor="middle">epoch</text>')
    parts.append(f'<text class="tick" transform="translate(11 {MARGIN_TOP + plot_height / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for line in series:
        for run in _runs(line.values):
            path = " ".join(f"{x(epoch):.1f},{y(value):.1f}" for epoch, value in run)
            dash = ' stroke-dasharray="5 3"' if line.dashed else ""
            parts.append(f'<polyline fill="none" stroke="{line.colour}" stroke-width="2"{dash} points="{path}"/>')
    legend_x = MARGIN_LEFT  # one row above the plot, where no line can run under it
    for line in series:
        parts.append(f'<rect x="{legend_x}" y="8" width="10" height="3" fill="{line.colour}"/>'
                     f'<text class="legend" x="{legend_x + 14}" y="13">{escape(line.name)}</text>')
        legend_x += 30 + 6 * len(line.name)
    parts.append("</svg>")
    return "".join(parts)


def heatmap(rows: list[str], columns: list[str], counts: list[list[int]], *, title: str) -> str:
    """An SVG grid of counts, rows x columns, shaded by count, the count written in every non-empty cell."""
    cell = 30
    label_width = 8 + 7 * max((len(name) for name in rows), default=0)
    label_height = 8 + 6 * max((len(name) for name in columns), default=0)
    width = label_width + cell * len(columns) + 4
    height = label_height + cell * len(rows) + 4
    peak = max((count for row in counts for count in row), default=0) or 1
    parts = [f'<svg class="heatmap" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for number, name in enumerate(columns):
        center = label_width + cell * number + cell / 2
        parts.append(f'<text class="tick" transform="translate({center + 4:.1f} {label_height - 4}) rotate(-60)">'
                     f"{escape(name)}</text>")
    for row_number, (name, row) in enumerate(zip(rows, counts)):
        top = label_height + cell * row_number
        parts.append(f'<text class="tick" x="{label_width - 6}" y="{top + cell / 2 + 4:.1f}" text-anchor="end">'
                     f"{escape(name)}</text>")
        for column_number, count in enumerate(row):
            left = label_width + cell * column_number
            shade = count / peak
            parts.append(f'<rect x="{left}" y="{top}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="rgba(200,60,40,{0.08 + 0.92 * shade:.3f})"><title>{escape(name)} labelled, '
                         f"{escape(columns[column_number])} predicted: {count}</title></rect>")
            if count:
                colour = "#fff" if shade > 0.55 else "#222"
                parts.append(f'<text class="cell" x="{left + cell / 2 - 0.5:.1f}" y="{top + cell / 2 + 4:.1f}" '
                             f'text-anchor="middle" fill="{colour}">{count}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _runs(values: list[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of consecutive measured values, so a line breaks where a value is missing."""
    runs: list[list[tuple[int, float]]] = [[]]
    for epoch, value in enumerate(values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((epoch, value))
    return [run for run in runs if run]


def _nice_ceiling(value: float) -> float:
    """A round number at or above `value` for an axis top: 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value * (1 - 1e-9))
