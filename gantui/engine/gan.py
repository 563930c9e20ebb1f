"""The GAN: G and D, their optimisers, the objective and its penalties, the EMA of G, one step.

`step` is one G update and the `d_steps` D updates before it; it never reads from the device
(its figures go to the meter, by name). The live settings (learning rates, D steps, penalty
weights, EMA) are the GAN's own (`self.live`) and change through `apply`, at a step boundary.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gantui.common import Line, Pane
from gantui.config import Config, Live
from gantui.engine.diffaug import augment
from gantui.engine.meter import Meter, grad_norm
from gantui.engine.models import add_spectral_norm, init_weights
from gantui.engine.networks import build_discriminator, build_generator
from gantui.engine.objectives import OBJECTIVES
from gantui.penalties import PENALTIES, Batch


def latents(kind: str, n: int, z_dim: int, generator: torch.Generator | None = None,
            device: torch.device | None = None) -> torch.Tensor:
    """n latents of the run's distribution (--noise): normal, or uniform on [-1, 1]."""
    if kind == "uniform":
        return torch.rand(n, z_dim, generator=generator, device=device) * 2 - 1
    return torch.randn(n, z_dim, generator=generator, device=device)


class EMA:
    """An exponential moving average of G's weights: ema <- d * ema + (1 - d) * w after each G
    step, with d = min(decay, (1 + n) / (10 + n)) at its n-th update (TensorFlow's num_updates
    warm-up: at 0.999 from the start, the previews would show G's initial blur for thousands of
    steps); buffers (batch-norm statistics) copied."""

    def __init__(self, G: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(G).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, G: nn.Module) -> None:
        weight = 1 - self.current_decay()
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in G.parameters()], weight)
        self.updates += 1
        for mine, theirs in zip(self.model.buffers(), G.buffers()):
            mine.copy_(theirs)


