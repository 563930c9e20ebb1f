"""What gantui knows of each dataset, torch-free (the dashboard reads it too): its shape, its
class names, where its files come from, whether an evaluator scores it. Loading is the engine's
(engine/data.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    name: str
    shape: tuple[int, int, int]  # C x H x W
    classes: tuple[str, ...] | None
    torchvision: str | None  # the torchvision dataset class; None: ships with gantui
    evaluator: bool  # a classifier ships for it (FID, classes, KL, coverage in the Quality pane)

    @property
    def files(self) -> tuple[str, ...]:
        """The files torchvision looks for, under DATA_ROOT/<class>/raw/ (MNIST's IDX layout; it
        checks all four though gantui trains on the first two)."""
        if self.torchvision is None:
            return ()
        return tuple(f"{split}-{kind}" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


DIGITS = tuple(str(d) for d in range(10))
DATASETS = {
    "mnist": Dataset("mnist", (1, 28, 28), DIGITS, None, evaluator=True),
    "fashion-mnist": Dataset("fashion-mnist", (1, 28, 28), ("T-shirt", "trouser", "pullover", "dress", "coat",
                                                             "sandal", "shirt", "sneaker", "bag", "boot"),
                             "FashionMNIST", evaluator=False),
    "kmnist": Dataset("kmnist", (1, 28, 28), ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
                      "KMNIST", evaluator=False),
}


def describe(name: str) -> Dataset:
    return DATASETS[name]


def evaluation_off_reason(name: str) -> str | None:
    """Why a run on `name` has no Quality figures, or None when it has them."""
    if DATASETS[name].evaluator:
        return None
    return f"no evaluator for {name}: the shipped classifier knows MNIST's digits only"
