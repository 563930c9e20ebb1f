"""The training loop, its controls and its events.

`Trainer.run()` is meant for one background thread. Other threads steer it only through
the control methods (pause, resume, save, resample, stop), which touch nothing but a
`threading.Event` and a `queue.Queue`; the loop applies them between steps. Previews are
generated only when a `PreviewSource` (the run's hub) says a consumer wants them.
"""
from __future__ import annotations

import errno
import math
import queue
import random
import shutil
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from gantui import events as ev
from gantui.common import HISTORY, rare_digits
from gantui.config import Config, default_eval_every
from gantui.engine.checkpoint import link_latest, load_checkpoint, save_checkpoint
from gantui.engine.data import load_dataset, normalise, to_uint8
from gantui.engine.device import configure_backend, resolve_device, use_bf16
from gantui.engine.models import Discriminator, Generator, init_weights
from gantui.rundir import RunDir, default_run_dir

METRIC_KEYS = ("loss_d", "loss_g", "d_real", "d_fake", "acc_real", "acc_fake")
MAX_ROLLBACKS = 3  # then the run stops as "diverged"
D_WON_INTERVALS = 5  # logging intervals of D loss ~0 and D(G(z)) ~0 that count as collapse
GRAD_NORM_LIMIT = 1e4
QUALITY_KEYS = ("fid", "fid_n", "classes", "kl", "confidence", "score")
EVAL_BATCH = 500  # latents per generator pass in an evaluation
# A mode-collapse warning: a digit under 1% of the samples, or the class histogram this far (KL)
# from MNIST's (one digit missing altogether is about 0.1), at this many evaluations in a row. It is
# armed by the first healthy evaluation, or after this many epochs: early samples are still blobs,
# and a classifier sorts blobs unevenly (36% "3" and KL 0.33 at step 1000 of a healthy run).
COLLAPSE_KL = 0.1
COLLAPSE_EVALS = 2
COLLAPSE_ARMED_EPOCHS = 2


class PreviewSource(Protocol):
    """Who decides when previews are generated and how many (service.hub.RunHub)."""

    def previews_due(self) -> int: ...  # 0: none now
    def preview_cost(self, seconds: float) -> None: ...


