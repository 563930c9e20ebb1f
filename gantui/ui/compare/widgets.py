"""The comparison view's panes: a line chart of one figure over every run (plotext's braille
lines, a colour and a marker a run, the raw curve faint behind the smoothed one), and each run's
fixed-noise samples at the same step side by side."""
from __future__ import annotations

import math
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import RenderableType
from rich.text import Text
from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from gantui.run.replay import grid_tiles
from gantui.run.tracks import Track, smooth
from gantui.ui.pictures.widget import PictureWidget
from gantui.ui.render import preview_pixels

# A run's look: colour alone fails on 16-colour terminals and for colour-blind users, so a marker too.
COLOURS = ("red", "blue", "green", "magenta", "cyan", "yellow", "orange", "white")
FAINT = (52, 17, 22, 53, 23, 58, 94, 240)  # the same hues, dark: the raw curve behind the smoothed
MARKERS = "●▲■◆✚★▼✖"
AXIS_LABELS = {"steps": "step", "images": "images seen", "time": "seconds"}
MARKS_PER_CURVE = 6


def look(index: int) -> tuple[str, int, str]:
    return COLOURS[index % len(COLOURS)], FAINT[index % len(FAINT)], MARKERS[index % len(MARKERS)]


def badge(index: int) -> Text:
    colour, _, marker = look(index)
    return Text(marker, style=f"bold {colour if colour != 'orange' else 'dark_orange'}")


class Chart(PlotextPlot):
    """One figure of every run over a shared axis; FID on a log scale."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tracks: list[Track] = []
        self.key = "loss_g"
        self.axis = "steps"
        self.weight = 0.6
        self.quality = False  # the evaluations' figure (FID), not a training row's

    def show(self, tracks: list[Track], key: str, axis: str, weight: float, quality: bool = False) -> None:
        self.tracks, self.key, self.axis, self.weight, self.quality = tracks, key, axis, weight, quality
        self.border_title = (f"{key}{' (log)' if quality else ''} by {AXIS_LABELS[axis]}"
                             + (f" · smoothing {weight:g}" if not quality else ""))
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        lows, highs = [], []
        drawn = False
        for index, track in enumerate(self.tracks):
            colour, faint, marker = look(index)
            xs, ys = track.series(self.key, self.axis, track.quality if self.quality else None)
            if self.quality:  # on a log scale: drawn as log10, labelled in FID (plotext's own log scale
                # takes the log again at every build, and a chart is built at every repaint)
                pairs = [(x, math.log10(y)) for x, y in zip(xs, ys) if y > 0]
                xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            if not xs:
                continue
            drawn = True
            lows.append(min(ys))
            highs.append(max(ys))
            shown = smooth(ys, self.weight) if not self.quality and self.weight > 0 else ys
            # a point a braille column or so: plotext's cost grows with the points, the chart's does not
            every = max(len(xs) // (2 * max(self.size.width, 40)), 1)
            if shown is not ys:
                plt.plot(xs[::every], ys[::every], marker="braille", color=faint)
            plt.plot(xs[::every], shown[::every], marker="braille", color=colour)
            every = max(len(xs) // MARKS_PER_CURVE, 1)
            marks = list(range(len(xs) - 1, -1, -every))[:MARKS_PER_CURVE]
            plt.scatter([xs[i] for i in marks], [shown[i] for i in marks], marker=marker, color=colour)
        plt.title("" if drawn else f"no {self.key} yet")
        if self.quality and drawn:
            ticks = log_ticks(min(lows), max(highs))
            plt.yticks([math.log10(t) for t in ticks], [f"{t:g}" for t in ticks])
        self.refresh()


def log_ticks(low: float, high: float) -> list[float]:
    """Round values (1, 2, 5 a decade) between two log10s, at least the two ends."""
    ticks = [m * 10.0 ** e for e in range(math.floor(low), math.ceil(high) + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if low <= math.log10(t) <= high]
    return inside if len(inside) >= 2 else [float(f"{10 ** low:.3g}"), float(f"{10 ** high:.3g}")]


class SampleBox(PictureWidget):
    """One run's saved grid at a step, drawn to the box's size (again when it is resized): a picture
    where the terminal draws them, else half blocks; a grid is decoded and drawn once for a size,
    not at every look at the runs."""

    def __init__(self, index: int, track: Track) -> None:
        super().__init__(classes="sample")
        self.index, self.track, self.step = index, track, None
        self.border_title = f"{look(index)[2]} {track.name}"
        self.shown: tuple[Any, ...] | None = None  # what is drawn: (grid's step, its source, the box's size)
        self.tiles: np.ndarray | None = None  # the grid's images, for a picture
        self.blocks: RenderableType = ""  # what half blocks draw (or why there is nothing)

    def at(self, step: int | None) -> None:
        self.step = step
        self.draw()

    def on_resize(self) -> None:
        self.draw()

    def draw(self) -> None:
        track, step = self.track, self.step
        grid = track.grid_at(step)
        if grid is None:
            self.shown = None
            self.border_subtitle = ""
            self.update(("no samples yet" if track.live else "no samples saved") if step is None
                        else "no samples this early")
            return
        at, tiles = grid
        key = (at, id(tiles) if not isinstance(tiles, Path) else tiles, self.content_size)
        if key == self.shown:
            return
        self.shown = key
        self.border_subtitle = f"step {at:,}"
        if isinstance(tiles, Path):
            shape = track.config.get("image_shape") or [1, 28, 28]
            try:
                tiles = grid_tiles(tiles, shape[1], shape[0])
            except (OSError, ValueError):
                self.update("unreadable grid")
                return
        self.tiles, self.blocks = tiles, ""
        self.refresh()

    def update(self, blocks: RenderableType) -> None:
        """Words instead of samples (none yet, unreadable)."""
        self.tiles, self.blocks = None, blocks
        self.refresh()

    def images_shown(self) -> tuple[Hashable, np.ndarray, int] | None:
        return (self.shown[:2], self.tiles, 0) if self.tiles is not None and self.shown else None

    def render_blocks(self) -> RenderableType:
        size = self.content_size
        if self.tiles is None or not (size.width and size.height):
            return self.blocks
        pixels = preview_pixels(self.tiles, size.width, size.height)
        return pixels if pixels is not None else ""


class Samples(Horizontal):
    """Each run's saved sample grid at (or just before) one step, side by side."""

    def show(self, tracks: list[Track], step: int | None) -> None:
        boxes = list(self.query(SampleBox))
        if [b.track for b in boxes] != tracks:
            self.remove_children()
            boxes = [SampleBox(i, track) for i, track in enumerate(tracks)]
            self.mount_all(boxes)
        for box in boxes:
            box.at(step)
