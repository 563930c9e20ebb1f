from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from rich.color import ColorSystem
from rich.segment import Segment
from rich.terminal_theme import DEFAULT_TERMINAL_THEME
from rich_pixels import Pixels
from textual.color import Color as TextualColor
from textual.filter import Monochrome

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


def displayed_image(segments, colour) -> np.ndarray:
    """What a terminal shows for half-block segments: (upper=bg, lower=fg) per cell, as luminance."""
    def lum(c):
        r, g, b = colour(c)
        return 0.299 * r + 0.587 * g + 0.114 * b

    rows, row = [], []
    for seg in segments:
        if seg.text == "\n":
            rows.append(row)
            row = []
            continue
        row += [(lum(seg.style.bgcolor), lum(seg.style.color))] * len(seg.text)
    cells = np.array(rows)  # (text rows, cols, 2)
    return cells.transpose(0, 2, 1).reshape(-1, cells.shape[1])


@pytest.mark.parametrize("mode", ["truecolor", "256", "16", "NO_COLOR"])
def test_previews_stay_readable_in_every_colour_mode(mode):
    """Downgraded as rich does for a 256/16-colour terminal, or greyed as Textual does for NO_COLOR,
    a digit's strokes still stand apart from its background."""
    digit = load_mnist_arrays("test")[0][0]
    segments = halfblock_segments(digit, levels=32)
    if mode == "NO_COLOR":
        grey = Monochrome()  # Textual filters lines of segments; the newlines carry no style
        segments = [s if s.text == "\n" else grey.apply([s], TextualColor(0, 0, 0))[0] for s in segments]
    system = {"256": ColorSystem.EIGHT_BIT, "16": ColorSystem.STANDARD}.get(mode, ColorSystem.TRUECOLOR)
    shown = displayed_image(segments, lambda c: c.downgrade(system).get_truecolor(DEFAULT_TERMINAL_THEME))
    assert shown.shape == digit.shape
    stroke, background = shown[digit > 200], shown[digit < 30]
    assert stroke.min() > background.max() + 60
    assert np.corrcoef(shown.ravel(), digit.ravel())[0, 1] > 0.9


def rgb_canvas() -> np.ndarray:
    from gantui.ui.demo import disc_images

    images = disc_images(6, size=32, seed=3)
    images[0] = np.random.default_rng(0).integers(0, 256, (32, 32, 3))  # every colour, no runs
    return tile_images(images, cols=3, rows=2)


@pytest.mark.parametrize("mode", ["truecolor", "256", "16", "none"])
def test_rgb_renderer_matches_rich_pixels_in_every_colour_mode(mode):
    """The vectorised renderer draws what rich-pixels' per-pixel renderer draws of the same
    image in the terminal's palette."""
    from gantui.ui.render import to_palette

    canvas = rgb_canvas()
    reference = Pixels.from_image(Image.fromarray(to_palette(canvas, mode)))._segments.segments
    assert halfblock_segments(canvas, 32, mode) == list(Segment.simplify(reference))


def test_the_palettes_are_the_terminals_own():
    """256: every channel a level of the xterm cube; 16: every colour one of rich's 16 standard
    ones, so the terminal shows them unrounded; none: grey."""
    from rich._palettes import STANDARD_PALETTE
    from rich.color import Color
    from rich.color_triplet import ColorTriplet

    from gantui.ui.render import ANSI16, CUBE, to_palette

    canvas = rgb_canvas()
    assert set(np.unique(to_palette(canvas, "256"))) <= set(CUBE.tolist())
    sixteen = {tuple(c) for c in to_palette(canvas, "16").reshape(-1, 3).tolist()}
    standard = [tuple(c) for c in STANDARD_PALETTE._colors]
    assert sixteen <= set(standard) and [tuple(c) for c in ANSI16.tolist()] == standard and len(sixteen) > 3
    for colour in sixteen:  # rich downgrades each to the standard colour it is
        number = Color.from_triplet(ColorTriplet(*colour)).downgrade(ColorSystem.STANDARD).number
        assert standard[number] == colour
    grey = to_palette(canvas, "none")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_big_tiles_are_area_averaged_to_fit():
    from gantui.ui.render import downscale

    images = np.zeros((1, 64, 64, 3), np.uint8)
    images[0, :, ::2] = 200  # stripes one pixel wide: averaged, not sampled
    small = downscale(images, 4)
    assert small.shape == (1, 16, 16, 3) and (small == 100).all()
    assert layout_for(38, 10, 64) == (4, 2, 8)  # an 80x24 pane: 8-pixel tiles, 8 of them
    assert layout_for(126, 56, 64)[2] == 2
