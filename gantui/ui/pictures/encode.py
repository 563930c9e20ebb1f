"""Images as terminal escape sequences: Kitty graphics, sixel, iTerm2 inline images; tmux's
passthrough around any of them. Pure functions of numpy arrays, tested byte for byte."""
from __future__ import annotations

import base64
import io
import zlib

import numpy as np
from PIL import Image

ESC = "\x1b"
ST = ESC + "\\"  # the string terminator that ends DCS, APC and OSC sequences
KITTY_CHUNK = 4096  # base64 bytes a Kitty graphics escape may carry


def tmux_wrap(sequence: str) -> str:
    """One escape sequence through tmux to the terminal outside it (tmux drops it otherwise, and
    passes it on only with `allow-passthrough on`): a DCS with every ESC inside doubled."""
    return f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ST}"


def at_cell(x: int, y: int, sequence: str) -> str:
    """`sequence` drawn with the cursor at cell (x, y), zero-based; the cursor put back after."""
    return f"{ESC}7{ESC}[{y + 1};{x + 1}H{sequence}{ESC}8"


def enlarged(image: np.ndarray, zoom: int) -> np.ndarray:
    """`image` `zoom` times bigger, each pixel a zoom x zoom square (nearest neighbour)."""
    return image.repeat(zoom, axis=0).repeat(zoom, axis=1) if zoom > 1 else image


def rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) grey or (H, W, 3) colour as contiguous (H, W, 3) uint8."""
    image = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1))


# -- Kitty graphics protocol (sw.kovidgoyal.net/kitty/graphics-protocol) ------------------
def kitty(image: np.ndarray, image_id: int) -> list[str]:
    """Escapes that transmit `image` as image `image_id` and place it at the cursor, which stays put
    (C=1); q=2: no replies, which would otherwise arrive as keys. Raw RGB, zlib'd (o=z): no PNG to
    encode, and smaller than PNG for these images. Each escape carries at most 4096 base64 bytes."""
    pixels = rgb(image)
    height, width = pixels.shape[:2]
    payload = base64.standard_b64encode(zlib.compress(pixels.tobytes(), 6)).decode("ascii")
    chunks = [payload[i:i + KITTY_CHUNK] for i in range(0, len(payload), KITTY_CHUNK)] or [""]
    out = []
    for n, chunk in enumerate(chunks):
        more = int(n < len(chunks) - 1)
        keys = (f"a=T,q=2,f=24,o=z,s={width},v={height},i={image_id},C=1,m={more}" if n == 0
                else f"q=2,m={more}")
        out.append(f"{ESC}_G{keys};{chunk}{ST}")
    return out


def kitty_place(image_id: int) -> str:
    """Place image `image_id` again at the cursor (after it was hidden), without sending it again."""
    return f"{ESC}_Ga=p,q=2,i={image_id},C=1{ST}"


def kitty_hide(image_id: int) -> str:
    """Take image `image_id` off the screen; the terminal keeps its pixels for kitty_place."""
    return f"{ESC}_Ga=d,q=2,d=i,i={image_id}{ST}"


def kitty_delete(image_id: int) -> str:
    """Take image `image_id` off the screen and free its pixels in the terminal."""
    return f"{ESC}_Ga=d,q=2,d=I,i={image_id}{ST}"


# -- iTerm2 inline images (iterm2.com/documentation-images.html) -------------------------
def iterm(image: np.ndarray) -> str:
    """A PNG shown at its own size in pixels at the cursor, the cursor left where it was."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    height, width = image.shape[:2]
    return (f"{ESC}]1337;File=inline=1;size={len(data)};width={width}px;height={height}px;"
            f"preserveAspectRatio=0;doNotMoveCursor=1:{base64.standard_b64encode(data).decode('ascii')}\a")


# -- sixel (the VT330/VT340's, as xterm, foot, mlterm, WezTerm, Konsole, Windows Terminal draw it) --
SAMPLE = 4096  # pixels a colour palette is chosen from


