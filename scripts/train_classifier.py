"""Train the MNIST classifier that gantui's quality figures use, and write what ships with it.

    python scripts/train_classifier.py [--epochs 4]

Trains on the MNIST training split (the copy bundled in gantui, built from the standard IDX
files) with random shifts of up to 2 pixels, inputs in [-1, 1] like the generator's output.
Writes gantui/evaluation/classifier.pt (the weights) and gantui/evaluation/real_stats.npz
(mean and covariance of the 128-d features over the 60k training images, in float64; the
class frequencies; 5,000 features drawn at random, for density and coverage), prints the
test accuracy and the SHA-256 of both files, and records the hashes in classifier.py.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gantui.engine.data import load_mnist_arrays
from gantui.evaluation.classifier import STATS, WEIGHTS, Classifier

HERE = Path(__file__).resolve().parent.parent / "gantui" / "evaluation"


def as_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(127.5).sub(1.0).unsqueeze(1)


def shift(batch: torch.Tensor, pixels: int = 2) -> torch.Tensor:
    """Each image moved by up to `pixels` in x and y, the border filled with background."""
    n = batch.shape[0]
    padded = F.pad(batch, (pixels,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2, n)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28] for i in range(n)])


@torch.no_grad()
def batched(fn, x: torch.Tensor, size: int = 1000) -> torch.Tensor:
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    train_x, train_y = load_mnist_arrays("train")
    test_x, test_y = load_mnist_arrays("test")
    x, y = as_input(train_x), torch.from_numpy(train_y.astype(np.int64))
    tx, ty = as_input(test_x), torch.from_numpy(test_y.astype(np.int64))

    model = Classifier()
    steps = args.epochs * (len(x) // 128)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(len(x) // 128):
            idx = perm[i * 128:(i + 1) * 128]
            loss = F.cross_entropy(model(shift(x[idx])), y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        accuracy = (batched(model, tx).argmax(1) == ty).float().mean().item()
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f} ({time.time() - start:.0f} s)", flush=True)

    model.eval()
    features = batched(model.features, x).double()
    mu = features.mean(0)
    sigma = torch.cov(features.T)
    freq = np.bincount(train_y, minlength=10) / len(train_y)
    subset = features[torch.randperm(len(features), generator=torch.Generator().manual_seed(1))[:5000]]

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    (HERE / WEIGHTS).write_bytes(buf.getvalue())
    buf = io.BytesIO()
    np.savez_compressed(buf, mu=mu.numpy(), sigma=sigma.numpy(), class_freq=freq,
                        features=subset.numpy().astype(np.float16), test_accuracy=np.float64(accuracy))
    (HERE / STATS).write_bytes(buf.getvalue())

    source = HERE / "classifier.py"
    text = source.read_text()
    for name in (WEIGHTS, STATS):
        digest = hashlib.sha256((HERE / name).read_bytes()).hexdigest()
        print(f"{name}: sha256 {digest}")
        constant = "WEIGHTS" if name == WEIGHTS else "STATS"
        text = re.sub(rf'    {constant}: "[0-9a-f]*",', f'    {constant}: "{digest}",', text)
    source.write_text(text)
    print(f"test accuracy {accuracy:.4f}; wrote {WEIGHTS} and {STATS}; recorded their SHA-256 in classifier.py")


if __name__ == "__main__":
    main()
