"""Build gantui/data/mnist.npz, the MNIST copy that ships in the package.

Reads the four standard IDX files (gzipped or not) and writes one compressed .npz with
uint8 arrays train_images (60000, 28, 28), train_labels, test_images, test_labels.

    python scripts/build_mnist.py ../shared/datasets/mnist
"""
from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

FILES = {
    "train_images": ("train-images-idx3-ubyte", 16, (-1, 28, 28)),
    "train_labels": ("train-labels-idx1-ubyte", 8, (-1,)),
    "test_images": ("t10k-images-idx3-ubyte", 16, (-1, 28, 28)),
    "test_labels": ("t10k-labels-idx1-ubyte", 8, (-1,)),
}


def read_idx(folder: Path, stem: str, header: int, shape: tuple[int, ...]) -> np.ndarray:
    for path, opener in ((folder / f"{stem}.gz", gzip.open), (folder / stem, open)):
        if path.exists():
            with opener(path, "rb") as f:
                return np.frombuffer(f.read(), np.uint8, offset=header).reshape(shape)
    raise SystemExit(f"build_mnist: {stem}[.gz] not found in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder with the four MNIST IDX files")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "gantui/data/mnist.npz")
    args = parser.parse_args()
    arrays = {key: read_idx(args.source, *spec) for key, spec in FILES.items()}
    assert len(arrays["train_images"]) == len(arrays["train_labels"]) == 60000
    assert len(arrays["test_images"]) == len(arrays["test_labels"]) == 10000
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
