from __future__ import annotations

import numpy as np
from PIL import Image
from rich.segment import Segment
from rich_pixels import Pixels

from gantui.engine.data import load_mnist_arrays
from gantui.ui.render import halfblock_segments, layout_for, tile_images


def test_fast_renderer_matches_rich_pixels():
    images, _ = load_mnist_arrays("test")
    canvas = tile_images(images[:16], cols=4, rows=4)
    reference = Pixels.from_image(Image.fromarray(canvas))._segments.segments
    assert halfblock_segments(canvas) == list(Segment.simplify(reference))


def test_odd_height_gets_a_black_lower_half():
    """rich-pixels stretches an odd image; we pad it instead (our grids are always even)."""
    segments = halfblock_segments(np.full((3, 2), 200, np.uint8))
    last_row = segments[segments.index(Segment("\n")) + 1:-1]
    assert [(s.text, s.style.color.triplet, s.style.bgcolor.triplet) for s in last_row] == [("▄▄", (0, 0, 0), (200, 200, 200))]


def test_layout_uses_the_room():
    assert layout_for(126, 56) == (4, 3, 1)  # a big pane: full-size digits
    cols, rows, scale = layout_for(44, 20)  # an 80x24 terminal: half-size, at least 4
    assert scale == 2 and cols * rows >= 4
    canvas = tile_images(np.full((3, 28, 28), 255, np.uint8), cols=2, rows=2)
    assert canvas.shape == (58, 58)
