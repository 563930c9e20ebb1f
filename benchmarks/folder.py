"""`--data DIR`: the first decode of a folder (images/s) by Pillow and by torchvision.io, and the
cached start, in a fresh process.

    python benchmarks/folder.py [--n 10000] [--size 64] [--rounds 2]

Writes --n photos-like images (256x192, three quarters JPEG, a quarter PNG) into a temporary
folder, then, in rounds, decodes them all to --size x --size RGB with each decoder in a thread
pool of one worker a core (the way gantui does), Pillow twice (its A/A pair): the ratio to the
first Pillow pass of each round is the figure to read. Then `engine.folder.load` twice in fresh
processes: the first decodes and caches, the second reads the cache.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from gantui.engine.folder import decode, find_images

RESULTS = Path(__file__).resolve().parent / "results"


def write_folder(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:192, :256]
    for i in range(n):
        base = rng.integers(0, 255, 3)
        image = (base + 40 * np.sin(xx[..., None] / rng.integers(5, 40) + yy[..., None] / rng.integers(5, 40)
                                    + np.arange(3))).clip(0, 255).astype(np.uint8)
        folder = root / f"{i // 1000:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / (f"{i:05d}.png" if i % 4 == 0 else f"{i:05d}.jpg"), quality=90)


def torchvision_decode(path: Path, size: int) -> np.ndarray:
    import torch
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as TF

    image = decode_image(str(path), mode=ImageReadMode.RGB)
    side = min(image.shape[1:])
    image = TF.center_crop(image, [side, side])
    return TF.resize(image, [size, size], antialias=True).to(torch.uint8).numpy()


def rate(decoder, files: list[Path], size: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for _ in pool.map(lambda p: decoder(p, size), files):
            pass
    return len(files) / (time.perf_counter() - start)


def fresh_load(folder: Path, size: int, cache: Path) -> tuple[bool, float]:
    code = ("import sys, time; from gantui.engine.folder import load, scan; t = time.perf_counter(); "
            "f = load(scan(sys.argv[1], int(sys.argv[2]))); print(f.cached, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(folder), str(size)], capture_output=True, text=True,
                         check=True, env={**os.environ, "XDG_CACHE_HOME": str(cache)}).stdout.split()
    return out[0] == "True", float(out[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        write_folder(folder, args.n)
        files = find_images(folder)
        pillow = lambda path, size: decode(path, size, "RGB")  # noqa: E731
        torchvision_decode(files[0], args.size)  # its import and first call outside the timing
        rounds = []
        for _ in range(args.rounds):
            a, tv, b = rate(pillow, files, args.size), rate(torchvision_decode, files, args.size), \
                rate(pillow, files, args.size)
            rounds.append({"pillow": a, "torchvision.io": tv, "pillow again": b, "torchvision/pillow": tv / a,
                           "A/A pillow": b / a})
            print(json.dumps(rounds[-1]), flush=True)
        first, cached = fresh_load(folder, args.size, Path(tmp) / "cache"), fresh_load(folder, args.size,
                                                                                      Path(tmp) / "cache")
    assert not first[0] and cached[0]
    result = {"n": args.n, "size": args.size, "cores": os.cpu_count(), "rounds": rounds,
              "first_load_s": first[1], "cached_load_s": cached[1]}
    print(f"first start (decode + cache) {first[1]:.1f} s ({args.n / first[1]:,.0f} images/s), "
          f"cached start {cached[1]:.2f} s")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"folder-cpu-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
