"""Grey or RGB images -> half-block segments for rich-pixels, without per-pixel Python work.

rich-pixels' own image path calls getpixel and Style.parse for every pixel (hundreds of
milliseconds for a big grid, all of it holding the GIL the trainer needs). Here numpy
finds the runs of equal (upper, lower) pixel pairs in each text row, and each run
becomes one Segment with a cached Style: the same picture as HalfcellRenderer's.

Colour is quantised first to what the terminal shows: fewer levels in truecolour, the xterm
6x6x6 cube on a 256-colour terminal (what an SSH session usually is), the nearest of the 16
ANSI colours on a 16-colour one, grey under NO_COLOR: longer runs, fewer escape codes, and no
second rounding of each colour by the terminal.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from rich._palettes import STANDARD_PALETTE
from rich.segment import Segment
from rich.style import Style
from rich_pixels import Pixels

GAP_VALUE = 40  # the grey between tiles


@lru_cache(maxsize=65536)
def halfcell_style(upper: int, lower: int) -> Style:
    """The style HalfcellRenderer gives a cell: fg = lower pixel, bg = upper pixel."""
    return Style.parse(f"rgb({lower},{lower},{lower}) on rgb({upper},{upper},{upper})")


@lru_cache(maxsize=65536)
def halfcell_style_rgb(upper: tuple[int, int, int], lower: tuple[int, int, int]) -> Style:
    return Style.parse("rgb({},{},{}) on rgb({},{},{})".format(*lower, *upper))


CUBE = np.array([0, 95, 135, 175, 215, 255])  # the xterm 256-colour cube's levels
# The 16 colours rich downgrades to (its STANDARD_PALETTE): emitting exactly these, the choice is ours.
ANSI16 = np.array([tuple(c) for c in STANDARD_PALETTE._colors])
COLOR_MODES = ("truecolor", "256", "16", "none")


def to_palette(image: np.ndarray, mode: str, levels: int = 32) -> np.ndarray:
    """An (H, W, 3) uint8 image in the colours `mode` shows (COLOR_MODES)."""
    if mode == "truecolor":
        return quantise(image, levels)
    if mode == "256":
        return CUBE[np.abs(image[..., None].astype(np.int16) - CUBE).argmin(-1)].astype(np.uint8)
    if mode == "16":
        distance = ((image[..., None, :].astype(np.int32) - ANSI16) ** 2).sum(-1)
        return ANSI16[distance.argmin(-1)].astype(np.uint8)
    grey = np.rint(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return np.repeat(quantise(grey, levels)[..., None], 3, axis=-1)


def quantise(image: np.ndarray, levels: int) -> np.ndarray:
    """Fewer grey levels: longer runs, fewer escape codes, the same look at terminal size."""
    if levels >= 256:
        return image
    step = 256 // levels
    return (image // step * step + step // 2).astype(np.uint8)


def halfblock_segments(image: np.ndarray, levels: int = 256, mode: str = "truecolor") -> list[Segment]:
    """A (H, W) grey or (H, W, 3) RGB uint8 image as rows of `▄` segments, two pixel rows per
    text row; RGB in the colours of `mode`."""
    if image.ndim == 3:  # each pixel as one 24-bit number
        image = to_palette(image, mode, levels).astype(np.int64)
        pixels, style = (image[..., 0] << 16) | (image[..., 1] << 8) | image[..., 2], _rgb_style
    else:
        pixels, style = quantise(image, levels).astype(np.int64), halfcell_style
    if pixels.shape[0] % 2:
        pixels = np.vstack([pixels, np.zeros((1, pixels.shape[1]), np.int64)])
    upper, lower = pixels[0::2], pixels[1::2]
    codes = (upper << 24) | lower
    segments: list[Segment] = []
    newline = Segment("\n")
    for row, row_codes in enumerate(codes):
        starts = np.flatnonzero(np.diff(row_codes, prepend=-1))
        ends = np.append(starts[1:], len(row_codes))
        for start, end, u, lo in zip(starts.tolist(), ends.tolist(), upper[row][starts].tolist(),
                                     lower[row][starts].tolist()):
            segments.append(Segment("▄" * (end - start), style(u, lo)))
        segments.append(newline)
    return segments


def _rgb_style(upper: int, lower: int) -> Style:
    return halfcell_style_rgb((upper >> 16, (upper >> 8) & 255, upper & 255), (lower >> 16, (lower >> 8) & 255, lower & 255))


def grid_shape(width: int, height: int, tile: int, gap: int = 2) -> tuple[int, int]:
    """Columns and rows of `tile`-pixel tiles that fit `width` x `height` text cells."""
    cols = (width + gap) // (tile + gap)
    rows = (height + 1) // (tile // 2 + 1)  # tiles are tile/2 text rows, one text row apart
    return max(cols, 0), max(rows, 0)


def downscale(images: np.ndarray, scale: int) -> np.ndarray:
    """(N, H, W[, 3]) images made `scale` times smaller by averaging each scale x scale square (the
    edges that do not fill a square are cropped)."""
    if scale == 1:
        return images
    n, h, w = images.shape[:3]
    h, w = h // scale * scale, w // scale * scale
    blocks = images[:, :h, :w].reshape(n, h // scale, scale, w // scale, scale, *images.shape[3:])
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


def tile_images(images: np.ndarray, cols: int, rows: int, scale: int = 1, gap: int = 2) -> np.ndarray:
    """Lay out up to cols*rows images (N, H, W) or (N, H, W, 3) in one canvas, downscaled by `scale`."""
    images = downscale(images, scale)
    n, h, w = images.shape[:3]
    count = min(n, cols * rows)
    rows = -(-count // cols) if count else 0
    canvas = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, *images.shape[3:]), GAP_VALUE, np.uint8)
    for i in range(count):
        r, c = divmod(i, cols)
        canvas[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = images[i]
    return canvas


def layout_for(width: int, height: int, size: int = 28, min_tiles: int = 4) -> tuple[int, int, int]:
    """(cols, rows, scale): the largest tiles of which at least `min_tiles` fit, each `scale` times
    smaller than the images (1, 2, 4, 8: while tiles keep 4 pixels a side); the smallest when none do."""
    scales = [s for s in (1, 2, 4, 8) if size // s >= 4] or [1]
    for scale in scales:
        cols, rows = grid_shape(width, height, size // scale)
        if cols * rows >= min_tiles:
            return cols, rows, scale
    return (*grid_shape(width, height, size // scales[-1]), scales[-1])


def by_digit(images: np.ndarray, per_digit: int, cols: int, rows: int) -> tuple[np.ndarray, int]:
    """A conditional run's tiles (`per_digit` of each digit in turn) as one row per digit, as many
    digits as there are rows and as many of each as there are columns."""
    groups = len(images) // per_digit
    cols = min(cols, per_digit)
    picked = [images[d * per_digit:d * per_digit + cols] for d in range(min(rows, groups))]
    return (np.concatenate(picked) if picked else images[:0]), cols


def preview_pixels(images: np.ndarray, width: int, height: int, levels: int = 16, per_digit: int = 0,
                   mode: str = "truecolor") -> Pixels | None:
    """As many tiles as fit `width` x `height` cells (`levels` greys, or levels a colour channel in
    truecolour, else the palette of `mode`). RGB at 16 levels a channel: fewer runs than at 32, the
    200x60 preview cheaper by about 40% (`benchmarks/ui_cost.py --rgb`, figures in docs/performance.md)."""
    cols, rows, scale = layout_for(width, height, images.shape[1])
    if cols * rows == 0 or len(images) == 0:
        return None
    return Pixels.from_segments(halfblock_segments(tiled(images, cols, rows, scale, per_digit), levels, mode))


def tiled(images: np.ndarray, cols: int, rows: int, scale: int = 1, per_digit: int = 0, gap: int = 2) -> np.ndarray:
    """Up to cols x rows of `images` on one canvas, `scale` times smaller; a conditional run's
    (`per_digit` of each digit in turn) a row per digit. Half blocks and pictures both lay them so."""
    if per_digit:
        images, cols = by_digit(images, per_digit, cols, rows)
    return tile_images(images, cols, rows, scale, gap)
