"""Fitting a dataset's evaluator: the small classifier trained on its training split, and the
statistics of its features on those images (what FID, KL and coverage compare against).

`gantui evaluator fit --dataset NAME` writes them into the user cache; `scripts/train_classifier.py`
writes MNIST's into the package, where they ship.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gantui.evaluation.classifier import STATS, WEIGHTS, Classifier
from gantui.run.rundir import atomic_write

BATCH = 128
SUBSET = 5000  # real features kept for density and coverage


def as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [-1, 1], the generator's range."""
    return images.float().div(127.5).sub(1.0)


def shift(batch: torch.Tensor, pixels: int = 2) -> torch.Tensor:
    """Each image moved by up to `pixels` in x and y, the border filled with background."""
    n, _, h, w = batch.shape
    padded = F.pad(batch, (pixels,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2, n)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


@torch.no_grad()
def batched(fn, x: torch.Tensor, size: int = 1000) -> torch.Tensor:
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


def fit(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], classes: int,
        epochs: int = 4, seed: int = 0, report: Callable[[str], None] = print) -> tuple[Classifier, dict[str, np.ndarray]]:
    """The classifier trained on `train` (uint8 images, int64 labels) with random shifts of up to 2
    pixels, and the statistics of its features: mu and sigma (float64) over all the training
    images, their class frequencies, SUBSET features drawn at random, the test accuracy."""
    torch.manual_seed(seed)
    x, y = as_input(train[0]), train[1].long()
    tx, ty = as_input(test[0]), test[1].long()
    model = Classifier(tuple(x.shape[1:]), classes)
    batch = min(BATCH, len(x))
    steps = epochs * (len(x) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(len(x) // batch):
            idx = perm[i * batch:(i + 1) * batch]
            loss = F.cross_entropy(model(shift(x[idx])), y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        accuracy = (batched(model, tx).argmax(1) == ty).float().mean().item()
        report(f"epoch {epoch + 1}/{epochs}: test accuracy {accuracy:.4f} ({time.time() - start:.0f} s)")

    model.eval()
    features = batched(model.features, x).double()
    subset = features[torch.randperm(len(features), generator=torch.Generator().manual_seed(1))[:SUBSET]]
    stats = {"mu": features.mean(0).numpy(), "sigma": torch.cov(features.T).numpy(),
             "class_freq": np.bincount(y.numpy(), minlength=classes) / len(y),
             "features": subset.numpy().astype(np.float16), "test_accuracy": np.float64(accuracy)}
    return model, stats


def encode(model: Classifier, stats: dict[str, np.ndarray]) -> dict[str, bytes]:
    """The two files' bytes: the weights, and the statistics (compressed)."""
    weights, archive = io.BytesIO(), io.BytesIO()
    torch.save(model.state_dict(), weights)
    np.savez_compressed(archive, **stats)
    return {WEIGHTS: weights.getvalue(), STATS: archive.getvalue()}


def write_evaluator(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    """The files, each written whole, then their SHA-256 (sha256.json, whose presence turns the
    evaluator on): a fit cut short leaves the dataset unscored, never half-scored."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sha256.json").unlink(missing_ok=True)
    for name, data in files.items():
        atomic_write(folder / name, lambda f, data=data: f.write(data))
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    atomic_write(folder / "sha256.json", lambda f: f.write(json.dumps(digests, indent=1).encode()))
    return digests
