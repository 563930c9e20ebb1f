"""Datasets as one uint8 tensor on the training device, normalised per batch."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import torch

BUNDLED_MNIST = "mnist.npz"


@lru_cache(maxsize=2)
def load_mnist_arrays(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST split as uint8 (N, 28, 28) images and (N,) labels (cached: treat as read-only)."""
    with resources.files("gantui.data").joinpath(BUNDLED_MNIST).open("rb") as f:
        with np.load(f) as archive:
            return archive[f"{split}_images"], archive[f"{split}_labels"]


def load_dataset(name: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images as a (N, 1, 28, 28) uint8 tensor and their (N,) int64 labels, on `device`."""
    if name != "mnist":
        raise ValueError(f"unknown dataset {name!r}")
    images, labels = load_mnist_arrays("train")
    return torch.from_numpy(images).unsqueeze(1).to(device), torch.from_numpy(labels).long().to(device)


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the generator's tanh range."""
    return batch.float().mul_(2.0 / 255.0).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] -> CPU uint8 (N, H, W), the form that crosses to the UI."""
    pixels = images.detach().float().add(1.0).mul(127.5).round().clamp_(0, 255)
    return pixels.to(torch.uint8).squeeze(1).cpu().numpy()
