"""Datasets as one uint8 tensor on the training device, normalised per batch."""
from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from gantui.datasets import DATASETS, FOLDER, Dataset, DatasetError  # noqa: F401 (DatasetError: raised here too)
from gantui.run.rundir import atomic_write

BUNDLED_MNIST = "mnist.npz"
DOWNLOAD_TIMEOUT = 10.0  # seconds a stalled server may leave a read unanswered (urllib has no timeout of its own)


def default_root() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("gantui") / "datasets"


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch(name: str, root: str | Path | None = None) -> None:
    """Make sure a torchvision dataset's files are under `root` (the user cache by default),
    downloading them when they are not; DatasetError when that fails. The bundled MNIST needs nothing."""
    data = DATASETS.get(name)
    if data is None or data.torchvision is None:
        return
    import torchvision.datasets

    root = Path(root) if root else default_root()
    where = root / data.where
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT):
            getattr(torchvision.datasets, data.torchvision)(str(root), train=True, download=True)
    except Exception as err:  # URLError, a timeout, a bad checksum, a full disk: all end the same way
        reason = str(err).strip().splitlines()
        raise DatasetError(f"{name}: not found and not downloaded ({reason[-1] if reason else type(err).__name__}); "
                           f"put {', '.join(data.files)} ({data.packed}) in {where}, or point --data-root at a "
                           f"directory holding {data.where}/") from None


@lru_cache(maxsize=2)
def load_mnist_arrays(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST split as uint8 (N, 28, 28) images and (N,) labels (cached: treat as read-only).

    The package holds them compressed (11 MB, 0.4-0.6 s to inflate); the first start unpacks them
    into the user cache (55 MB) and every later one reads them from there in milliseconds. A cache
    that cannot be written costs only the time."""
    bundled = resources.files("gantui.data").joinpath(BUNDLED_MNIST)
    with bundled.open("rb") as f:
        unpacked = default_root() / f"mnist-bundled-{f.seek(0, 2)}"  # the size names the version
    names = [unpacked / f"{split}_{part}.npy" for part in ("images", "labels")]
    with contextlib.suppress(OSError, ValueError):  # not there yet, or not readable: inflate it
        return np.load(names[0]), np.load(names[1])
    with bundled.open("rb") as f, np.load(f) as archive:
        arrays = archive[f"{split}_images"], archive[f"{split}_labels"]
    with contextlib.suppress(OSError):
        unpacked.mkdir(parents=True, exist_ok=True)
        for name, array in zip(names, arrays):
            atomic_write(name, lambda out, array=array: np.save(out, array))
    return arrays


def load_dataset(data: Dataset, device: torch.device, root: str | Path | None = None, folder: str | None = None,
                 train: bool = True, progress: Callable[[int, int], None] | None = None,
                 notice: Callable[[str], None] = lambda text: None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images as a (N, C, H, W) uint8 tensor and their (N,) int64 labels (a folder's:
    all 0), on `device` (a torchvision dataset's files must be there already: `fetch`; a folder's
    images from the cache, or decoded now with `progress(done, total)`, then `notice` says how it
    went); `train` False: the test split."""
    if data.name == FOLDER:
        from gantui.engine import folder as images_folder

        channels, size = data.shape[:2]
        found = images_folder.load(images_folder.scan(folder, size, channels), channels, progress)
        notice(images_folder.summary(folder, found))
        images = torch.from_numpy(found.images)
        return images.to(device), torch.zeros(len(images), dtype=torch.long, device=device)
    if data.torchvision is None:
        images, labels = (torch.from_numpy(a) for a in load_mnist_arrays("train" if train else "test"))
    else:
        import torchvision.datasets

        found = getattr(torchvision.datasets, data.torchvision)(str(Path(root) if root else default_root()), train=train)
        images, labels = torch.as_tensor(found.data), torch.as_tensor(found.targets)
        if images.dim() == 4:  # CIFAR's arrays are N x H x W x C
            images = images.permute(0, 3, 1, 2)
    return images.reshape(-1, *data.shape).contiguous().to(device), labels.long().to(device)


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the generator's tanh range."""
    return batch.float().mul_(2.0 / 255.0).sub_(1.0)


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """`to_uint8`'s form back as a uint8 (N, C, H, W) tensor."""
    pixels = torch.from_numpy(images)
    return pixels.unsqueeze(1) if pixels.dim() == 3 else pixels.permute(0, 3, 1, 2)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] -> CPU uint8, the form that crosses to the UI: (N, H, W) grey,
    (N, H, W, 3) colour."""
    pixels = images.detach().float().add(1.0).mul(127.5).round().clamp_(0, 255).to(torch.uint8)
    pixels = pixels.squeeze(1) if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 1)
    return pixels.contiguous().cpu().numpy()
