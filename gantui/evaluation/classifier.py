"""The small classifier whose features the quality figures are computed on, one per dataset.

MNIST's is trained by `scripts/train_classifier.py`; its weights and the statistics of its
features on the real training images ship in this package. Another labelled dataset's is fitted by
`gantui evaluator fit --dataset NAME` into the user cache (gantui/evaluators/NAME/), its files'
SHA-256 recorded beside them. Either is checked against its SHA-256 on load.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from torch import nn

from gantui.common import GantuiError
from gantui.datasets import DATASETS, evaluator_dir

WEIGHTS = "classifier.pt"
STATS = "real_stats.npz"
# Recorded by scripts/train_classifier.py; a file that does not match is refused.
SHA256 = {
    WEIGHTS: "cf8f7595b5db25b49b5eca086e3b604b1f76932c134424ef53b027ae8c89e4ca",
    STATS: "a2be4a601f8f0429bbea504cc81ce0738a6111b10ca8c256c69111bf7ec0925d",
}
FEATURES = 128


class Classifier(nn.Module):
    """conv32-conv32-pool-conv64-conv64-pool-fc128-fc(classes) on [-1, 1] inputs; `features` is
    the fc128 output."""

    def __init__(self, shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        channels, size, _ = shape
        self.body = nn.Sequential(
            *block(channels, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (size // 4) ** 2, FEATURES), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class EvaluatorError(GantuiError, RuntimeError):
    """The shipped classifier files are missing or damaged; the message is one line."""


def _read(name: str, dataset: str) -> bytes:
    if dataset == "mnist":
        data, recorded = resources.files("gantui.evaluation").joinpath(name).read_bytes(), SHA256[name]
    else:
        folder = evaluator_dir(dataset)
        try:
            data, recorded = (folder / name).read_bytes(), json.loads((folder / "sha256.json").read_text())[name]
        except (OSError, ValueError, KeyError) as err:
            raise EvaluatorError(f"{folder / name}: missing or unreadable ({type(err).__name__}); fit it again with "
                                 f"`gantui evaluator fit --dataset {dataset}`") from None
    digest = hashlib.sha256(data).hexdigest()
    if recorded and digest != recorded:
        raise EvaluatorError(f"{name}: SHA-256 {digest[:12]}... does not match the recorded {recorded[:12]}...")
    return data


@lru_cache(maxsize=4)
def load_classifier(device: str = "cpu", dataset: str = "mnist") -> Classifier:
    import io

    data = DATASETS[dataset]
    model = Classifier(data.shape, len(data.classes or ()))
    model.load_state_dict(torch.load(io.BytesIO(_read(WEIGHTS, dataset)), map_location="cpu", weights_only=True))
    return model.eval().to(device, memory_format=torch.channels_last)  # 1.5x faster convs on the CPU


@lru_cache(maxsize=4)
def real_stats(dataset: str = "mnist") -> dict[str, np.ndarray]:
    """mu, sigma (float64) of the features on the real training images, their class
    frequencies, and a random 5k subset of the features (for density and coverage)."""
    import io

    with np.load(io.BytesIO(_read(STATS, dataset))) as archive:
        return {k: archive[k] for k in archive.files}
