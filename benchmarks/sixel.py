"""The sixel encoder's time for a preview's canvas, against another revision's, in turn.

    python benchmarks/sixel.py [--against REV] [--rounds 3]

Three canvases as the Samples pane lays them out (gantui/ui/pictures/layer.py): 200 MNIST digits
in 1000x900 pixels, and 16 64x64 RGB samples in 1576x784 pixels, smooth discs (as
benchmarks/ui_cost.py --rgb draws) and noise (as a young G draws). Each round times this tree's
encoder twice (the A/A pair) and, with --against, REV's `gantui/ui/pictures/encode.py` (loaded
from git) on the same canvas enlarged; the best of the rounds is printed.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gantui.engine.data import load_mnist_arrays
from gantui.ui.demo import disc_images
from gantui.ui.pictures import encode
from gantui.ui.pictures.encode import enlarged
from gantui.ui.pictures.layer import picture, zoomed_layout


def encoder_at(rev: str):
    """REV's encode.py as a module of its own (its sixel takes the enlarged canvas, or a zoom)."""
    source = subprocess.run(["git", "show", f"{rev}:gantui/ui/pictures/encode.py"], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).parent).stdout
    path = Path(tempfile.mkdtemp()) / "encode_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("encode_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--against", metavar="REV", help="a git revision whose encoder to time in turn")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    other = encoder_at(args.against) if args.against else None
    noise = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    cases = {"MNIST, 1000x900": (load_mnist_arrays("test")[0][:200], 1000, 900),
             "64x64 RGB discs, 1576x784": (disc_images(16, 64, seed=1), 1576, 784),
             "64x64 RGB noise, 1576x784": (noise, 1576, 784)}
    for name, (images, width, height) in cases.items():
        canvas, zoom = picture(images, zoomed_layout(width, height, images.shape[1]))
        big = enlarged(canvas, zoom)
        runs = {"this tree": lambda: encode.sixel(canvas, 256, zoom), "this tree (A/A)": lambda: encode.sixel(canvas, 256, zoom)}
        if other is not None:
            runs[args.against] = lambda: other.sixel(big, 256)
        best = {label: float("inf") for label in runs}
        for _ in range(args.rounds):
            for label, run in runs.items():
                start = time.perf_counter()
                run()
                best[label] = min(best[label], time.perf_counter() - start)
        print(f"{name} (x{zoom}): " + ", ".join(f"{label} {s * 1000:.0f} ms" for label, s in best.items()))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
