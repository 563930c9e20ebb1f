"""One widget's picture on the terminal, over the widget's blank cells.

Textual draws text; a picture goes to the terminal beside it, after the frame that blanked the
widget's cells. Sixel and iTerm2 pictures live in the cells, so a repaint of the cells erases
them and the widget sends the picture again (encoded once, kept); a Kitty picture floats above
the cells, so it is sent once, hidden while another screen is over it, placed again after, and
its id reused: replacing it frees the old one in the terminal, and a day-long run holds one."""
from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

from gantui.ui.pictures import encode
from gantui.ui.pictures.terminal import Terminal
from gantui.ui.render import tiled

GAP = 2  # pixels between tiles, at the images' own size
MIN_TILES = 16  # tiles are enlarged while at least this many fit (or as many as fit at their own size)


def fit(width: int, height: int, tile: int, gap: int) -> tuple[int, int]:
    return max((width + gap) // (tile + gap), 0), max((height + gap) // (tile + gap), 0)


def zoomed_layout(width: int, height: int, size: int, min_tiles: int = MIN_TILES) -> tuple[int, int, int, int]:
    """(cols, rows, up, down) for `size`-pixel tiles in `width` x `height` pixels: the images
    enlarged `up` times (a whole factor) while `min_tiles` still fit, else at their own size, else
    made `down` times smaller (2, 4, 8) until one fits."""
    cols, rows = fit(width, height, size, GAP)
    if cols * rows:
        want = min(cols * rows, min_tiles)
        for up in range(8, 0, -1):
            cols, rows = fit(width, height, size * up, GAP * up)
            if cols * rows >= want:
                return cols, rows, up, 1
    for down in (2, 4, 8):
        cols, rows = fit(width, height, size // down, GAP)
        if size // down >= 4 and cols * rows:
            return cols, rows, 1, down
    return 0, 0, 1, 1


def picture(images: np.ndarray, layout: tuple[int, int, int, int], per_digit: int = 0) -> tuple[np.ndarray, int]:
    """`images` (N, H, W[, 3]) tiled as zoomed_layout says (at least one tile fits, one image at
    least): (the canvas, the whole factor to enlarge it by: nearest neighbour, the pixels as
    generated)."""
    cols, rows, up, down = layout
    return tiled(images, cols, rows, down, per_digit, GAP), up


class PictureLayer:
    """What one widget has on the terminal: a picture (by key), where, and whether it shows."""

    def __init__(self, image_id: int, write: Callable[[str], None]) -> None:
        self.image_id, self.write = image_id, write
        self.encoded: tuple[Hashable, str] | None = None  # (key, the escapes that draw it)
        self.shown: tuple[Hashable, int, int] | None = None  # (key, x, y) of the picture on screen
        self.sent: Hashable | None = None  # the Kitty image the terminal holds under image_id

    def show(self, terminal: Terminal, key: Hashable, canvas: Callable[[], tuple[np.ndarray, int]], x: int,
             y: int) -> None:
        """Draw picture `key` with its top left at cell (x, y), after the widget's cells were
        repainted; `canvas` makes its pixels (and the factor to enlarge them by) when they are not
        encoded yet."""
        if terminal.protocol == "kitty":
            if self.shown == (key, x, y):
                return
            self.hide(terminal)
            if self.sent == key:
                self.write(encode.at_cell(x, y, terminal.wrap(encode.kitty_place(self.image_id))))
            else:
                escapes = encode.kitty(encode.enlarged(*canvas()), self.image_id)
                self.write(encode.at_cell(x, y, terminal.wrap(encode.kitty_delete(self.image_id))
                                          + "".join(map(terminal.wrap, escapes))))
                self.sent = key
        else:
            if self.encoded is None or self.encoded[0] != key:
                pixels, zoom = canvas()
                body = (encode.sixel(pixels, terminal.colors, zoom) if terminal.protocol == "sixel"
                        else encode.iterm(encode.enlarged(pixels, zoom)))
                self.encoded = (key, terminal.wrap(body))
            self.write(encode.at_cell(x, y, self.encoded[1]))
        self.shown = (key, x, y)

    def hide(self, terminal: Terminal) -> None:
        """Off the screen (another screen is over it, it moves, the mode changes). Sixel and iTerm2
        pictures go with the repaint of the cells under them; a Kitty picture is taken off."""
        if self.shown is not None and terminal.protocol == "kitty":
            self.write(terminal.wrap(encode.kitty_hide(self.image_id)))
        self.shown = None

    def close(self, terminal: Terminal) -> None:
        """The widget goes (a quit, a detach, a new mode): its Kitty picture freed in the terminal."""
        if self.sent is not None:
            self.write(terminal.wrap(encode.kitty_delete(self.image_id)))
        self.shown = self.sent = self.encoded = None
