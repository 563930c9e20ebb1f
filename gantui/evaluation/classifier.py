"""The MNIST classifier whose features the quality figures are computed on.

Trained by `scripts/train_classifier.py`; its weights and the statistics of its features
on the real training images ship in this package, checked against their SHA-256 on load.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from torch import nn

WEIGHTS = "classifier.pt"
STATS = "real_stats.npz"
# Recorded by scripts/train_classifier.py; a file that does not match is refused.
SHA256 = {
    WEIGHTS: "cf8f7595b5db25b49b5eca086e3b604b1f76932c134424ef53b027ae8c89e4ca",
    STATS: "a2be4a601f8f0429bbea504cc81ce0738a6111b10ca8c256c69111bf7ec0925d",
}
FEATURES = 128


class Classifier(nn.Module):
    """conv32-conv32-pool-conv64-conv64-pool-fc128-fc10 on [-1, 1] inputs; `features` is the fc128 output."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class EvaluatorError(RuntimeError):
    """The shipped classifier files are missing or damaged; the message is one line."""


def _read(name: str) -> bytes:
    data = resources.files("gantui.evaluation").joinpath(name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if SHA256[name] and digest != SHA256[name]:
        raise EvaluatorError(f"{name}: SHA-256 {digest[:12]}... does not match the recorded {SHA256[name][:12]}...")
    return data


@lru_cache(maxsize=4)
def load_classifier(device: str = "cpu") -> Classifier:
    import io

    model = Classifier()
    model.load_state_dict(torch.load(io.BytesIO(_read(WEIGHTS)), map_location="cpu", weights_only=True))
    return model.eval().to(device, memory_format=torch.channels_last)  # 1.5x faster convs on the CPU


@lru_cache(maxsize=1)
def real_stats() -> dict[str, np.ndarray]:
    """mu, sigma (float64) of the features on the 60k training images, their class
    frequencies, and a random 5k subset of the features (for density and coverage)."""
    import io

    with np.load(io.BytesIO(_read(STATS))) as archive:
        return {k: archive[k] for k in archive.files}
