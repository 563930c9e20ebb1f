"""Write a folder of synthetic colour images to train on: gradients with discs and squares.

    python scripts/synthetic_folder.py DIR [--n 3000]

What the docs' GIF (docs/film.md), RGB screenshot (docs/datasets.md) and 64x64 dashboard-cost
figures (docs/performance.md) were made from:
120x100 images, half PNG, half JPEG, in three subfolders.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    for i in range(args.n):
        w, h = 120, 100
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, h)[:, None, None]
        image = Image.fromarray(((1 - t) * top + t * bottom).repeat(w, 1).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(1, 4)):
            x, y, r = rng.integers(20, 100), rng.integers(20, 80), rng.integers(8, 25)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
        folder = args.out / f"set{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / (f"{i:04d}.jpg" if i % 2 else f"{i:04d}.png"))
    print(f"wrote {args.n} images to {args.out}")


if __name__ == "__main__":
    main()
