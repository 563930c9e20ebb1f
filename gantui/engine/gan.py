"""The GAN: G and D, their optimisers, the objective and its penalties, the EMA of G, one step.

`step` is one G update and the `d_steps` D updates before it; it never reads from the device
(the figures go to the meter). Live settings (learning rates, D steps, penalty weights, EMA)
change through `apply`, at a step boundary.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gantui.config import Config
from gantui.engine.diffaug import augment
from gantui.engine.meter import Meter, grad_norm
from gantui.engine.models import add_spectral_norm, init_weights
from gantui.engine.networks import build_discriminator, build_generator
from gantui.engine.objectives import OBJECTIVES, Line, gradient_penalty, r1_penalty

R1_EVERY = 16  # lazy R1 (Karras et al. 2020): every 16 D steps, weighted by 16


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
        self.classes = classes if cfg.conditional else 0
        self.G = build_generator(shape, cfg.z_dim, self.classes)
        self.D = build_discriminator(shape, self.classes, batch_norm=not (cfg.gp or cfg.spectral_norm))
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
        self.d_updates = 0  # D steps taken: R1's lazy schedule counts them
        self._zero = torch.zeros((), device=device)
        self._r1 = self._zero  # the last R1 value, reported between its steps
        # The penalties this run computes and reports: those on at its start (a live set changes their
        # weights, 0 included, but cannot add one: the run's figures are announced at its start).
        self.penalties = [key for key in ("gp", "r1") if getattr(cfg, key)]
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
    def lines(self) -> list[Line]:
        """The per-step figures, in the meter's order: losses, the objective's own, penalties, and a
        conditional D's class loss on real digits."""
        lines = [("loss_g", "G loss", ".3f"), ("loss_d", "critic loss" if self.objective.title == "Critic"
                                                else "D loss", ".3f"), *self.objective.figures]
        penalties = {"gp": ("gp", "penalty", ".3f"), "r1": ("r1", "R1", ".3f")}
        classes = [("class_loss", "D class loss", ".3f")] if self.classes else []
        return lines + [penalties[key] for key in self.penalties] + classes

    def schema(self) -> list[dict[str, Any]]:
        """The panes this run's figures fill (`Started.schema`): the losses and the penalties that are
        on, then the objective's figures. The gradient norms join the second pane while it has room
        (four lines fit at 80x24), else a third pane, which the headless line and metrics.jsonl show
        and the dashboard does not."""
        lines = self.lines()
        own = len(self.objective.figures)
        losses = lines[:2] + lines[2 + own:]
        second = lines[2:2 + own]
        grads = [("grad_g", "|grad G|", ".3g"), ("grad_d", "|grad D|", ".3g")]
        panes = [{"title": "Losses", "lines": losses}, {"title": self.objective.title, "lines": second}]
        if len(second) + len(grads) <= 4:
            second.extend(grads)
        else:
            panes.append({"title": "Gradients", "lines": grads})
        return [{"title": pane["title"], "lines": [list(line) for line in pane["lines"]]} for pane in panes]

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
        for i in range(self.cfg.d_steps):
            real, real_labels = batches.next()
            z, labels = self.noise(real.shape[0]), self.fake_labels(real.shape[0])
            last = i == self.cfg.d_steps - 1
            with self.autocast(), torch.set_grad_enabled(last):  # only the last fake batch trains G
                fake = self.G_fwd(z) if labels is None else self.G_fwd(z, labels)
            stats = self.d_step(real, fake.detach(), real_labels, labels)
        loss_g = self.g_step(fake, labels)
        self.meter.add([loss_g, *stats])

    def d_step(self, real, fake, real_labels=None, fake_labels=None) -> list[torch.Tensor]:
        """One D update; G gets no gradients (`fake` is detached). Returns the step's figures."""
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
        penalties = []
        if logits is not None:  # the class head learns real digits only
            class_loss = F.cross_entropy(logits[:bs], real_labels)
            loss = loss + class_loss
        if "gp" in self.penalties:  # eager D: a compiled graph does not take a double backward
            gp = self._zero
            if self.cfg.gp:  # a live set may have weighted it 0 for now
                with self.autocast():
                    gp = gradient_penalty(self.D, real.to(fake.dtype), fake, real_labels)
                loss = loss + self.cfg.gp * gp
            penalties.append(gp)
        if "r1" in self.penalties:
            if self.cfg.r1 and self.d_updates % R1_EVERY == 0:  # lazy: the last value stands in between
                with self.autocast():
                    r1 = r1_penalty(self.D, real, real_labels)
                loss = loss + self.cfg.r1 / 2 * R1_EVERY * r1
                self._r1 = r1.detach()  # not its graph, for the 15 steps it stands in
            penalties.append(self._r1)
        if logits is not None:
            penalties.append(class_loss)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        self.d_updates += 1
        with torch.no_grad():
            return [loss, *self.objective.stats(real_out, fake_out), *penalties]

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
        for name, value in values.items():
            setattr(self.cfg, name, value)
        for opt, name in ((self.opt_g, "lr_g"), (self.opt_d, "lr_d")):
            for group in opt.param_groups:
                group["lr"] = getattr(self.cfg, name)
        if not self.cfg.ema:
            self.ema = None
        elif self.ema is None:
            self.ema = EMA(self.G, self.cfg.ema)  # starts from G as it is now
        else:
            self.ema.decay = self.cfg.ema

    def halve_lr(self) -> None:
        """After a rollback: half of each optimiser's current rate, kept in the config."""
        self.apply({"lr_g": self.cfg.lr_g * 0.5, "lr_d": self.cfg.lr_d * 0.5})

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
                self.ema = EMA(self.G, self.cfg.ema)
        self.apply({})  # the config's rates are the run's (a rollback's halving, a live set, a flag)
