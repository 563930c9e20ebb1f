"""Differentiable augmentation (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient
GAN Training"): the same random transforms on real and generated images before D, in both
steps, so D cannot memorise the data and G still gets gradients through them.

The three policies of the paper, written for images in [-1, 1] of any channel count; they draw
from torch's global RNG (seeded, saved in checkpoints).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0-2) and contrast (x0.5-1.5), per image."""
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros (mid-grey)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy.unsqueeze(0) + dy + 1).clamp(0, h + 1)  # indices into the zero-padded image
    gx = (gx.unsqueeze(0) + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    index = (gy * (w + 2) + gx).flatten(1)  # (n, h*w) into the padded image's flat pixels
    flat = padded.flatten(2)  # (n, c, (h+2)*(w+2))
    return flat.gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1)).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero (mid-grey) a random square of `ratio` of the size in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((gy.unsqueeze(0) >= oy - ch // 2) & (gy.unsqueeze(0) < oy - ch // 2 + ch)
              & (gx.unsqueeze(0) >= ox - cw // 2) & (gx.unsqueeze(0) < ox - cw // 2 + cw))
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}


def augment(x: torch.Tensor, policies: list[str]) -> torch.Tensor:
    for name in policies:
        x = POLICIES[name](x)
    return x
