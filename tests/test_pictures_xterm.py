"""The real terminal: `gantui watch` on a finished run in Debian's xterm as a VT340 (sixel) under
Xvfb; a screenshot of the screen (xwd) holds the run's saved samples pixel for pixel, enlarged by
a whole factor. Where xterm, Xvfb or xwd is missing, the test says so and skips (CI installs
them: .ci/run)."""
from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gantui.run.replay import grid_tiles
from support import write_run

TOOLS = ("Xvfb", "xterm", "xwd")
missing = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"no {', '.join(missing)} here (apt-get install xvfb xterm "
                                                      "x11-apps): the byte-level tests in test_pictures.py still run")


def read_xwd(data: bytes) -> np.ndarray:
    """An xwd screenshot (ZPixmap, 24 or 32 bits a pixel) as (H, W, 3) uint8."""
    fields = struct.unpack(">25I", data[:100])
    header, width, height, order = fields[0], fields[4], fields[5], fields[7]
    bits, line, masks, colours = fields[11], fields[12], fields[14:17], fields[19]
    assert fields[2] == 2 and bits in (24, 32), "a ZPixmap of 24 or 32 bits a pixel"
    start = header + 12 * colours
    rows = np.frombuffer(data[start:start + line * height], np.uint8).reshape(height, line)
    raw = rows[:, :width * bits // 8].reshape(height, width, bits // 8).astype(np.uint32)
    weights = 256 ** np.arange(bits // 8) if order == 0 else 256 ** np.arange(bits // 8)[::-1]
    value = (raw * weights.astype(np.uint32)).sum(axis=-1)
    shifts = [(mask & -mask).bit_length() - 1 for mask in masks]
    return np.stack([(value & m) >> s for m, s in zip(masks, shifts)], axis=-1).astype(np.uint8)


def find(screen: np.ndarray, tile: np.ndarray) -> tuple[float, tuple[int, int]]:
    """The mean absolute difference where `tile` fits `screen` best (grey), and where (y, x): sums
    of squares by FFT, the usual template match."""
    h, w = tile.shape
    shape = (screen.shape[0] + h, screen.shape[1] + w)
    image, template = screen.astype(np.float64), tile.astype(np.float64)
    correlation = np.fft.irfft2(np.fft.rfft2(image, shape) * np.conj(np.fft.rfft2(template, shape)), shape)
    windows = np.fft.irfft2(np.fft.rfft2(image ** 2, shape) * np.conj(np.fft.rfft2(np.ones_like(template), shape)), shape)
    ssd = windows - 2 * correlation + (template ** 2).sum()
    ssd = ssd[:screen.shape[0] - h + 1, :screen.shape[1] - w + 1]
    y, x = np.unravel_index(np.argmin(ssd), ssd.shape)
    return float(np.abs(image[y:y + h, x:x + w] - template).mean()), (int(y), int(x))


def free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.skip("no free X display number")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def test_gantui_watch_in_xterm_shows_the_samples_at_full_resolution(tmp_path):
    run = write_run(tmp_path / "run", {})  # noise tiles: one place on the screen matches each
    tiles = grid_tiles(run.grids()[-1][1], 28, 1)
    display = free_display()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TMUX", "TERM_PROGRAM")}
    env["DISPLAY"] = f":{display}"
    server = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    xterm = None
    try:
        deadline = time.monotonic() + 30
        while not Path(f"/tmp/.X11-unix/X{display}").exists():
            assert server.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        watch = f"{sys.executable} -m gantui watch {run.path}; sleep 120"
        xterm = subprocess.Popen(["xterm", "-ti", "vt340", "-xrm", "XTerm*numColorRegisters: 1024", "-geometry",
                                  "120x40+0+0", "-e", "sh", "-c", watch], env=env, cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        best = (float("inf"), (0, 0), 0)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            time.sleep(1.0)
            shot = subprocess.run(["xwd", "-root", "-silent", "-display", f":{display}"], capture_output=True,
                                  timeout=30).stdout
            if not shot:
                continue
            screen = read_xwd(shot)
            grey = screen.mean(axis=-1)
            for zoom in (1, 2, 3, 4):
                error, at = find(grey, tiles[0].repeat(zoom, 0).repeat(zoom, 1))
                best = min(best, (error, at, zoom))
            if best[0] < 3:
                break
        Image.fromarray(screen).save(tmp_path / "xterm.png")  # to look at when it fails
        error, (y, x), zoom = best
        assert error < 3, f"the first sample is not on the screen at full resolution (best: {error:.1f} levels " \
                          f"off at {x},{y}, x{zoom}); see {tmp_path / 'xterm.png'}"
        step = (28 + 2) * zoom  # its neighbour to the right, a gap away
        right = grey[y:y + 28 * zoom, x + step:x + step + 28 * zoom]
        assert np.abs(right - tiles[1].repeat(zoom, 0).repeat(zoom, 1)).mean() < 3
    finally:
        if xterm is not None:
            stop(xterm)
        stop(server)
