"""The penalties on D, in one registry: the flags, the live checks, the GAN, the steering and the
panes all read it.

A penalty is a function of D and a batch, added to D's loss as `weight x scale x every x value`
at every `every`-th D step (lazily, as StyleGAN2 does R1: its last value stands in between). Its
weight is a setting of its own: a flag `--KEY W`, a key of `config.json` and of each checkpoint's
config, a live setting (0 pauses it; a penalty off at the start stays off, as its curve was not
announced), and its value a curve in the Losses pane. Registering one is a few lines:

    register(Penalty("drift", "drift", "drift penalty weight", "epsilon-drift weight on D(x)^2",
                     lambda b: b.D(b.real).float().pow(2).mean()))

Torch-free to import (the dashboard reads the settings): the built-in functions import torch when
they run.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Batch:
    """What a penalty is computed from, at one D step."""

    D: Any  # the raw discriminator: a double backward goes neither through DDP's wrapper nor torch.compile
    real: Any  # this step's real images
    fake: Any  # this step's fakes (detached from G)
    labels: Any  # the real images' labels (a conditional run), else None


@dataclass(frozen=True)
class Penalty:
    key: str  # its setting, flag (--KEY) and metric key
    label: str  # its curve's label
    setting: str  # its live setting's label in the dashboard's form
    help: str  # its flag's help
    compute: Callable[[Batch], Any]  # its value, a scalar tensor with a graph to D's weights
    every: int = 1  # computed every N D steps, weighted by N (lazy regularisation, Karras et al. 2020)
    scale: float = 1.0  # the weight's own factor (R1's gamma is halved)
    default: float = 0.0  # its weight unless its loss names one
    by_loss: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    batch_norm: bool = True  # False: while on from the start, D is built without batch norm

    def default_for(self, loss: str) -> float:
        return self.by_loss.get(loss, self.default)

    def coefficient(self, weight: float) -> float:
        """What its value is multiplied by in D's loss."""
        return weight * self.scale * self.every


PENALTIES: dict[str, Penalty] = {}


def register(penalty: Penalty) -> Penalty:
    """A new penalty, for every run this process starts (a key already taken is refused)."""
    if penalty.key in PENALTIES and PENALTIES[penalty.key] is not penalty:
        raise ValueError(f"a penalty named {penalty.key!r} is registered already")
    PENALTIES[penalty.key] = penalty
    return penalty


def gradient_penalty(D, real, fake, labels=None):
    """E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates of real and fake (WGAN-GP)."""
    import torch

    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = D(mixed) if labels is None else D(mixed, labels)
    (grad,) = torch.autograd.grad(out.float().sum(), mixed, create_graph=True)
    return ((grad.flatten(1).float().norm(dim=1) - 1) ** 2).mean()


def r1_penalty(D, real, labels=None):
    """E[||grad D(x)||^2] on real images (Mescheder et al. 2018); the weight is gamma / 2."""
    import torch

    real = real.detach().requires_grad_(True)
    out = D(real) if labels is None else D(real, labels)
    (grad,) = torch.autograd.grad(out.float().sum(), real, create_graph=True)
    return grad.flatten(1).float().pow(2).sum(dim=1).mean()


DEFAULT_GP = 10.0  # the WGAN-GP penalty weight of Gulrajani et al. 2017
register(Penalty("gp", "penalty", "gradient penalty weight",
                 "WGAN-GP gradient penalty weight on interpolates (default 10 with wgan-gp, else 0)",
                 lambda b: gradient_penalty(b.D, b.real.to(b.fake.dtype), b.fake, b.labels),
                 by_loss=MappingProxyType({"wgan-gp": DEFAULT_GP}), batch_norm=False))
register(Penalty("r1", "R1", "R1 weight",
                 "R1 penalty weight gamma on real images, lazily every 16 D steps (default 0: off)",
                 lambda b: r1_penalty(b.D, b.real, b.labels), every=16, scale=0.5))
