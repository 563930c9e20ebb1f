"""The batch stream: index slices of a per-epoch permutation of a dataset resident on the device."""
from __future__ import annotations

from typing import Any

import torch

from gantui.engine.data import normalise


class BatchStream:
    """Shuffled batches, epoch after epoch, from a generator of its own (training's RNG never
    sees the shuffling); the ragged tail of an epoch is dropped."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, seed: int,
                 rank: int = 0, world: int = 1) -> None:
        """`rank` of `world` processes: every rank shuffles alike and takes its own share of each
        step's `batch_size * world` images; the position counts them all."""
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.rank, self.world = rank, world
        self.device = images.device
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0  # completed epochs
        self._shuffle()

    def __len__(self) -> int:
        return len(self.images)

    def _shuffle(self) -> None:
        self.perm = torch.randperm(len(self.images), generator=self.gen)
        self._perm_dev = self.perm.to(self.device)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch in [-1, 1], and its labels when the stream has them."""
        bs = self.batch_size
        if self.pos + bs * self.world > len(self.perm):  # a new epoch
            self.epoch += 1
            self._shuffle()
        start = self.pos + self.rank * bs
        idx = self._perm_dev[start:start + bs]
        self.pos += bs * self.world
        return normalise(self.images[idx]), (self.labels[idx] if self.labels is not None else None)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "perm": self.perm.clone(), "rng": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos, self.perm = state["epoch"], state["pos"], state["perm"]
        self._perm_dev = self.perm.to(self.device)
        self.gen.set_state(state["rng"])
