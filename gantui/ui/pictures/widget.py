"""A widget that shows images: at full resolution where the terminal draws pictures, in half
blocks elsewhere. Subclasses say what to show (`images_shown`) and how in half blocks
(`render_blocks`); this class draws the picture over its blank cells after each repaint of them."""
from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import Any

import numpy as np
from rich.console import RenderableType
from rich.text import Text
from textual.geometry import Region
from textual.reactive import Reactive
from textual.strip import Strip
from textual.widget import Widget

from gantui.ui.pictures.layer import GAP, PictureLayer, picture, zoomed_layout
from gantui.ui.pictures.terminal import Terminal, resized

KITTY_IDS = itertools.count(1)  # a Kitty image id a widget, reused for each of its pictures
NONE_ANSWERED = ("this terminal answered no picture protocol (Kitty graphics, sixel, iTerm2): half blocks; "
                 "--images sixel|kitty|iterm forces one")


def switch_pictures(app: Any) -> bool:
    """The `i` key of an app with `pictures` (a Terminal): its pictures <-> half blocks, each picture
    widget told; where the terminal draws none, why (a notice) and False."""
    old = app.pictures
    if old.found == "blocks":
        app.notify(old.why or NONE_ANSWERED, severity="warning", timeout=8)
        return False
    app.pictures = old.switched()
    for widget in app.query(PictureWidget):
        widget.mode_changed(old)
    return True


def announce(app: Any) -> None:
    """At the start: inside tmux with its passthrough off, how to turn pictures on."""
    if app.pictures.tmux and app.pictures.why:
        app.notify(app.pictures.why, timeout=8)


def follow_resize(app: Any) -> None:
    """After the terminal's resize: the cell's size in pixels again (a font's size may have changed)."""
    if not app.is_headless:
        app.pictures = resized(app.pictures)


class PictureWidget(Widget):
    # No links in a picture: skips Textual's per-segment link pass (a fifth of the UI's time).
    auto_links: Reactive[bool] = Reactive(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.picture_layer = PictureLayer(next(KITTY_IDS), self.write_to_terminal)
        self.paint_due = False

    # -- what a subclass says ------------------------------------------------------------
    def images_shown(self) -> tuple[Hashable, np.ndarray, int] | None:
        """(a key that changes with the images, the images (N, H, W[, 3]), tiles per digit row or 0);
        None: nothing to show (this base shows nothing)."""
        return None

    def render_blocks(self) -> RenderableType:
        """What half blocks draw (or the words in their place)."""
        return ""

    # -- the terminal's pictures ---------------------------------------------------------
    @property
    def terminal(self) -> Terminal:
        return self.app.pictures  # type: ignore[attr-defined]  (GanApp, CompareApp)

    def pixel_size(self) -> tuple[int, int]:
        """The content's size in the terminal's pixels."""
        cell_w, cell_h = self.terminal.cell
        return self.content_size.width * cell_w, self.content_size.height * cell_h

    def picture_layout(self) -> tuple[tuple[Hashable, np.ndarray, int], tuple[int, int, int, int]] | None:
        """(what is shown, its tiles' zoomed_layout in the content's pixels) where a picture of it
        fits; None where half blocks draw instead."""
        shown = self.images_shown() if self.terminal.pixels else None
        if shown is None:
            return None
        layout = zoomed_layout(*self.pixel_size(), shown[1].shape[1])
        return (shown, layout) if layout[0] * layout[1] and len(shown[1]) else None

    def write_to_terminal(self, data: str) -> None:
        # Textual has no public way to write to the terminal; its own App.bell and clipboard do this.
        driver = self.app._driver
        if driver is not None and not self.app.is_headless:
            driver.write(data)

    def on_mount(self) -> None:
        self.app.screen_change_signal.subscribe(self, self.screen_changed)

    def on_unmount(self) -> None:
        self.picture_layer.close(self.terminal)

    def on_hide(self) -> None:
        """Hidden (display: none, as the whole dashboard is in a terminal too small for it): the
        picture off, which no repaint of these cells would take off."""
        self.picture_layer.hide(self.terminal)

    def screen_changed(self, screen: Any) -> None:
        if screen is not self.screen:  # a modal screen over this one: the picture off until it goes
            self.picture_layer.hide(self.terminal)

    def mode_changed(self, old: Terminal) -> None:
        """The app switched pictures <-> half blocks: the old picture freed, the cells repainted."""
        self.picture_layer.close(old)
        self.refresh()

    def render(self) -> RenderableType:
        if self.picture_layout() is not None:
            return Text("")  # blank cells: the picture goes over them after the frame
        return self.render_blocks()

    def render_lines(self, crop: Region) -> list[Strip]:
        lines = super().render_lines(crop)
        if self.terminal.pixels and not self.paint_due:  # the cells were repainted: the picture again
            self.paint_due = True
            self.call_after_refresh(self.paint_picture)
        return lines

    def paint_picture(self) -> None:
        self.paint_due = False
        if not self.is_attached:  # removed since the paint was asked for (a comparison's boxes change)
            return
        terminal = self.terminal
        fitted = self.picture_layout() if self.is_mounted else None
        if (fitted is None or not self.screen.is_active or self.content_region.area == 0
                or self.under_toast(*fitted)):  # hidden (too small a terminal) between the paint's asking and now too
            self.picture_layer.hide(terminal)
            return
        (key, images, per_digit), layout = fitted
        region = self.content_region
        self.picture_layer.show(terminal, (key, *self.pixel_size(), per_digit),
                                lambda: picture(images, layout, per_digit), region.x, region.y)

    def under_toast(self, shown: tuple[Hashable, np.ndarray, int], layout: tuple[int, int, int, int]) -> bool:
        """A notification over the picture would be drawn under it: none until the toast goes (its
        going repaints these cells)."""
        cols, rows, up, down = layout
        tile, gap = shown[1].shape[1] // down * up, GAP * up
        cell_w, cell_h = self.terminal.cell
        region = self.content_region
        covered = Region(region.x, region.y, -(-(cols * (tile + gap) - gap) // cell_w),
                         -(-(rows * (tile + gap) - gap) // cell_h))  # the picture's cells, at most
        return any(toast.region.overlaps(covered) for toast in self.screen.query("Toast"))
