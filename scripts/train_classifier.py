"""Train the MNIST classifier that gantui's quality figures use, and write what ships with it.

    python scripts/train_classifier.py [--epochs 4]

Trains on the MNIST training split (the copy bundled in gantui, built from the standard IDX
files) with random shifts of up to 2 pixels, inputs in [-1, 1] like the generator's output
(`gantui/evaluation/fit.py`, which `gantui evaluator fit` uses for other datasets).
Writes gantui/evaluation/classifier.pt (the weights) and gantui/evaluation/real_stats.npz
(mean and covariance of the 128-d features over the 60k training images, in float64; the
class frequencies; 5,000 features drawn at random, for density and coverage), prints the
test accuracy and the SHA-256 of both files, and records the hashes in classifier.py.
"""
from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import torch

from gantui.engine.data import load_mnist_arrays
from gantui.evaluation.classifier import STATS, WEIGHTS
from gantui.evaluation.fit import encode, fit

HERE = Path(__file__).resolve().parent.parent / "gantui" / "evaluation"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    train, test = ((torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y).long())
                   for x, y in (load_mnist_arrays("train"), load_mnist_arrays("test")))
    model, stats = fit(train, test, 10, args.epochs, args.seed)
    source = HERE / "classifier.py"
    text = source.read_text()
    for name, data in encode(model, stats).items():
        (HERE / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        print(f"{name}: sha256 {digest}")
        constant = "WEIGHTS" if name == WEIGHTS else "STATS"
        text = re.sub(rf'    {constant}: "[0-9a-f]*",', f'    {constant}: "{digest}",', text)
    source.write_text(text)
    print(f"test accuracy {stats['test_accuracy']:.4f}; wrote {WEIGHTS} and {STATS}; recorded their SHA-256 in "
          "classifier.py")


if __name__ == "__main__":
    main()
