"""A screenshot of gantui in a real sixel terminal: xterm as a VT340 under Xvfb.

    python scripts/xterm_shot.py RUN --images sixel --out docs/screenshots/pictures-sixel.png
    python scripts/xterm_shot.py RUN --images blocks --out docs/screenshots/pictures-blocks.png

Runs `gantui watch RUN` (any extra flags after --) in a 120x40 xterm on a fresh Xvfb display,
waits `--wait` seconds, and writes the xterm's window as a PNG (xwd, then ImageMagick's convert).
Needs xvfb, xterm, x11-apps and imagemagick (Debian's packages of those names).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--images", default="auto")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", default="120x40", help="xterm's columns x rows (its cells are 6x13 pixels)")
    p.add_argument("--wait", type=float, default=8.0)
    p.add_argument("--display", default=":97")
    args = p.parse_args()
    cols, rows = map(int, args.size.split("x"))
    env = {**os.environ, "DISPLAY": args.display}
    env.pop("NO_COLOR", None)
    server = subprocess.Popen(["Xvfb", args.display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    xterm = None
    try:
        time.sleep(1.5)
        # TERM inside: xterm sets its own (xterm: 16 colours to Textual)
        watch = (f"TERM=xterm-256color COLORTERM=truecolor {sys.executable} -m gantui watch --images {args.images} "
                 f"{args.run}; sleep 600")
        xterm = subprocess.Popen(["xterm", "-ti", "vt340", "-xrm", "XTerm*numColorRegisters: 1024", "-geometry",
                                  f"{args.size}+0+0", "-e", "sh", "-c", watch], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.wait)
        shot = subprocess.run(["xwd", "-root", "-silent", "-display", args.display], capture_output=True, check=True)
        width, height = cols * 6 + 4, rows * 13 + 4  # the window: cells and xterm's 2-pixel border
        subprocess.run(["/usr/bin/convert", "xwd:-", "-crop", f"{width}x{height}+0+0", "+repage", str(args.out)],
                       input=shot.stdout, check=True)
        print(f"wrote {args.out}")
    finally:
        for proc in (xterm, server):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


if __name__ == "__main__":
    main()
