"""`gantui sample` and `gantui eval`: images from a checkpoint's generator (its EMA when it has one)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gantui.engine.checkpoint import CheckpointError, load_checkpoint
from gantui.engine.data import to_uint8
from gantui.engine.device import resolve_device
from gantui.datasets import describe_config
from gantui.engine.networks import build_generator


def load_generator(checkpoint: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The generator that the run's previews and grids showed, in eval mode, and the run's config."""
    state = load_checkpoint(checkpoint)
    config = state["config"]
    data = describe_config(config)
    G = build_generator(data.shape, config["z_dim"], len(data.classes or ()) if config.get("conditional") else 0)
    weights = state["gan"].get("ema") or state["gan"]["generator"]
    try:
        G.load_state_dict(weights)
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(f"{checkpoint}: generator weights do not fit the model ({type(err).__name__})") from None
    return G.to(device).eval(), config


def generate(checkpoint: str | Path, n: int, seed: int = 0, device: str = "cpu", batch: int = 1024,
             digit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """n images as uint8 (n, H, W) or (n, H, W, 3), and the digits asked for when the G is conditional (`digit`,
    or 0-9 in turn); the same seed gives the same images."""
    dev = resolve_device(device)
    G, config = load_generator(checkpoint, dev)
    if digit is not None and not G.classes:
        raise CheckpointError(f"{checkpoint}: --digit needs a conditional run (trained with --conditional)")
    gen = torch.Generator().manual_seed(seed)
    if config.get("noise") == "uniform":
        noise = torch.rand(n, G.z_dim, generator=gen) * 2 - 1
    else:
        noise = torch.randn(n, G.z_dim, generator=gen)
    labels = None
    if G.classes:
        labels = torch.full((n,), digit) if digit is not None else torch.arange(n) % G.classes
    chunks = labels.split(batch) if labels is not None else [None] * len(noise.split(batch))
    with torch.no_grad():
        images = np.concatenate([to_uint8(G(z.to(dev)) if y is None else G(z.to(dev), y.to(dev)))
                                 for z, y in zip(noise.split(batch), chunks)])
    return images, (labels.numpy() if labels is not None else None)


def write_samples(images: np.ndarray, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, images)
        return
    from torchvision.utils import save_image

    tensor = torch.from_numpy(images).float() / 255.0
    tensor = tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2)
    save_image(tensor, out, nrow=int(np.ceil(np.sqrt(len(images)))))
