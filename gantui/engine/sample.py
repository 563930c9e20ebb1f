"""`gantui sample`: images from a checkpoint's generator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gantui.engine.checkpoint import CheckpointError, load_checkpoint
from gantui.engine.data import to_uint8
from gantui.engine.device import resolve_device
from gantui.engine.models import Generator


def load_generator(checkpoint: str | Path, device: torch.device) -> Generator:
    state = load_checkpoint(checkpoint)
    G = Generator(state["config"]["z_dim"])
    try:
        G.load_state_dict(state["generator"])
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(f"{checkpoint}: generator weights do not fit the model ({type(err).__name__})") from None
    return G.to(device).eval()


def generate(checkpoint: str | Path, n: int, seed: int = 0, device: str = "cpu", batch: int = 1024) -> np.ndarray:
    """n images as uint8 (n, 28, 28); the same seed gives the same images."""
    dev = resolve_device(device)
    G = load_generator(checkpoint, dev)
    noise = torch.randn(n, G.project[0].in_features, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return np.concatenate([to_uint8(G(chunk.to(dev))) for chunk in noise.split(batch)])


def write_samples(images: np.ndarray, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, images)
        return
    from torchvision.utils import save_image

    tensor = torch.from_numpy(images).unsqueeze(1).float() / 255.0
    save_image(tensor, out, nrow=int(np.ceil(np.sqrt(len(images)))))
