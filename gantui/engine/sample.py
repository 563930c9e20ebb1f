"""`gantui sample` and `gantui eval`: images from a checkpoint's generator (its EMA when it has one)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gantui.engine.checkpoint import CheckpointError, load_checkpoint
from gantui.engine.data import from_uint8, to_uint8
from gantui.engine.gan import latents
from gantui.engine.device import resolve_device
from gantui.datasets import describe_config
from gantui.engine.networks import build_generator


def load_generator(checkpoint: str | Path, device: torch.device, state: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """The generator that the run's previews and grids showed, in eval mode, and the run's config
    (`state`: the checkpoint, when the caller has loaded it already)."""
    state = state or load_checkpoint(checkpoint)
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
             digit: int | None = None, state: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """n images as uint8 (n, H, W) or (n, H, W, 3), and the digits asked for when the G is conditional (`digit`,
    or 0-9 in turn); the same seed gives the same images."""
    dev = resolve_device(device)
    G, config = load_generator(checkpoint, dev, state)
    if digit is not None and not G.classes:
        raise CheckpointError(f"{checkpoint}: --digit needs a conditional run (trained with --conditional)")
    noise = latents(config.get("noise", "normal"), n, G.z_dim, torch.Generator().manual_seed(seed))
    labels = None
    if G.classes:
        labels = torch.full((n,), digit) if digit is not None else torch.arange(n) % G.classes
    chunks = labels.split(batch) if labels is not None else [None] * len(noise.split(batch))
    with torch.no_grad():
        images = np.concatenate([to_uint8(G(z.to(dev)) if y is None else G(z.to(dev), y.to(dev)))
                                 for z, y in zip(noise.split(batch), chunks)])
    return images, (labels.numpy() if labels is not None else None)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of `a` and `b` (White 2016): a Gaussian latent's norm
    stays typical on the way, where a straight line passes near the origin G never saw."""
    cos = (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    if (sin.abs() < 1e-6).any():  # (anti)parallel rows: a straight line is as good
        return torch.lerp(a, b, t)
    return torch.sin((1 - t) * omega) / sin * a + torch.sin(t * omega) / sin * b


def latent_walk(checkpoint: str | Path, n: int, points: int, frames: int, seed: int = 0,
                device: str = "cpu") -> list[np.ndarray]:
    """A looping walk of `n` tiles, each through `points` random latents and back to its first,
    `frames` frames between two: the frames as uint8 (H, W, 3) grids."""
    from torchvision.utils import make_grid

    dev = resolve_device(device)
    G, config = load_generator(checkpoint, dev)
    anchors = latents(config.get("noise", "normal"), points * n, G.z_dim, torch.Generator().manual_seed(seed))
    anchors = anchors.view(points, n, -1)
    labels = (torch.arange(n) % G.classes).to(dev) if G.classes else None
    grids = []
    with torch.no_grad():
        for p in range(points):
            for f in range(frames):
                z = slerp(anchors[p], anchors[(p + 1) % points], f / frames).to(dev)
                images = G(z) if labels is None else G(z, labels)
                grid = make_grid(images.float().cpu(), nrow=int(np.ceil(np.sqrt(n))), normalize=True, value_range=(-1, 1))
                grids.append(grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return grids


def write_samples(images: np.ndarray, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, images)
        return
    from torchvision.utils import save_image

    save_image(from_uint8(images).float() / 255.0, out, nrow=int(np.ceil(np.sqrt(len(images)))))