def palette_of(image: np.ndarray, colors: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices (H, W), palette (N, 3) uint8) with at most `colors` entries: evenly spaced greys for
    a grey image (or a colour one whose channels are equal), else a median cut of a sample of the
    pixels, each pixel then its nearest entry. A median cut of every pixel of a canvas of noise, as
    a young G draws, took 0.3-0.5 s; the fast octree 2 ms, but twice the error at 16 registers and
    16 colours for a grey ramp; a sample's median cut stays within a fifth of the whole's error."""
    colors = max(2, min(int(colors), 256))
    if image.ndim == 3 and (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all():
        image = image[..., 0]
    if image.ndim == 2:
        step = -(-256 // colors)
        indices = image // step
        levels = np.minimum(np.arange(256 // step + 1) * step + step // 2, 255)
        return indices.astype(np.int64), np.repeat(levels[:, None], 3, axis=1).astype(np.uint8)
    pixels = rgb(image).reshape(-1, 3)
    sample = pixels[::max(1, len(pixels) // SAMPLE)]  # every k-th pixel: the same sample for the same image
    palette = Image.fromarray(sample[None]).quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                                     dither=Image.Dither.NONE)
    quantised = Image.fromarray(rgb(image)).quantize(palette=palette, dither=Image.Dither.NONE)
    entries = np.array(palette.getpalette()[:3 * colors], dtype=np.uint8).reshape(-1, 3)
    return np.asarray(quantised, dtype=np.int64), entries


def sixel_lines(indices: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each band of six rows as a line a colour in it: (the lines' sixel characters (L, W) uint8,
    their colours (L,), their bands (L,)). numpy throughout: a Python loop over pixels or over a
    regex's matches cost a 1000x900 preview 150 ms (benchmarks/ui_cost.py --pictures)."""
    height, width = indices.shape
    lines, colours, bands = [], [], []
    for band, top in enumerate(range(0, height, 6)):
        rows = indices[top:top + 6]
        present = np.bincount(rows.ravel(), minlength=count) > 0
        used, local = np.flatnonzero(present), np.cumsum(present) - 1  # the band's colours, numbered from 0
        key = local[rows] * width + np.arange(width)  # each pixel's (colour, column)
        weights = np.broadcast_to((1 << np.arange(len(rows)))[:, None], rows.shape)  # its bit in the sixel
        bits = np.bincount(key.ravel(), weights.ravel(), minlength=len(used) * width).reshape(len(used), width)
        lines.append(bits.astype(np.uint8) + 63)
        colours.append(used)
        bands.append(np.full(len(used), band))
    return np.concatenate(lines), np.concatenate(colours), np.concatenate(bands)


def sixel(image: np.ndarray, colors: int = 256, zoom: int = 1) -> str:
    """A DCS sixel sequence of `image` enlarged `zoom` times: 1:1 pixels ("1;1), the raster's size
    declared, colours as RGB percentages, each band of six rows a line per colour in it, runs of
    four or more as repeats (!N), nothing after a line's last pixel. No final graphics newline, so a
    picture at the screen's last rows does not scroll it. The colours are chosen before the
    enlargement: zoom^2 times fewer pixels to quantise."""
    indices, palette = palette_of(np.asarray(image, dtype=np.uint8), colors)
    indices = enlarged(indices, zoom)
    height, width = indices.shape
    lines, colours, bands = sixel_lines(indices, len(palette))
    flat = lines.ravel()
    change = np.empty(flat.size, bool)
    change[0], change[1:] = True, flat[1:] != flat[:-1]
    change[::width] = True  # each line starts a run
    starts = np.flatnonzero(change)
    lengths = np.diff(starts, append=flat.size)
    chars = flat[starts]
    keep = ~((chars == 63) & ((starts + lengths) % width == 0))  # a line's empty end
    starts, lengths, chars = starts[keep], lengths[keep], chars[keep]
    text, offsets = run_bytes(lengths, chars)
    ends = offsets[np.searchsorted(starts // width, np.arange(len(lines) + 1))].tolist()
    used = np.unique(colours)
    percent = np.rint(palette.astype(np.float64) * 100 / 255).astype(int)
    parts = [f"{ESC}P0;1;0q\"1;1;{width};{height}"]
    parts += [f"#{i};2;{r};{g};{b}" for i, (r, g, b) in zip(used.tolist(), percent[used].tolist())]
    previous = 0
    for line, (colour, band) in enumerate(zip(colours.tolist(), bands.tolist())):
        if line:
            parts.append("-" if band != previous else "$")
        previous = band
        parts.append(f"#{colour}" + text[ends[line]:ends[line + 1]])
    return "".join(parts) + ST


def run_bytes(lengths: np.ndarray, chars: np.ndarray) -> tuple[str, np.ndarray]:
    """Runs of sixels as text: a run of four or more as a repeat (!N<sixel>), a shorter one as its
    sixels; and where each run's text starts (and the last ends). numpy, not a Python string a run:
    a canvas of noise has a hundred thousand runs."""
    long = lengths > 3
    longest = int(lengths.max(initial=1))
    digits = 1 + sum(((lengths >= 10 ** k).astype(np.int64) for k in range(1, len(str(longest)))),
                     np.zeros(len(lengths), np.int64))
    size = np.where(long, 2 + digits, lengths)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(size, out=offsets[1:])
    out = np.empty(int(offsets[-1]), np.uint8)
    short = ~long
    count = lengths[short]
    first = np.repeat(offsets[:-1][short], count)
    out[first + np.arange(len(first)) - np.repeat(np.cumsum(count) - count, count)] = np.repeat(chars[short], count)
    at, n, d = offsets[:-1][long], lengths[long], digits[long]
    out[at] = ord("!")
    for k in range(int(d.max(initial=0))):  # the repeat count's digits, the most significant first
        has = k < d
        out[at[has] + 1 + k] = (n[has] // 10 ** (d[has] - 1 - k)) % 10 + ord("0")
    out[at + 1 + d] = chars[long]
    return out.tobytes().decode("ascii"), offsets
