"""A user's images as the run shows and keeps them: uint8 tiles and PNG grids. Torch-free: a
tensor is read with its own methods, and only the tiles asked for leave the device."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GRID_PADDING = 2  # torchvision's make_grid default: the trainer's grids and replays use it too
CHANNELS = (1, 3, 4)  # grey, RGB, RGBA (the alpha is dropped)


def layout(shape: tuple[int, ...]) -> str:
    """How an array of `shape` holds images: "NCHW", "NHWC", "NHW", "CHW", "HWC" or "HW";
    ValueError naming the shape when it cannot be images."""
    def small(n: int) -> bool:
        return n in CHANNELS

    if len(shape) == 4 and small(shape[1]) and shape[2] > 4 and shape[3] > 4:
        return "NCHW"
    if len(shape) == 4 and small(shape[3]) and shape[1] > 4 and shape[2] > 4:
        return "NHWC"
    if len(shape) == 3 and small(shape[0]) and shape[1] > 4 and shape[2] > 4:
        return "CHW"
    if len(shape) == 3 and small(shape[2]) and shape[0] > 4 and shape[1] > 4:
        return "HWC"
    if len(shape) == 3 and shape[1] > 4 and shape[2] > 4:
        return "NHW"
    if len(shape) == 2 and shape[0] > 4 and shape[1] > 4:
        return "HW"
    raise ValueError(f"log_images(): an array of shape {tuple(shape)} is not images: use (N, C, H, W), "
                     f"(N, H, W, C), (N, H, W) or one image, with C 1 or 3 and sides over 4 pixels")


def count(images: Any) -> int:
    return int(images.shape[0]) if layout(tuple(images.shape)).startswith("N") else 1


def tiles(images: Any, n: int) -> np.ndarray:
    """The first `n` images as uint8 (n, H, W) grey or (n, H, W, 3) RGB. Floats are read as
    [-1, 1] when any value is negative, else as [0, 1]; uint8 as they are."""
    form = layout(tuple(images.shape))
    if not form.startswith("N"):
        images, form = images[None], "N" + form
    images = images[:n]
    if hasattr(images, "detach"):  # a torch tensor: only these n leave the device
        images = images.detach().float().cpu().numpy() if images.dtype.is_floating_point else images.detach().cpu().numpy()
    array = np.asarray(images)
    if form == "NCHW":
        array = array.transpose(0, 2, 3, 1)
    elif form == "NHW":
        array = array[..., None]
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if array.size and float(np.nanmin(array)) < 0:
            array = (array + 1) / 2
        array = np.clip(np.nan_to_num(array) * 255 + 0.5, 0, 255).astype(np.uint8)
    if array.shape[-1] == 4:
        array = array[..., :3]
    return array[..., 0] if array.shape[-1] == 1 else np.ascontiguousarray(array)


def grid(images: np.ndarray, nrow: int = 8) -> np.ndarray:
    """Tiles in rows of `nrow` with a black border of GRID_PADDING, as torchvision's make_grid."""
    n, h, w = images.shape[:3]
    cols = min(nrow, n)
    rows = -(-n // cols)
    shape = (GRID_PADDING + rows * (h + GRID_PADDING), GRID_PADDING + cols * (w + GRID_PADDING), *images.shape[3:])
    out = np.zeros(shape, np.uint8)
    for i, tile in enumerate(images):
        r, c = divmod(i, cols)
        y, x = GRID_PADDING + r * (h + GRID_PADDING), GRID_PADDING + c * (w + GRID_PADDING)
        out[y:y + h, x:x + w] = tile
    return out


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Through a temp file and a rename: a grid is whole or absent (a killed process leaves no half)."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(pixels).save(tmp, format="PNG")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
