"""The meter: metric sums kept on the device, read back once per logging interval; and the clock
that times the interval's throughput."""
from __future__ import annotations

import time

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn


def grad_norm(modules: Iterable[nn.Module], device: torch.device) -> torch.Tensor:
    """The L2 norm of all the gradients the modules hold (0 when none), on the device."""
    grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class Meter:
    """Sums of `keys` over the steps of an interval; `read` is the interval's one host read
    (nanoGPT marks its .item() the same way: a CPU-GPU sync point)."""

    def __init__(self, keys: Sequence[str], device: torch.device) -> None:
        self.keys = tuple(keys)
        self.sums = torch.zeros(len(self.keys), device=device)
        self.steps = 0

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        """One step's figures, by name: each of `keys` (a missing one is a KeyError, not a shift)."""
        with torch.no_grad():
            self.sums += torch.stack([values[key] for key in self.keys]).float()  # two ops: each op is a GIL round trip
        self.steps += 1

    def read(self, extra: dict[str, torch.Tensor], reduce: Callable[[torch.Tensor], list[float]] | None = None
             ) -> dict[str, float]:
        """The means since the last read, and the `extra` figures (read at the same time); `reduce`:
        how they are read (the ranks of a torchrun job average them in the same exchange)."""
        tail = torch.stack([v.float().reshape(()) for v in extra.values()]) if extra else self.sums[:0]
        means = torch.cat((self.sums / max(self.steps, 1), tail))
        values = reduce(means) if reduce is not None else means.tolist()
        self.reset()
        return dict(zip((*self.keys, *extra), values))

    def reset(self) -> None:
        self.sums.zero_()
        self.steps = 0


class Clock:
    """The images trained since the interval began, and its time: images/s and steps/s. Reset
    here alone: at each row, and after what is not training (a pause, a rollback)."""

    def __init__(self) -> None:
        self.images_per_s = 0.0  # the last interval's, all ranks together (an estimate before the first)
        self.reset()

    def reset(self) -> None:
        self.start, self.images = time.perf_counter(), 0

    def count(self, images: int) -> None:
        self.images += images

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)
