"""The reference: a DCGAN loop written the way most PyTorch GAN code is (pytorch/examples' dcgan).

Same Generator and Discriminator as gantui, with torch's own nn.Dropout and nn.ConvTranspose2d
(not gantui's cheaper CPU dropout mask and convolution backward), same batch size, Adam(2e-4,
0.5). torchvision's MNIST with ToTensor/Normalize through a DataLoader with two workers, label
tensors made each step, D not frozen during the G step, and `.item()` on the losses every step.

    python benchmarks/reference.py --steps 200 --device cpu

prints one JSON object: {"images_per_s": ..., "steps": ..., ...}. The MNIST files are
written from gantui's bundled copy into a temporary torchvision root (nothing is downloaded).
"""
from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from gantui.engine.data import load_mnist_arrays
from gantui.engine.device import resolve_device
from gantui.engine.models import Discriminator, Generator, init_weights


def write_mnist_root(root: Path) -> Path:
    """The bundled MNIST as the IDX files torchvision reads from ROOT/MNIST/raw."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = load_mnist_arrays(split)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, *images.shape) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, len(labels)) + labels.tobytes())
    return root


def plain_torch(model: nn.Module) -> nn.Module:
    """The model with torch's own layers, as hand-written code has them, in place of gantui's
    CPU dropout and convolution backward (subclasses without state of their own, so swapping
    the class keeps every weight)."""
    for layer in model.modules():
        for cls in (nn.ConvTranspose2d, nn.Conv2d, nn.Dropout):
            if isinstance(layer, cls):
                layer.__class__ = cls
                break
    return model


def reference_loop(root: Path, steps: int, warmup: int, batch_size: int, device: torch.device,
                   workers: int = 2) -> dict:
    torch.manual_seed(0)
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transforms.Compose([
        transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    netG, netD = plain_torch(Generator()).to(device), plain_torch(Discriminator()).to(device)
    netG.apply(init_weights)
    netD.apply(init_weights)
    criterion = nn.BCEWithLogitsLoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    losses = []
    step, start = 0, None
    while step < warmup + steps:
        for real, _ in loader:
            if step == warmup:
                start = time.perf_counter()
            if step == warmup + steps:
                break
            real = real.to(device)
            b = real.size(0)
            # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
            netD.zero_grad()
            label = torch.full((b,), 1.0, device=device)
            errD_real = criterion(netD(real), label)
            errD_real.backward()
            noise = torch.randn(b, 100, device=device)
            fake = netG(noise)
            label.fill_(0.0)
            errD_fake = criterion(netD(fake.detach()), label)
            errD_fake.backward()
            optimizerD.step()
            # (2) update G: maximize log(D(G(z)))
            netG.zero_grad()
            label.fill_(1.0)
            errG = criterion(netD(fake), label)
            errG.backward()
            optimizerG.step()
            losses.append((errD_real.item() + errD_fake.item(), errG.item()))
            step += 1
    elapsed = time.perf_counter() - start
    return {"images_per_s": steps * batch_size / elapsed, "steps": steps, "batch_size": batch_size,
            "device": str(device), "final_losses": losses[-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        result = reference_loop(write_mnist_root(Path(tmp)), args.steps, args.warmup, args.batch_size, device,
                                args.workers)
    if device.type == "cuda":
        result["gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
