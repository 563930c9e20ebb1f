"""Generated images from the fixed noise, as many as fit: at full resolution where the terminal
draws pictures (pictures.PictureWidget), else in half blocks, grey or in colour."""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
from rich.console import RenderableType
from rich.text import Text
from textual import events
from textual.message import Message

from gantui.run.events import Preview
from gantui.run.rundir import RunDir
from gantui.run.replay import grid_tiles
from gantui.ui.pictures.layer import zoomed_layout
from gantui.ui.pictures.widget import PictureWidget
from gantui.ui.render import layout_for, preview_pixels


class PreviewPane(PictureWidget):
    class CapacityChanged(Message):
        """The pane now fits this many tiles: the trainer need generate no more."""

        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = "Samples"
        self.images: np.ndarray | None = None
        self.step = 0
        self.row = 0  # a conditional run's tiles per digit
        self.image_size = 28  # the run's images' side (Started), so capacity is right before the first preview
        self.channels = 1
        self.run_dir: RunDir | None = None  # where the saved grids are, when this machine can read them
        self.live: Preview | None = None  # the newest preview, shown unless scrubbing
        self.scrub: int | None = None  # the saved grid shown (an index into run_dir.grids()); None: live
        self.decoded: tuple[int, int] | None = None  # images decoded of a folder's, before the run starts
        self.shown_count = 0  # pictures shown so far: each new one a new picture (a key no recycled id repeats)

    def capacity(self) -> int:
        """How many tiles fit now: the trainer generates no more than this."""
        if self.terminal.pixels:
            cols, rows, _, _ = zoomed_layout(*self.pixel_size(), self.image_size)
        else:
            cols, rows, _ = layout_for(self.content_size.width, self.content_size.height, self.image_size)
        return max(cols * rows, 1)

    def color_mode(self) -> str:
        """What the terminal shows (render.COLOR_MODES): SSH sessions are often 256-colour."""
        if self.app.is_headless:  # no terminal to show it (tests, screenshots): every colour
            return "truecolor"
        system = None if self.app.no_color else self.app.console.color_system
        return {"truecolor": "truecolor", "256": "256", "standard": "16", "windows": "16"}.get(system, "none")

    def on_resize(self, event: events.Resize) -> None:
        self.post_message(self.CapacityChanged(self.capacity()))

    def loading(self, done: int, total: int) -> None:
        """Before the run starts: its folder of images being decoded (once; then it is cached)."""
        self.decoded = (done, total)
        self.refresh()

    def show(self, preview: Preview) -> None:
        self.live = preview
        self.image_size = preview.images.shape[1]
        if self.scrub is None:
            self._display(preview)

    def _display(self, preview: Preview, where: str = "") -> None:
        self.images, self.step, self.row = preview.images, preview.step, preview.row
        self.shown_count += 1
        self.border_title = "Samples" if preview.source == "G" else f"Samples ({preview.source})"
        self.border_subtitle = (f"step {preview.step:,}" + (", a row per digit" if preview.row else "")
                                + (f" · {where}" if where else ""))
        self.refresh()

    # -- scrubbing back through the saved grids (left, right, end) ------------------------
    def step_through(self, by: int) -> str | None:
        """Show the saved grid `by` places older (negative) or newer than the one shown; past the
        newest, live again. Returns why it cannot, for a notice."""
        if self.run_dir is None or not self.run_dir.samples.is_dir():
            return "no saved grids on this machine to step through (they are in the run's samples/)"
        grids = self.run_dir.grids()
        if not grids:
            return "no grid saved yet (one every --sample-every steps)"
        if self.scrub is None:  # from live: the newest grid is the first step back
            index = len(grids) - 1 if by < 0 else None
        else:
            index = min(self.scrub, len(grids) - 1) + by
            index = None if index >= len(grids) else max(index, 0)
        if index is None:
            self.back_to_live()
            return None
        self.scrub = index
        step, path = grids[index]
        try:
            tiles = grid_tiles(path, self.image_size, self.channels)
        except (OSError, ValueError):
            return f"{path.name}: not readable"
        row = self.live.row if self.live is not None else 0
        self._display(Preview(step, tiles, source=self.live.source if self.live else "G", row=row),
                      f"grid {index + 1}/{len(grids)}, end: live")
        return None

    def back_to_live(self) -> None:
        self.scrub = None
        if self.live is not None:
            self._display(self.live)

    def images_shown(self) -> tuple[Hashable, np.ndarray, int] | None:
        if self.images is None:
            return None
        return self.shown_count, self.images, self.row

    def render_blocks(self) -> RenderableType:
        width, height = self.content_size.width, self.content_size.height
        if self.images is None and self.decoded is not None:
            done, total = self.decoded
            return Text(f"decoding images {done:,}/{total:,} ({done / total:.0%})\n"
                        "(the first start only: then cached)", style="dim")
        if self.images is None:
            return Text("waiting for the first samples...", style="dim")
        pixels = preview_pixels(self.images, width, height, per_digit=self.row, mode=self.color_mode())
        return pixels if pixels is not None else Text("pane too small for a sample", style="dim")
