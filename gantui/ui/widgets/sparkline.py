"""Textual's Sparkline, drawn straight to strips: the same bars for a fraction of the UI's time.

Textual's sparkline renderable yields one Segment per cell with a freshly blended Style, and
recomputes every bucket's summary for each row; each segment then goes through Rich's styling,
splitting and cropping. The six metric sparklines made a metrics update cost ~20-50 ms of the UI
thread (80x24 to 200x60; benchmarks/ui_cost.py), all of it holding the GIL the trainer needs.
Here the buckets are summarised once, colours come from a small cached palette, equal
neighbouring cells share one segment, and the strips are kept until the data or size changes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widgets import Sparkline

BARS = "▁▂▃▄▅▆▇█"
COLOUR_LEVELS = 32  # steps of the min->max colour ramp (Textual blends each bar's exact height)


def bar_heights(data: Sequence[float], width: int, summary: Callable[[Sequence[float]], float]) -> list[float]:
    """Each column's height from 0 to 1, bucketed the way Textual's renderable does (buckets
    of len/width values; fewer values than columns are spread over the width)."""
    n = len(data)
    buckets = [data[n * b // width:n * (b + 1) // width] for b in range(width)]
    summaries = [summary(bucket) for bucket in buckets if bucket]
    low, extent = min(data), (max(data) - min(data)) or 1
    heights, index, step = [], 0.0, len(summaries) / width
    for _ in range(width):
        heights.append((summaries[int(index)] - low) / extent)
        index += step  # accumulated as Textual does, so the columns repeat where it repeats them
    return heights


def mark_columns(marks: Sequence[int], n: int, width: int) -> set[int]:
    """The columns that show the data indices `marks` (a live change of settings)."""
    return {min(i * width // n, width - 1) for i in marks if 0 <= i < n} if n and width > 0 else set()


def sparkline_rows(data: Sequence[float], width: int, height: int, summary: Callable[[Sequence[float]], float],
                   palette: Sequence[Style], blank: Style, marks: Sequence[int] = (),
                   mark_style: Style | None = None) -> list[list[Segment]]:
    """Rows of run-merged segments, top row first; a bar's colour follows its height; the columns of
    `marks` (data indices) are drawn in `mark_style`, a thin line where they have no bar."""
    if width <= 0 or height <= 0:
        return [[] for _ in range(max(height, 0))]
    if len(data) == 1:  # as Textual: one value is a full block
        return [[Segment("█" * width, palette[-1])] for _ in range(height)]
    if not data:  # and no data a flat line at the bottom
        return [[Segment(" " * width, blank)] for _ in range(height - 1)] + [[Segment("▁" * width, palette[0])]]
    heights = bar_heights(data, width, summary)
    levels = [int(h * (len(BARS) * height - 1)) for h in heights]  # eighths of a row
    colours = [palette[round(h * (len(palette) - 1))] for h in heights]
    marked = mark_columns(marks, len(data), width) if mark_style is not None else set()
    rows = []
    for row in reversed(range(height)):
        floor = row * len(BARS)
        cells = [(" ", blank) if level < floor else
                 ("█" if level >= floor + len(BARS) else BARS[level - floor], colour)
                 for level, colour in zip(levels, colours)]
        for col in marked:
            cells[col] = ("│" if cells[col][0] == " " else cells[col][0], mark_style)
        segments: list[Segment] = []
        start = 0
        for i in range(1, width + 1):
            if i == width or cells[i] != cells[start]:
                text, style = cells[start]
                segments.append(Segment(text * (i - start), style))
                start = i
        rows.append(segments)
    return rows


class FastSparkline(Sparkline):
    """A drop-in Sparkline (same data, colours, CSS) that renders through the line API."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._strips: list[Strip] = []
        self._drawn: tuple[Any, ...] | None = None  # holds the data drawn: `is` cannot match a new list
        self.marks: list[int] = []  # data indices drawn as markers

    def _palette(self, base: Style) -> list[Style]:
        _, background = self.background_colors
        low = background + (self.min_color if self.min_color is not None else
                            self.get_component_styles("sparkline--min-color").color)
        high = background + (self.max_color if self.max_color is not None else
                             self.get_component_styles("sparkline--max-color").color)
        ramp = [low.blend(high, i / (COLOUR_LEVELS - 1)) for i in range(COLOUR_LEVELS)]
        return [base + Style.from_color(colour.rich_color) for colour in ramp]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn = None  # a theme or CSS change: new colours

    def render_line(self, y: int) -> Strip:
        data, (width, height) = self.data or [], self.size
        key = (len(data), width, height, len(self.marks))
        if self._drawn is None or self._drawn[0] is not data or self._drawn[1:] != key:
            base = self.rich_style
            mark = base + Style(color=self.app.current_theme.warning or "yellow", bold=True) if self.marks else None
            rows = sparkline_rows(list(data), width, height, self.summary_function, self._palette(base), base,
                                  self.marks, mark)
            self._strips = [Strip(segments, width) for segments in rows]
            self._drawn = (data, *key)
        return self._strips[y] if 0 <= y < len(self._strips) else Strip.blank(width)
