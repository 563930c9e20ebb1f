"""What the run shows of G: the fixed noise behind the sample grids (comparable over the run and
across a resume), the live preview's copy of it that `r` resamples, a conditional run's labels
(one row per class), and the images made from them.

The noise comes from a generator of its own, so previews and grids never disturb training's
random streams.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gantui.engine.data import to_uint8
from gantui.engine.gan import GAN

CPU = torch.device("cpu")


class Samples:
    def __init__(self, gan: GAN, count: int, seed: int) -> None:
        self.gan = gan
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.fixed_noise = gan.noise(count, self.generator, CPU)
        # A conditional run's grids: whole rows of classes, so perhaps fewer tiles than the noise.
        classes = gan.classes
        self.per_class = max(count // classes, 1) if classes else 0
        self.labels = (torch.arange(classes, device=gan.device).repeat_interleave(self.per_class)
                       if classes else None)
        self._place()

    @property
    def source(self) -> str:
        return "EMA G" if self.gan.ema is not None else "G"

    def resample(self) -> None:
        """New noise for the live preview only; the grids keep theirs."""
        self._preview_noise = self.gan.noise(len(self.fixed_noise), self.generator, CPU).to(self.gan.device)

    def preview(self, count: int) -> np.ndarray:
        """Up to `count` images from the preview's noise as CPU uint8 (a conditional run: every
        class's row, however few tiles show)."""
        count = max(1, min(count, len(self.fixed_noise)))
        if self.labels is not None:
            count = len(self.labels)
        return to_uint8(self.gan.generate(self._preview_noise[:count], self.labels))

    def grid(self) -> tuple[torch.Tensor, int]:
        """The fixed noise's images in [-1, 1] and the grid's row length."""
        if self.labels is None:
            return self.gan.generate(self._fixed_noise, None), 8
        return self.gan.generate(self._fixed_noise[:len(self.labels)], self.labels), self.per_class

    def state_dict(self) -> dict[str, Any]:
        return {"fixed_noise": self.fixed_noise.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fixed_noise = state["fixed_noise"]
        self.generator.set_state(state["generator"])
        self._place()

    def _place(self) -> None:
        """The fixed noise on the device; the preview's copy back to it."""
        self._fixed_noise = self.fixed_noise.to(self.gan.device)
        self._preview_noise = self._fixed_noise