class GAN:
    def __init__(self, cfg: Config, device: torch.device, bf16: bool, classes: int = 0,
                 shape: tuple[int, int, int] = (1, 28, 28), ranks: int = 1) -> None:
        """`ranks` > 1: G and D wrapped in DDP apart (a torchrun job); see `_wrap`."""
        self.cfg, self.device, self.bf16 = cfg, device, bf16
        self.live = Live.of(cfg)
        self.classes = classes if cfg.conditional else 0
        if cfg.penalties_on is None or cfg.lr_g is None or cfg.lr_d is None:
            raise ValueError("GAN: a resolved config, please (Config.validate() returns one)")
        # The penalties this run computes and reports: those on at its start (a live set changes their
        # weights, 0 included, but cannot add one: the run's figures are announced at its start).
        self.penalties = [PENALTIES[key] for key in cfg.penalties_on]
        self.G = build_generator(shape, cfg.z_dim, self.classes)
        self.D = build_discriminator(shape, self.classes, batch_norm=cfg.d_batch_norm)
        self.G.apply(init_weights)
        self.D.apply(init_weights)
        if cfg.spectral_norm:
            add_spectral_norm(self.D)
        self.d_batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in self.D.modules())
        self.G.to(device)
        self.D.to(device)
        self.G_fwd, self.D_fwd, self.D_frozen = self._wrap(ranks > 1)
        # One kernel for the whole update, not one per op; None leaves torch's default elsewhere.
        fused = device.type in ("cuda", "cpu") or None
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas, fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas, fused=fused)
        self.objective = OBJECTIVES[cfg.loss]
        self.augments = cfg.augments()
        self.ema = EMA(self.G, cfg.ema) if cfg.ema else None
        self.d_updates = 0  # D steps taken: a lazy penalty's schedule counts them
        self._zero = torch.zeros((), device=device)
        self._last = {p.key: self._zero for p in self.penalties}  # reported between a lazy penalty's steps
        self.meter = Meter([key for key, _, _ in self.lines()], device)

    def _wrap(self, ddp: bool) -> tuple[nn.Module, nn.Module, nn.Module]:
        """G for training, D for its own step, D for G's step. Under DDP each network has a wrapper
        of its own (one around both waits for gradients that never come), batch-norm buffers stay
        each rank's own (`broadcast_buffers=False`: a second forward through a wrapped BN module
        would break the backward), and G's step goes through the raw D, frozen: through D's wrapper
        it would wait for D's gradients. The penalties' double backward uses the raw D too."""
        G, D = self.G, self.D
        if ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            if self.cfg.sync_bn:  # statistics over every rank's batch (CUDA only: checked at start)
                self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
                self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
                G, D = self.G, self.D

            ids = [self.device.index] if self.device.type == "cuda" else None
            with warnings.catch_warnings():  # its successor still syncs buffers at init: this is what we mean
                warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
                G, D = [DDP(m, device_ids=ids, broadcast_buffers=False) for m in (self.G, self.D)]
        if not self.cfg.compile:
            return G, D, self.D
        G, D_own = torch.compile(G), torch.compile(D)
        return G, D_own, torch.compile(self.D) if ddp else D_own

    # -- what it reports ---------------------------------------------------------------
    def losses(self) -> list[Line]:
        """The Losses pane's figures: G's and D's losses, the penalties that are on, and a
        conditional D's class loss on real digits."""
        return [("loss_g", "G loss", ".3f"), ("loss_d", self.objective.d_label, ".3f"),
                *[(p.key, p.label, ".3f") for p in self.penalties],
                *([("class_loss", "D class loss", ".3f")] if self.classes else [])]

    def lines(self) -> list[Line]:
        """Every per-step figure, in the meter's order: the losses, then the objective's own."""
        losses = self.losses()
        return [*losses[:2], *self.objective.figures, *losses[2:]]

    def schema(self) -> list[Pane]:
        """The panes this run's figures fill (`Started.schema`): the losses and the penalties that are
        on, then the objective's figures. The gradient norms join the second pane while it has room
        (four lines fit at 80x24), else a third pane, which the headless line and metrics.jsonl show
        and the dashboard does not."""
        own = tuple(Line(*line) for line in self.objective.figures)
        grads = (Line("grad_g", "|grad G|", ".3g"), Line("grad_d", "|grad D|", ".3g"))
        losses = Pane("Losses", tuple(Line(*line) for line in self.losses()))
        if len(own) + len(grads) <= 4:
            return [losses, Pane(self.objective.title, own + grads)]
        return [losses, Pane(self.objective.title, own), Pane("Gradients", grads)]

    def read(self, reduce: Callable[[torch.Tensor], list[float]] | None = None) -> dict[str, float]:
        """The interval's means and the current gradient norms: one host read (`reduce`: Meter.read)."""
        return self.meter.read({"grad_g": grad_norm([self.G], self.device), "grad_d": grad_norm([self.D], self.device)},
                               reduce)

    # -- the step ----------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def noise(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
        return latents(self.cfg.noise, n, self.cfg.z_dim, generator, device or self.device)

    def fake_labels(self, n: int) -> torch.Tensor | None:
        return torch.randint(0, self.classes, (n,), device=self.device) if self.classes else None

    def _D(self, x: torch.Tensor, labels: torch.Tensor | None, frozen: bool = False
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's scores, and its class logits when conditional (models.Discriminator); `frozen`: in
        G's step (the raw D under DDP)."""
        x = augment(x, self.augments) if self.augments else x
        D = self.D_frozen if frozen else self.D_fwd
        if labels is None:
            return D(x).float(), None
        score, logits = D(x, labels, classify=True)
        return score.float(), logits.float()

    def step(self, batches) -> None:
        """`d_steps` D updates, each on a new real batch, then one G update on the last fake batch."""
        d_steps = self.live.d_steps
        for i in range(d_steps):
            real, real_labels = batches.next()
            z, labels = self.noise(real.shape[0]), self.fake_labels(real.shape[0])
            last = i == d_steps - 1
            with self.autocast(), torch.set_grad_enabled(last):  # only the last fake batch trains G
                fake = self.G_fwd(z) if labels is None else self.G_fwd(z, labels)
            figures = self.d_step(real, fake.detach(), real_labels, labels)
        self.meter.add({"loss_g": self.g_step(fake, labels), **figures})

    def d_step(self, real, fake, real_labels=None, fake_labels=None) -> dict[str, torch.Tensor]:
        """One D update; G gets no gradients (`fake` is detached). Returns the step's figures by name."""
        bs = real.shape[0]
        with self.autocast():
            if self.d_batch_norm:  # two passes: a batch of real and fake would share its statistics,
                # and D would learn on mixed batches what G's step (fakes alone) never shows it
                (real_out, real_logits), (fake_out, _) = self._D(real.to(fake.dtype), real_labels), \
                    self._D(fake, fake_labels)
                out, logits = torch.cat((real_out, fake_out)), real_logits
            else:  # no batch norm (the 28x28 layout): the two usual passes in one
                both_labels = None if real_labels is None else torch.cat((real_labels, fake_labels))
                out, logits = self._D(torch.cat((real.to(fake.dtype), fake)), both_labels)
        real_out, fake_out = out[:bs], out[bs:]
        loss = self.objective.d_loss(real_out, fake_out)
        figures = {}
        if logits is not None:  # the class head learns real digits only
            class_loss = F.cross_entropy(logits[:bs], real_labels)
            loss = loss + class_loss
        # The penalties, on the raw D (a compiled graph takes no double backward)
        batch = Batch(self.D, real, fake, real_labels) if self.penalties else None
        for penalty in self.penalties:
            weight = self.live.penalties[penalty.key]
            if not weight:  # a live set weighted it 0 for now
                self._last[penalty.key] = self._zero
            elif self.d_updates % penalty.every == 0:  # a lazy one's last value stands in between
                with self.autocast():
                    value = penalty.compute(batch)
                loss = loss + penalty.coefficient(weight) * value
                self._last[penalty.key] = value.detach()  # not its graph, for the steps it stands in
            figures[penalty.key] = self._last[penalty.key]
        if logits is not None:
            figures["class_loss"] = class_loss
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        self.d_updates += 1
        with torch.no_grad():
            return {"loss_d": loss, **self.objective.stats(real_out, fake_out), **figures}

    def g_step(self, fake: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One G update through a frozen D: D gets no gradients and no update."""
        self.D.requires_grad_(False)
        with self.autocast():
            out, logits = self._D(fake, labels, frozen=True)
            loss = self.objective.g_loss(out)
            if logits is not None:  # and be read as the digit asked for
                loss = loss + F.cross_entropy(logits, labels)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        if self.ema is not None:
            self.ema.update(self.G)
        return loss

    # -- generation --------------------------------------------------------------------
    def generator(self) -> nn.Module:
        """The G that previews, grids and evaluation use: the EMA when there is one. Always an
        eager module: a compiled one would recompile for each batch size and for eval mode."""
        return self.ema.model if self.ema is not None else self.G

    def generate(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        G = self.generator()
        was_training = G.training
        G.eval()
        with torch.no_grad(), self.autocast():
            images = G(noise) if labels is None else G(noise, labels)
        G.train(was_training)
        return images

    # -- live settings -----------------------------------------------------------------
    def apply(self, values: dict[str, Any]) -> None:
        """Checked live settings (config.check_live_values), at a step boundary."""
        self.live.update(values)
        for opt, rate in ((self.opt_g, self.live.lr_g), (self.opt_d, self.live.lr_d)):
            for group in opt.param_groups:
                group["lr"] = rate
        if not self.live.ema:
            self.ema = None
        elif self.ema is None:
            self.ema = EMA(self.G, self.live.ema)  # starts from G as it is now
        else:
            self.ema.decay = self.live.ema

    def halve_lr(self) -> None:
        """After a rollback: half of each optimiser's current rate, kept in the live settings."""
        self.apply({"lr_g": self.live.lr_g * 0.5, "lr_d": self.live.lr_d * 0.5})

    def finite(self) -> bool:
        params = (*self.G.parameters(), *self.D.parameters())
        return bool(torch.stack([p.isfinite().all() for p in params]).all())  # one sync, not one per tensor

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "d_updates": self.d_updates}
        if self.ema is not None:
            state["ema"], state["ema_updates"] = self.ema.model.state_dict(), self.ema.updates
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.d_updates = state.get("d_updates", 0)
        if self.ema is not None:
            if "ema" in state:
                self.ema.model.load_state_dict(state["ema"])
                self.ema.updates = state.get("ema_updates", 0)
            else:  # EMA turned on at a resume: it starts from G
                self.ema = EMA(self.G, self.live.ema)
        self.apply({})  # the live rates are the run's (a rollback's halving, a live set, a flag)
