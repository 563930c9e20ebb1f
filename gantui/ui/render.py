"""Grey images -> half-block segments for rich-pixels, without per-pixel Python work.

rich-pixels' own image path calls getpixel and Style.parse for every pixel (hundreds of
milliseconds for a big grid, all of it holding the GIL the trainer needs). Here numpy
finds the runs of equal (upper, lower) pixel pairs in each text row, and each run
becomes one Segment with a cached Style: the same picture as HalfcellRenderer's.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich_pixels import Pixels

GAP_VALUE = 40  # the grey between tiles


@lru_cache(maxsize=65536)
def halfcell_style(upper: int, lower: int) -> Style:
    """The style HalfcellRenderer gives a cell: fg = lower pixel, bg = upper pixel."""
    return Style.parse(f"rgb({lower},{lower},{lower}) on rgb({upper},{upper},{upper})")


def quantise(image: np.ndarray, levels: int) -> np.ndarray:
    """Fewer grey levels: longer runs, fewer escape codes, the same look at terminal size."""
    if levels >= 256:
        return image
    step = 256 // levels
    return (image // step * step + step // 2).astype(np.uint8)


def halfblock_segments(image: np.ndarray, levels: int = 256) -> list[Segment]:
    """A (H, W) uint8 image as rows of `▄` segments, two pixel rows per text row."""
    image = quantise(image, levels)
    if image.shape[0] % 2:
        image = np.vstack([image, np.zeros((1, image.shape[1]), np.uint8)])
    upper, lower = image[0::2].astype(np.int32), image[1::2].astype(np.int32)
    codes = (upper << 8) | lower
    segments: list[Segment] = []
    newline = Segment("\n")
    for row, row_codes in enumerate(codes):
        starts = np.flatnonzero(np.diff(row_codes, prepend=-1))
        ends = np.append(starts[1:], len(row_codes))
        up, low = upper[row], lower[row]
        for start, end, u, lo in zip(starts.tolist(), ends.tolist(), up[starts].tolist(), low[starts].tolist()):
            segments.append(Segment("▄" * (end - start), halfcell_style(u, lo)))
        segments.append(newline)
    return segments


def grid_shape(width: int, height: int, tile: int, gap: int = 2) -> tuple[int, int]:
    """Columns and rows of `tile`-pixel tiles that fit `width` x `height` text cells."""
    cols = (width + gap) // (tile + gap)
    rows = (height + 1) // (tile // 2 + 1)  # tiles are tile/2 text rows, one text row apart
    return max(cols, 0), max(rows, 0)


def tile_images(images: np.ndarray, cols: int, rows: int, scale: int = 1, gap: int = 2) -> np.ndarray:
    """Lay out up to cols*rows images (N, 28, 28) in one canvas, downscaled by `scale`."""
    if scale > 1:
        n, h, w = images.shape
        images = images.reshape(n, h // scale, scale, w // scale, scale).mean(axis=(2, 4)).astype(np.uint8)
    n, h, w = images.shape
    count = min(n, cols * rows)
    rows = -(-count // cols) if count else 0
    canvas = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), GAP_VALUE, np.uint8)
    for i in range(count):
        r, c = divmod(i, cols)
        canvas[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = images[i]
    return canvas


def layout_for(width: int, height: int, size: int = 28, min_tiles: int = 4) -> tuple[int, int, int]:
    """(cols, rows, scale): full size when at least `min_tiles` fit, else half size."""
    for scale in (1, 2):
        cols, rows = grid_shape(width, height, size // scale)
        if cols * rows >= min_tiles or scale == 2:
            return cols, rows, scale
    raise AssertionError("unreachable")


def by_digit(images: np.ndarray, per_digit: int, cols: int, rows: int) -> tuple[np.ndarray, int]:
    """A conditional run's tiles (`per_digit` of each digit in turn) as one row per digit, as many
    digits as there are rows and as many of each as there are columns."""
    groups = len(images) // per_digit
    cols = min(cols, per_digit)
    picked = [images[d * per_digit:d * per_digit + cols] for d in range(min(rows, groups))]
    return (np.concatenate(picked) if picked else images[:0]), cols


def preview_pixels(images: np.ndarray, width: int, height: int, levels: int = 16, per_digit: int = 0) -> Pixels | None:
    cols, rows, scale = layout_for(width, height)
    if cols * rows == 0 or len(images) == 0:
        return None
    if per_digit:
        images, cols = by_digit(images, per_digit, cols, rows)
    return Pixels.from_segments(halfblock_segments(tile_images(images, cols, rows, scale), levels))
