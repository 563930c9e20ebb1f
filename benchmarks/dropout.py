"""Dropout on the CPU, forward and backward, on the discriminator's largest activation.

    python benchmarks/dropout.py

Three ways, timed in turns in one process: nn.Dropout (a Mersenne-Twister draw per element),
a byte mask applied with masked_fill_ (one 32-bit draw per four elements), and gantui's
`engine.models.Dropout` (one 64-bit draw per eight elements, a multiply by the mask).
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from gantui.engine.models import Dropout

SHAPE = (128, 64, 14, 14)  # D's first activation for a batch of 64 real + 64 generated images
P = 0.3


def masked_fill_dropout(x: torch.Tensor) -> torch.Tensor:
    n = x.numel()
    draws = torch.randint(-(2**31), 2**31 - 1, ((n + 3) // 4,), dtype=torch.int32)
    drop = draws.view(torch.uint8)[:n].view(x.shape) < round(P * 256)
    return (x * (1.0 / (1.0 - P))).masked_fill_(drop, 0)


def main() -> None:
    ways = {"nn.Dropout": nn.Dropout(P), "masked_fill_ byte mask": masked_fill_dropout, "gantui Dropout": Dropout(P)}
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(SHAPE, dtype=dtype, requires_grad=True)
        grad = torch.ones(SHAPE, dtype=dtype)
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(30):
            for name, way in ways.items():
                start = time.perf_counter()
                way(x).backward(grad)
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["nn.Dropout"])
        print(f"{str(dtype).removeprefix('torch.')} {SHAPE}, forward + backward, median of 30:")
        for name, ts in times.items():
            t = statistics.median(ts)
            print(f"  {name:24s} {t * 1000:6.2f} ms  {base / t:4.1f}x nn.Dropout")


if __name__ == "__main__":
    main()