class Trainer:
    def __init__(
        self,
        config: Config,
        emit: Callable[[ev.Event], Any] = lambda event: None,
        *,
        resume_state: dict[str, Any] | None = None,
        previews: PreviewSource | None = None,
    ) -> None:
        """`previews`: None generates none (a headless run that nobody serves)."""
        self.config = config
        self.emit = emit
        self.previews = previews
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)
        self.run_dir = RunDir(config.out or default_run_dir())
        self._resume_state = resume_state
        self._commands: queue.Queue[str] = queue.Queue()
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self.step = 0
        self.epoch = 0  # completed epochs
        self.images_per_s = 0.0
        self._interval_steps = 0
        self._saved_step = -1
        self.rollbacks = 0
        self.diverged: str | None = None
        self._d_won = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.quality: deque[dict[str, Any]] = deque(maxlen=HISTORY)  # evaluations, for the Quality pane
        self._collapsed = 0  # evaluations in a row that looked like mode collapse
        self._collapse_armed = False
        # 0: off (also when the classifier files are damaged)
        self.eval_every = default_eval_every(self.device.type) if config.eval_every is None else config.eval_every

    # -- controls: safe from any thread ------------------------------------------------
    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def toggle_pause(self) -> None:
        self.resume() if self.paused else self.pause()

    def save(self) -> None:
        self._commands.put("save")

    def resample(self) -> None:
        self._commands.put("resample")

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused loop so it can finish

    # -- set-up ------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.data = load_dataset(cfg.dataset, self.device)
        self.steps_per_epoch = len(self.data) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch size {cfg.batch_size} is larger than the dataset ({len(self.data)} images)")
        self.total_steps = cfg.steps or cfg.epochs * self.steps_per_epoch

        configure_backend(self.device)
        self.G = Generator(cfg.z_dim)
        self.D = Discriminator()
        self.G.apply(init_weights)
        self.D.apply(init_weights)
        self.G.to(self.device)
        self.D.to(self.device)
        self.G_fwd, self.D_fwd = (torch.compile(self.G), torch.compile(self.D)) if cfg.compile else (self.G, self.D)
        # One kernel for the whole update, not one per op; None leaves torch's default elsewhere.
        fused = self.device.type in ("cuda", "cpu") or None
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas, fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas, fused=fused)
        self.loss = nn.BCEWithLogitsLoss()
        bs = cfg.batch_size
        self.ones = torch.ones(bs, device=self.device)
        self.labels_d = torch.cat((self.ones, torch.zeros(bs, device=self.device)))  # real, then fake
        self._sums = torch.zeros(len(METRIC_KEYS), device=self.device)

        # Separate generators: shuffling and preview noise never disturb the training RNG.
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.preview_gen = torch.Generator().manual_seed(cfg.seed + 1)
        # The fixed noise drives the sample grids (comparable over the run); the live preview starts
        # from it and `r` replaces only the preview's copy.
        self.fixed_noise = torch.randn(cfg.preview_count, cfg.z_dim, generator=self.preview_gen)
        self.perm = torch.randperm(len(self.data), generator=self.data_gen)
        self.pos = 0
        # The evaluation's latents: fixed by the seed, so evaluations compare across a run and a resume.
        eval_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.eval_noise = torch.randn(cfg.eval_n, cfg.z_dim, generator=eval_gen).to(self.device)

        resumed = self._resume_state is not None
        if resumed:
            self._load_state(self._resume_state)
            self._resume_state = None
        else:
            self._fixed_noise_dev = self.fixed_noise.to(self.device)
            self._perm_dev = self.perm.to(self.device)
        self._preview_noise_dev = self._fixed_noise_dev

        self.run_dir.create()
        self.run_dir.write_status("training", step=self.step, total_steps=self.total_steps)
        self.run_dir.write_config({**cfg.to_dict(), "out": str(self.run_dir.path), "resolved_device": str(self.device)})
        if resumed:
            self._event({"event": "resume", "step": self.step, "from": cfg.resume})

    # -- the step ----------------------------------------------------------------------
    def _next_batch(self) -> torch.Tensor:
        bs = self.config.batch_size
        if self.pos + bs > len(self.perm):  # a new epoch; the ragged tail is dropped
            self.epoch += 1
            self.perm = torch.randperm(len(self.data), generator=self.data_gen)
            self._perm_dev = self.perm.to(self.device)
            self.pos = 0
        idx = self._perm_dev[self.pos : self.pos + bs]
        self.pos += bs
        return normalise(self.data[idx])

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _train_step(self) -> None:
        bs = self.config.batch_size
        real = self._next_batch()
        z = torch.randn(bs, self.config.z_dim, device=self.device)
        with self._autocast():
            fake = self.G_fwd(z)
            # Discriminator step, real -> 1 and fake -> 0 in one batch: D has no batch norm, so this
            # is the two usual passes in one; the mean over both halves is half their sum.
            logits = self.D_fwd(torch.cat((real.to(fake.dtype), fake.detach()))).float()
            loss_d = 2 * self.loss(logits, self.labels_d)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        # Generator step (non-saturating): D is frozen, so it gets no gradients and no update.
        self.D.requires_grad_(False)
        with self._autocast():
            loss_g = self.loss(self.D_fwd(fake).float(), self.ones)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)

        with torch.no_grad():  # accumulate on the device; read every log_every steps
            logit_real, logit_fake = logits[:bs], logits[bs:]
            self._sums += torch.stack((
                loss_d, loss_g,
                torch.sigmoid(logit_real).mean(), torch.sigmoid(logit_fake).mean(),
                (logit_real > 0).float().mean(), (logit_fake < 0).float().mean(),
            )).float()

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> ev.Finished:
        try:
            self._setup()
        except Exception as err:
            return self._finish(ev.Finished("error", self.step, error=f"{type(err).__name__}: {err}"))
        self.emit(ev.Started(
            run_dir=str(self.run_dir.path), device=str(self.device), step=self.step,
            total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
            config=self.config.to_dict(), history=list(self.history), quality=list(self.quality),
            epoch=self.epoch, images_per_s=self.images_per_s,
        ))
        try:
            self._loop()
            if self._interval_steps and not self.diverged:
                self._log()
        except Exception as err:
            try:
                (self.run_dir.path / "error.log").write_text(traceback.format_exc())
            except OSError:  # a full disk: the one-line message below still goes out
                pass
            message = f"{type(err).__name__}: {err}"
            if isinstance(err, torch.OutOfMemoryError):
                message = (f"out of {self.device.type.upper()} memory at batch size {self.config.batch_size}; "
                           f"try --batch-size {max(self.config.batch_size // 2, 1)}")
            last = self.run_dir.last if self.run_dir.last.exists() else None
            return self._finish(ev.Finished("error", self.step, checkpoint=str(last) if last else None, error=message))
        if self.diverged:
            return self._finish(ev.Finished("diverged", self.step, checkpoint=str(self.run_dir.last),
                                            error=f"diverged {MAX_ROLLBACKS + 1} times: {self.diverged}"))
        reason = "stopped" if self._stop.is_set() else "done"
        if reason == "done" and self.eval_every and (not self.quality or self.quality[-1]["step"] != self.step):
            self._evaluate()  # the figures for the finished run
        if self._saved_step != self.step:
            self._save("final")
        return self._finish(ev.Finished(reason, self.step, checkpoint=str(self.run_dir.last)))

    def _finish(self, finished: ev.Finished) -> ev.Finished:
        try:
            self.run_dir.write_status(finished.reason, step=finished.step, total_steps=getattr(self, "total_steps", 0),
                                      error=finished.error)
        except OSError:
            pass
        self.emit(finished)
        return finished

    def _loop(self) -> None:
        cfg = self.config
        self._interval_steps = 0
        self._interval_start = time.perf_counter()
        if not self.run_dir.last.exists():
            self._save("start")  # a rollback target from the first step on
        if self.config.compile:
            self.emit(ev.Notice("compiling G and D (torch.compile): the first steps take a while"))
        while self.step < self.total_steps and not self.diverged:
            self._apply_commands()
            if not self._running.is_set():
                self._wait_while_paused()
            if self._stop.is_set():
                break
            self._train_step()
            self.step += 1
            self._interval_steps += 1
            if self.step == cfg.fault_nan_step and not self.rollbacks:  # test hook: a loss goes NaN
                self._sums.fill_(float("nan"))
            if self.step % cfg.log_every == 0:
                self._log()
                if self._check_health():
                    continue
            if self.step % cfg.sample_every == 0:
                self._save_grid(report=True)
            if self.eval_every and self.step % self.eval_every == 0:
                self._evaluate()
            if self.step % cfg.save_every == 0:
                self._save("periodic")
            if self.previews is not None and (count := self.previews.previews_due()):
                self._preview(count)

    def _apply_commands(self) -> None:
        """The commands queued since the last step, each kind once (a flood of saves is one save)."""
        pending: set[str] = set()
        while True:
            try:
                pending.add(self._commands.get_nowait())
            except queue.Empty:
                break
        if "resample" in pending:
            noise = torch.randn(self.config.preview_count, self.config.z_dim, generator=self.preview_gen)
            self._preview_noise_dev = noise.to(self.device)
            self.emit(ev.Notice("preview noise resampled"))
            if self.previews is not None:
                self._preview(self.config.preview_count)
        if "save" in pending:
            self._save("manual")

    def _wait_while_paused(self) -> None:
        self._write_status("paused")
        self.emit(ev.Paused(True, self.step))
        if self._interval_steps:
            self._log()  # so the numbers on screen are current while paused
        while not self._running.wait(0.05):  # a timeout, so commands still work while paused
            self._apply_commands()
        self._apply_commands()
        self._interval_start = time.perf_counter()  # paused time is not training time
        if self._stop.is_set():
            return  # woken to stop, not resumed: Finished comes next (the log said "resumed" before it)
        self._write_status("training")
        self.emit(ev.Paused(False, self.step))

    def _write_status(self, state: str) -> None:
        try:
            self.run_dir.write_status(state, step=self.step, total_steps=self.total_steps)
        except OSError as err:
            self.emit(ev.Notice(f"status.json not written: {err.strerror or err}", "error"))

    # -- outputs -----------------------------------------------------------------------
    def _log(self) -> None:
        grads = [p.grad for p in (*self.G.parameters(), *self.D.parameters()) if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads \
            else torch.zeros((), device=self.device)
        *sums, self.grad_norm = torch.cat((self._sums / self._interval_steps, grad_norm.reshape(1))).tolist()
        self._sums.zero_()  # the tolist above is the one host-device sync of the interval
        elapsed = time.perf_counter() - self._interval_start
        self.images_per_s = self._interval_steps * self.config.batch_size / max(elapsed, 1e-9)
        row = {"step": self.step, "epoch": self.epoch + 1, **dict(zip(METRIC_KEYS, sums)),
               "images_per_s": self.images_per_s, "time": time.time()}
        if self.device.type == "cuda":  # a host-side counter: no sync
            row["gpu_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self._interval_steps = 0
        self._interval_start = time.perf_counter()
        self.history.append(row)
        self._event(row)
        self.emit(ev.Metrics(row))

    def _check_health(self) -> bool:
        """The divergence guard, at each metrics read: True when it rolled the run back."""
        row = self.history[-1]
        problem = None
        if not all(math.isfinite(row[k]) for k in METRIC_KEYS) or not math.isfinite(self.grad_norm):
            problem = "non-finite loss or gradient"
        elif self.grad_norm > GRAD_NORM_LIMIT:
            problem = f"gradient norm {self.grad_norm:.3g} above {GRAD_NORM_LIMIT:g}"
        else:
            won = row["loss_d"] < 0.01 and row["d_fake"] < 0.01
            self._d_won = self._d_won + 1 if won else 0
            if self._d_won >= D_WON_INTERVALS:
                problem = f"discriminator won outright for {D_WON_INTERVALS} intervals"
        if problem is None:
            return False
        if self.rollbacks >= MAX_ROLLBACKS:
            self.diverged = problem
            self._event({"event": "diverged", "step": self.step, "reason": problem})
            self.emit(ev.Notice(f"diverged at step {self.step} ({problem}); stopping", "error"))
            return True
        self._rollback(problem)
        return True

    def _rollback(self, problem: str) -> None:
        bad_step = self.step
        rates = [[group["lr"] for group in opt.param_groups] for opt in (self.opt_g, self.opt_d)]
        self._load_state(load_checkpoint(self.run_dir.last), history=False)
        self.rollbacks += 1
        self._d_won = 0
        self._sums.zero_()
        self._interval_steps = 0
        self._interval_start = time.perf_counter()
        for opt, before in zip((self.opt_g, self.opt_d), rates):  # half of what they were, never more
            for group, lr in zip(opt.param_groups, before):
                group["lr"] = lr * 0.5
        lr = self.opt_g.param_groups[0]["lr"]
        self._event({"event": "rollback", "step": bad_step, "to_step": self.step, "reason": problem, "lr": lr})
        self.emit(ev.Notice(f"{problem} at step {bad_step}: rolled back to step {self.step}, "
                            f"learning rate halved to {lr:.3g} ({self.rollbacks}/{MAX_ROLLBACKS})", "warning"))

    def _event(self, row: dict[str, Any]) -> None:
        """A line of metrics.jsonl: metrics, or an event (a resume, a rollback, a divergence)."""
        try:
            self.run_dir.append_metrics({"time": time.time(), **row})
        except OSError as err:
            self.emit(ev.Notice(f"metrics.jsonl not written: {err.strerror or err}", "error"))

    def _evaluate(self) -> None:
        """Score images from the fixed evaluation latents; a row in metrics.jsonl and a Quality event."""
        from gantui.evaluation.classifier import EvaluatorError
        from gantui.evaluation.metrics import evaluate  # late: the classifier loads on first use

        start = time.perf_counter()
        images = torch.cat([self._generate(z).float() for z in self.eval_noise.split(EVAL_BATCH)])
        try:
            # Building the classifier (at the first evaluation) draws from torch's global RNG:
            # training's stream must not see it, or a resumed run would differ from a straight one.
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                figures = evaluate(images, str(self.device), bf16=self.bf16)
        except EvaluatorError as err:
            self.eval_every = 0
            self.emit(ev.Notice(f"quality evaluation turned off: {err}", "error"))
            return
        missing = rare_digits(figures["hist"])
        looks_collapsed = bool(missing) or figures["kl"] > COLLAPSE_KL
        self._collapse_armed |= not looks_collapsed or self.epoch >= COLLAPSE_ARMED_EPOCHS
        self._collapsed = self._collapsed + 1 if looks_collapsed and self._collapse_armed else 0
        row = {"event": "quality", "step": self.step, "epoch": self.epoch + 1, **figures,
               "collapse": self._collapsed >= COLLAPSE_EVALS, "eval_s": time.perf_counter() - start}
        self.quality.append(row)
        self._event(row)
        self.emit(ev.Quality(row))
        if self._collapsed == COLLAPSE_EVALS:
            rare = f"digits {', '.join(map(str, missing))} under 1% of samples, " if missing else ""
            self.emit(ev.Notice(f"possible mode collapse at step {self.step}: {rare}KL {figures['kl']:.3f} "
                                f"from MNIST's classes, {COLLAPSE_EVALS} evaluations in a row", "warning"))

    def _generate(self, noise: torch.Tensor) -> torch.Tensor:
        """G's images for `noise`, in eval mode and without grad. Always the eager G: a compiled one
        would recompile for each new batch size and for eval mode."""
        self.G.eval()
        with torch.no_grad(), self._autocast():
            images = self.G(noise)
        self.G.train()
        return images

    def _preview(self, count: int) -> None:
        start = time.perf_counter()
        count = max(1, min(count, self.config.preview_count))
        self.emit(ev.Preview(self.step, to_uint8(self._generate(self._preview_noise_dev[:count]))))
        self.previews.preview_cost(time.perf_counter() - start)

    def _save_grid(self, report: bool = False) -> Path | None:
        """The fixed noise's grid in samples/; with `report`, a failure (a full disk) is a notice."""
        from torchvision.utils import save_image  # imported late: it costs a second at start-up

        path = self.run_dir.sample_path(self.step)
        try:
            save_image(self._generate(self._fixed_noise_dev).float(), path, nrow=8, normalize=True,
                       value_range=(-1, 1))
        except OSError as err:
            if not report:
                raise
            path.unlink(missing_ok=True)
            self.emit(ev.Notice(f"sample grid at step {self.step} not written ({err.strerror or err})", "error"))
            return None
        return path

    def _save(self, reason: str) -> Path | None:
        """Save a checkpoint; a failure (a full disk, bad weights) is reported and training goes on."""
        path = self.run_dir.checkpoint_path(self.step)
        params = (*self.G.parameters(), *self.D.parameters())
        if not bool(torch.stack([p.isfinite().all() for p in params]).all()):  # one sync, not one per tensor
            self.emit(ev.Notice(f"checkpoint at step {self.step} skipped: non-finite weights", "error"))
            return None
        try:
            free = shutil.disk_usage(self.run_dir.checkpoints).free
            if self.run_dir.last.exists() and free < 2 * self.run_dir.last.stat().st_size:
                raise OSError(errno.ENOSPC, f"only {free / 1e6:.0f} MB free")
            save_checkpoint(self.state_dict(), path)
            link_latest(path, self.run_dir.last)
            self.run_dir.prune_checkpoints(self.config.keep)
            grid = self._save_grid(report=True) if reason == "manual" else None
        except OSError as err:
            self.emit(ev.Notice(f"checkpoint at step {self.step} not saved ({err.strerror or err}); "
                                "the previous one is intact", "error"))
            return None
        self._saved_step = self.step
        self.emit(ev.Saved(self.step, str(path), str(grid) if grid else None, reason))
        return path

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs, as plain tensors and data (weights_only-safe)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                               "data": self.data_gen.get_state(), "preview": self.preview_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": self.config.to_dict(),
            "step": self.step, "epoch": self.epoch, "pos": self.pos, "perm": self.perm.clone(),
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "fixed_noise": self.fixed_noise.clone(), "rng": rng, "history": list(self.history),
            "quality": list(self.quality), "collapsed": self._collapsed,
            "collapse_armed": self._collapse_armed, "rollbacks": self.rollbacks, "d_won": self._d_won,
        }

    def _load_state(self, state: dict[str, Any], history: bool = True) -> None:
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.epoch, self.pos = state["step"], state["epoch"], state["pos"]
        self.perm = state["perm"]
        self.fixed_noise = state["fixed_noise"]
        self._fixed_noise_dev = self.fixed_noise.to(self.device)
        self._perm_dev = self.perm.to(self.device)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate((3, tuple(rng["python"]), None))
        self.data_gen.set_state(rng["data"])
        self.preview_gen.set_state(rng["preview"])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if history:
            self.history.extend(state.get("history", []))
            self.quality.extend(state.get("quality", []))
            self._collapsed = state.get("collapsed", 0)
            self._collapse_armed = state.get("collapse_armed", False)
            self.rollbacks = state.get("rollbacks", 0)  # the guard's limit holds across a resume
            self._d_won = state.get("d_won", 0)
            rates = [row["images_per_s"] for row in self.history if "images_per_s" in row]
            self.images_per_s = rates[-1] if rates else 0.0  # an estimate until the first interval
