"""The fast sparkline draws Textual's bars: the same characters, colours within a palette step."""
from __future__ import annotations

import random
from statistics import fmean

import pytest
from rich.color import Color
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual.renderables.sparkline import Sparkline as TextualSparkline

from gantui.ui.widgets.sparkline import COLOUR_LEVELS, sparkline_rows

LOW, HIGH = Color.from_rgb(20, 40, 60), Color.from_rgb(220, 140, 60)


def palette() -> list[Style]:
    (r1, g1, b1), (r2, g2, b2) = LOW.triplet, HIGH.triplet
    steps = [i / (COLOUR_LEVELS - 1) for i in range(COLOUR_LEVELS)]
    return [Style(color=Color.from_rgb(r1 + (r2 - r1) * t, g1 + (g2 - g1) * t, b1 + (b2 - b1) * t)) for t in steps]


def cells(lines: list[list[Segment]]) -> list[list[tuple[str, tuple[int, int, int] | None]]]:
    """Per text cell: its character and its colour (None for an empty cell)."""
    out = []
    for line in lines:
        row = []
        for seg in line:
            colour = seg.style.color.triplet if seg.style and seg.style.color and seg.text.strip() else None
            row += [(ch, colour) for ch in seg.text]
        out.append(row)
    return out


def textual_rows(data, width, height) -> list[list[Segment]]:
    console = Console(width=width, color_system="truecolor")
    renderable = TextualSparkline(data, width=width, height=height, min_color=LOW, max_color=HIGH,
                                  summary_function=fmean)
    return list(Segment.split_lines(console.render(renderable, console.options.update_width(width))))


@pytest.mark.parametrize("length, width, height", [
    (0, 30, 1), (1, 30, 2), (2, 30, 1), (7, 40, 1), (25, 24, 3), (500, 68, 1), (500, 68, 4), (3000, 31, 8)])
def test_fast_sparkline_draws_textuals_bars(length, width, height):
    rng = random.Random(length * 7 + height)
    data = [rng.gauss(0, 1) + 0.01 * i for i in range(length)]
    ours = cells(sparkline_rows(data, width, height, fmean, palette(), Style()))
    theirs = cells(textual_rows(data, width, height))
    assert [[ch for ch, _ in row] for row in ours] == [[ch for ch, _ in row] for row in theirs]
    half_step = max(abs(a - b) for a, b in zip(LOW.triplet, HIGH.triplet)) / (COLOUR_LEVELS - 1) / 2
    for row_ours, row_theirs in zip(ours, theirs):
        for (_, ca), (_, cb) in zip(row_ours, row_theirs):
            assert (ca is None) == (cb is None)
            if ca is not None:
                assert max(abs(x - y) for x, y in zip(ca, cb)) <= half_step + 1


def test_equal_neighbours_share_a_segment():
    rows = sparkline_rows([1.0, 2.0], 40, 1, fmean, palette(), Style())
    assert len(rows[0]) == 2  # two runs of 20 cells, not 40 segments
