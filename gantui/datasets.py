"""What gantui knows of each dataset, torch-free (the dashboard reads it too): its shape, its
class names, where its files come from, whether an evaluator scores it. Loading is the engine's
(engine/data.py, engine/folder.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gantui.common import GantuiError

FOLDER = "folder"  # `--data DIR`: a folder of images
IMAGE_SIZES = (32, 64, 128)  # a folder's images are resized to one of these
DEFAULT_IMAGE_SIZE = 64



class DatasetError(GantuiError):
    """A dataset that cannot be had: one line, naming the files and where they go."""

@dataclass(frozen=True)
class Dataset:
    name: str
    shape: tuple[int, int, int]  # C x H x W
    classes: tuple[str, ...] | None
    torchvision: str | None  # the torchvision dataset class; None: ships with gantui, or a folder
    evaluator: bool  # a classifier ships for it (FID, classes, KL, coverage in the Quality pane)
    files: tuple[str, ...] = ()  # what torchvision reads, under DATA_ROOT/<where>
    where: str = ""
    packed: str = "or their .gz"  # how the files come


def _idx(name: str, torchvision: str, classes: tuple[str, ...]) -> Dataset:
    """An MNIST-like set: four IDX files under ROOT/<Class>/raw/ (torchvision checks all four
    though gantui trains on the first two)."""
    files = tuple(f"{split}-{kind}" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    return Dataset(name, (1, 28, 28), classes, torchvision, evaluator=False, files=files, where=f"{torchvision}/raw")


DIGITS = tuple(str(d) for d in range(10))
DATASETS = {
    "mnist": Dataset("mnist", (1, 28, 28), DIGITS, None, evaluator=True),
    "fashion-mnist": _idx("fashion-mnist", "FashionMNIST", ("T-shirt", "trouser", "pullover", "dress", "coat",
                                                            "sandal", "shirt", "sneaker", "bag", "boot")),
    "kmnist": _idx("kmnist", "KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
    # torchvision checks each batch file's MD5 and unpickles it (NHWC uint8 arrays, labels as lists)
    "cifar10": Dataset("cifar10", (3, 32, 32), ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                "horse", "ship", "truck"), "CIFAR10", evaluator=False,
                       files=("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                              "test_batch", "batches.meta"), where="cifar-10-batches-py",
                       packed="from cifar-10-python.tar.gz"),
}


def describe(name: str, image_size: int | None = None, channels: int | None = None) -> Dataset:
    """A named dataset, or a folder's (`name` FOLDER) at its size and channel count."""
    if name == FOLDER:
        size = image_size or DEFAULT_IMAGE_SIZE
        return Dataset(FOLDER, (channels or 3, size, size), None, None, evaluator=False)
    return DATASETS[name]


def describe_config(config: dict) -> Dataset:
    """A run's dataset, from its config (a Config's fields, or config.json's)."""
    return describe(config.get("dataset", "mnist"), config.get("image_size"), config.get("channels"))


def evaluator_dir(name: str) -> Path:
    """Where `gantui evaluator fit` puts a dataset's classifier and feature statistics."""
    from platformdirs import user_cache_path

    return user_cache_path("gantui") / "evaluators" / name


def evaluation_off_reason(name: str) -> str | None:
    """Why a run on `name` has no Quality figures, or None when it has them: MNIST's evaluator
    ships; another labelled dataset's is fitted once (`gantui evaluator fit`)."""
    if name == FOLDER:
        return "a folder of images has no labels"
    if DATASETS[name].evaluator or (evaluator_dir(name) / "sha256.json").exists():
        return None
    return f"no evaluator for {name}: fit one with `gantui evaluator fit --dataset {name}`"
