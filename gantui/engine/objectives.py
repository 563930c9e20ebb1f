"""The objectives: D's and G's losses as plain functions of D's outputs, the figures each reports,
and what "D has won" means for it.

D's output is a logit for the BCE losses (ns, minimax), a score for the others. Each objective
declares its figures once (the run announces them: `schema`), computes them by name on the
device from one batch's outputs, and says when D has won outright (the guard's collapse check).
The penalties (WGAN-GP's, R1) are gantui/penalties.py's, added by the GAN.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from gantui.common import DEFAULT_SCHEMA, Line


@dataclass(frozen=True)
class Objective(ABC):
    name: str
    title: str  # the second pane's title: what D is under this loss
    figures: tuple[Line, ...]  # what `stats` returns (its keys), beside the losses
    d_label: str = "D loss"  # D's loss's label
    # Constant targets by shape, made once: every tensor op in a step costs a GIL round trip, and
    # under a busy UI or server thread each of those can wait a switch interval.
    _targets: dict[Any, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    def target(self, like: torch.Tensor, value: float, n_real: int = 0) -> torch.Tensor:
        """A constant target shaped like `like`; with `n_real`, 1 for the first n_real and `value` after."""
        key = (like.shape, like.device, value, n_real)
        if key not in self._targets:
            t = torch.full_like(like, value)
            t[:n_real] = 1.0
            self._targets[key] = t
        return self._targets[key]

    @abstractmethod
    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def g_loss(self, fake: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def stats(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def won(self, row: dict[str, Any]) -> bool:
        """D has won outright in this logging interval (G gets no useful signal)."""
        return False


class NonSaturating(Objective):
    """Goodfellow et al. 2014's practical form: G maximises log D(G(z)). gantui's default."""

    def d_loss(self, real, fake):
        # One BCE over both halves, as the reference does it in one batch: the mean of both is half their sum.
        logits = torch.cat((real, fake))
        return 2 * F.binary_cross_entropy_with_logits(logits, self.target(logits, 0.0, len(real)))

    def g_loss(self, fake):
        return F.binary_cross_entropy_with_logits(fake, self.target(fake, 1.0))

    def stats(self, real, fake):
        return {"d_real": torch.sigmoid(real).mean(), "d_fake": torch.sigmoid(fake).mean(),
                "acc_real": (real > 0).float().mean(), "acc_fake": (fake < 0).float().mean()}

    def won(self, row):
        return row["loss_d"] < 0.01 and row["d_fake"] < 0.01


class Minimax(NonSaturating):
    """The original minimax game: G minimises log(1 - D(G(z))), which saturates early on."""

    def g_loss(self, fake):
        return -F.softplus(fake).mean()  # log(1 - sigmoid(x)) = -softplus(x)


class Hinge(Objective):
    """Lim & Ye 2017, Miyato et al. 2018 (with spectral norm): margins of 1 on D's scores."""

    def d_loss(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake):
        return -fake.mean()

    def stats(self, real, fake):
        return {"margin_real": real.mean(), "margin_fake": fake.mean(),
                "acc_real": (real > 0).float().mean(), "acc_fake": (fake < 0).float().mean()}

    def won(self, row):
        return row["loss_d"] < 0.01  # every score beyond its margin


class Wasserstein(Objective):
    """Arjovsky et al. 2017 with the gradient penalty of Gulrajani et al. 2017: a critic's scores.
    Its losses are not near 0 when it wins, so no "won" check: the guard watches NaNs and gradients."""

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    def g_loss(self, fake):
        return -fake.mean()

    def stats(self, real, fake):
        return {"wdist": real.mean() - fake.mean()}


class LeastSquares(Objective):
    """Mao et al. 2017: D's scores regressed to 1 (real) and 0 (fake)."""

    def d_loss(self, real, fake):
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()

    def g_loss(self, fake):
        return 0.5 * ((fake - 1) ** 2).mean()

    def stats(self, real, fake):
        return {"d_real": real.mean(), "d_fake": fake.mean()}

    def won(self, row):
        return row["loss_d"] < 0.005 and row["d_fake"] < 0.05


# The default recipe's figures are the panes a first-release run (which announced none) is drawn with.
_PROBABILITIES = DEFAULT_SCHEMA[1].lines
OBJECTIVES: dict[str, Objective] = {
    "ns": NonSaturating("ns", "Discriminator", _PROBABILITIES),
    "minimax": Minimax("minimax", "Discriminator", _PROBABILITIES),
    "hinge": Hinge("hinge", "Discriminator", (("margin_real", "D(x)", ".3f"), ("margin_fake", "D(G(z))", ".3f"),
                                              ("acc_real", "acc real", ".2f"), ("acc_fake", "acc fake", ".2f"))),
    "wgan-gp": Wasserstein("wgan-gp", "Critic", (("wdist", "W estimate", ".3f"),), "critic loss"),
    "lsgan": LeastSquares("lsgan", "Discriminator", (("d_real", "D(x)", ".3f"), ("d_fake", "D(G(z))", ".3f"))),
}

