"""The training loop: set-up, a loop that calls the parts, finish.

`Trainer.run()` is meant for one background thread. Other threads steer it only through the
control methods (pause, resume, save, resample, set, stop), which touch nothing but a
`threading.Event` and a `queue.Queue`; the loop applies them between steps (`steering.py`). The parts: the GAN
(`gan.py`: networks, optimisers, objective, one step), the batch stream, the meter, the guard,
the monitor (quality, collapse), the artifacts (checkpoints, grids).
"""
from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import torch

from gantui.run import events as ev
from gantui.config import Config, check_live_values, default_eval_every
from gantui.datasets import describe, evaluation_off_reason
from gantui.engine.artifacts import Artifacts
from gantui.engine.batches import BatchStream
from gantui.engine.checkpoint import capture, load_checkpoint, restore
from gantui.engine.data import load_dataset
from gantui.engine.device import configure_backend, resolve_device, use_bf16
from gantui.engine.gan import GAN
from gantui.engine.guard import MAX_ROLLBACKS, Guard
from gantui.engine.intervals import Intervals
from gantui.engine.monitor import EvaluationOff, Monitor
from gantui.engine.networks import parameters
from gantui.engine.samples import Samples
from gantui.engine.steering import apply_commands, wait_while_paused
from gantui.run.controls import Controls
from gantui.run.publisher import Run
from gantui.run.rundir import default_run_dir


class StoppedBeforeStart(Exception):
    """Asked to stop while a folder was being decoded."""


class PreviewSource(Protocol):
    """Who decides when previews are generated and how many (run.hub.RunHub)."""

    def previews_due(self) -> int: ...  # 0: none now
    def preview_cost(self, seconds: float) -> None: ...


class Trainer(Controls):
    def __init__(self, config: Config, emit: Callable[[ev.Event], Any] | None = None, *, run: Run | None = None,
                 resume_state: dict[str, Any] | None = None, previews: PreviewSource | None = None) -> None:
        """`run`: the run it publishes through (by default one of its own, not served, whose only
        consumer is `emit`); `previews`: None generates none (a headless run that nobody serves)."""
        Controls.__init__(self)
        self.config, self.previews = config, previews
        self.publisher = run or Run(config.out or default_run_dir(), serve=False, lock=False)
        self.publisher.attach(self)
        self.publisher.hub.check_set = check_live_values
        if emit is not None:
            self.publisher.hub.subscribe(emit)
        self.emit = self.publisher.publish
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)
        self.run_dir = self.publisher.dir
        self.artifacts = Artifacts(self.publisher, config.keep)
        self._resume_state = resume_state
        self.step = 0
        self.images_per_s = 0.0
        self._saved_step = -1
        # The run's past lives in the run (its hub): the checkpoints, the snapshots read it there.
        hub = self.publisher.hub
        self.history, self.quality, self.sets = hub.history, hub.quality, hub.sets
        # 0: off (also when the classifier files are damaged, or the dataset has no evaluator)
        self.eval_every = default_eval_every(self.device.type) if config.eval_every is None else config.eval_every
        if evaluation_off_reason(config.dataset):
            self.eval_every = 0
        self.data = describe(config.dataset, config.image_size, config.channels)
        self.classes = len(self.data.classes or ())

    @property
    def epoch(self) -> int:  # completed epochs
        return self.batches.epoch if hasattr(self, "batches") else 0

    # -- set-up ------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        images, labels = load_dataset(self.data, self.device, cfg.data_root, cfg.data,
                                      progress=self._decoding,
                                      notice=lambda text: self.emit(ev.Notice(text)))
        self.batches = BatchStream(images, labels if cfg.conditional else None, cfg.batch_size, cfg.seed)
        self.steps_per_epoch = len(images) // (cfg.batch_size * cfg.d_steps)
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch size {cfg.batch_size} x {cfg.d_steps} D steps is more than the dataset "
                             f"({len(images)} images)")
        self.total_steps = cfg.steps or cfg.epochs * self.steps_per_epoch
        configure_backend(self.device)
        self.gan = GAN(cfg, self.device, self.bf16, classes=self.classes, shape=self.data.shape)
        self.guard = Guard(self.gan.objective)
        self.samples = Samples(self.gan, cfg.preview_count, cfg.seed)
        eval_gen = torch.Generator().manual_seed(cfg.seed + 2)
        eval_labels = torch.arange(cfg.eval_n, device=self.device) % self.classes if cfg.conditional else None
        self.monitor = Monitor(self.gan.noise(cfg.eval_n, eval_gen, torch.device("cpu")).to(self.device),
                               eval_labels, self.device, self.bf16, cfg.dataset)
        resumed = self._resume_state is not None
        if resumed:
            self._load_state(self._resume_state)
            self._resume_state = None
        self.publisher.start()
        self.publisher.status("training", step=self.step, total_steps=self.total_steps)
        self.run_dir.write_config({**cfg.to_dict(), "out": str(self.run_dir.path), "resolved_device": str(self.device),
                                   "schema": self.gan.schema(), **self._announced()})
        if resumed:
            self._event({"event": "resume", "step": self.step, "from": cfg.resume})

    def _announced(self) -> dict[str, Any]:
        """What a client must not guess: the images' shape, evaluation on or why not, the classes."""
        off = evaluation_off_reason(self.config.dataset) or (None if self.eval_every else "--eval-every 0")
        return {"image_shape": list(self.data.shape), "evaluation": off,
                "class_names": list(self.data.classes) if self.data.classes else None}

    def _decoding(self, done: int, total: int) -> None:
        """A folder's first decode, as it goes; a stop (a signal, `q`) ends it, with nothing trained."""
        if self._stop.is_set():
            raise StoppedBeforeStart
        self.emit(ev.Loading(done, total))

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> ev.Finished:
        try:
            self._setup()
        except StoppedBeforeStart:
            return self._finish(ev.Finished("stopped", self.step))
        except Exception as err:
            return self._finish(ev.Finished("error", self.step, error=f"{type(err).__name__}: {err}"))
        self.emit(ev.Started(
            run_dir=str(self.run_dir.path), device=str(self.device), step=self.step,
            total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch, config=self.config.to_dict(),
            epoch=self.epoch, images_per_s=self.images_per_s, schema=self.gan.schema(), **self._announced()))
        c, h, w = self.data.shape
        self.emit(ev.Notice(f"{self.config.dataset} {c}x{h}x{w}: G {parameters(self.gan.G):,} parameters, "
                            f"D {parameters(self.gan.D):,}"))
        if off := evaluation_off_reason(self.config.dataset):
            self.emit(ev.Notice(f"quality evaluation is off: {off}", "warning"))
        try:
            self._loop()
            if self.gan.meter.steps and not self.guard.diverged:
                self._log()
        except Exception as err:
            return self._failed(err)
        if self.guard.diverged:
            return self._finish(ev.Finished("diverged", self.step, checkpoint=str(self.run_dir.last),
                                            error=f"diverged {MAX_ROLLBACKS + 1} times: {self.guard.diverged}"))
        reason = "stopped" if self._stop.is_set() else "done"
        if reason == "done" and self.eval_every and (not self.quality or self.quality[-1]["step"] != self.step):
            self._evaluate()  # the figures for the finished run
        if self._saved_step != self.step:
            self._save("final")
        return self._finish(ev.Finished(reason, self.step, checkpoint=str(self.run_dir.last)))

    def _loop(self) -> None:
        cfg = self.config
        self.intervals = Intervals({"log_every": cfg.log_every, "sample_every": cfg.sample_every,
                                    "save_every": cfg.save_every, "eval_every": self.eval_every}, cfg.timed)
        if cfg.timed:
            self.emit(ev.Notice(f"at this device's speed, by the clock: {self.intervals.describe()} "
                                "(a step flag given wins)"))
        self._interval_start, self._interval_images = time.perf_counter(), 0
        if not self.run_dir.last.exists():
            self._save("start")  # a rollback target from the first step on
        if cfg.compile:
            self.emit(ev.Notice("compiling G and D (torch.compile): the first steps take a while"))
        while self.step < self.total_steps and not self.guard.diverged:
            apply_commands(self)
            if not self._running.is_set():
                wait_while_paused(self)
                self._interval_start, self._interval_images = time.perf_counter(), 0  # paused time is not training
            if self._stop.is_set():
                break
            self._train_step()
            self.step += 1
            self._interval_images += cfg.batch_size * cfg.d_steps
            if self.step == cfg.fault_nan_step and not self.guard.rollbacks:  # test hook: a loss goes NaN
                self.gan.meter.sums.fill_(float("nan"))
            due = self.intervals.due
            if due("log_every", self.step):
                self._log()
                if self._check_health():
                    continue
            if due("sample_every", self.step):
                self._save_grid()
            if self.eval_every and due("eval_every", self.step):
                self._evaluate()
            if due("save_every", self.step):
                self._save("periodic")
            if self.previews is not None and (count := self.previews.previews_due()):
                self._preview(count)

    def _train_step(self) -> None:
        self.gan.step(self.batches)

    # -- the parts' outputs ------------------------------------------------------------
    def _log(self) -> None:
        steps = self.gan.meter.steps
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch + 1, **self.gan.read()}
        elapsed = max(time.perf_counter() - self._interval_start, 1e-9)
        self.images_per_s = self._interval_images / elapsed
        row.update(images_per_s=self.images_per_s, steps_per_s=steps / elapsed, time=time.time())
        if self.device.type == "cuda":  # a host-side counter: no sync
            row["gpu_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self._interval_start, self._interval_images = time.perf_counter(), 0
        self.emit(ev.Metrics(row))  # a row of metrics.jsonl and of the run's history

    def _check_health(self) -> bool:
        """The divergence guard, at each metrics read: True when it rolled back or gave up."""
        keys = [key for key in self.gan.meter.keys if key in self.history[-1]]
        problem = self.guard.problem(self.history[-1], keys)
        if problem is None:
            return False
        if self.guard.diverged:
            self._event({"event": "diverged", "step": self.step, "reason": problem})
            self.emit(ev.Notice(f"diverged at step {self.step} ({problem}); stopping", "error"))
            return True
        bad_step = self.step
        self.artifacts.wait()  # last.pt as the newest save left it
        self._load_state(load_checkpoint(self.run_dir.last), history=False)
        self.guard.rolled_back()
        self.gan.halve_lr()  # of the current rates, never more
        self.gan.meter.reset()
        self._interval_start, self._interval_images = time.perf_counter(), 0
        lr = self.config.lr_g
        self._event({"event": "rollback", "step": bad_step, "to_step": self.step, "reason": problem, "lr": lr})
        self.emit(ev.Notice(f"{problem} at step {bad_step}: rolled back to step {self.step}, "
                            f"learning rate halved to {lr:.3g} ({self.guard.rollbacks}/{MAX_ROLLBACKS})", "warning"))
        return True

    def _event(self, row: dict[str, Any]) -> None:
        """A line of metrics.jsonl: metrics, or an event (a resume, a rollback, a set, a divergence)."""
        self.publisher.row(row)

    def _evaluate(self) -> None:
        try:
            row = self.monitor.evaluate(self.gan.generate, self.step, self.epoch)
        except EvaluationOff as err:
            self.eval_every = 0
            self.emit(ev.Notice(f"quality evaluation turned off: {err}", "error"))
            return
        self.emit(ev.Quality(row))
        if warning := self.monitor.warning(row):
            pausing = self.config.on_collapse == "pause"
            self.emit(ev.Notice(warning + ("; pausing (--on-collapse pause)" if pausing else ""), "warning"))
            if pausing:
                self.pause()

    def _preview(self, count: int) -> None:
        start = time.perf_counter()
        images = self.samples.preview(count)
        self.emit(ev.Preview(self.step, images, source=self.samples.source, row=self.samples.per_class))
        self.previews.preview_cost(time.perf_counter() - start)

    def _save_grid(self):
        images, nrow = self.samples.grid()
        return self.artifacts.save_grid(images, self.step, nrow)

    def _save(self, reason: str) -> None:
        """A checkpoint (and with `s` a grid); a failure is reported and training goes on."""
        if not self.gan.finite():
            self.emit(ev.Notice(f"checkpoint at step {self.step} skipped: non-finite weights", "error"))
            return
        step, grid = self.step, self._save_grid() if reason == "manual" else None
        self.artifacts.save_checkpoint(self.state_dict(), step, lambda path: self.emit(
            ev.Saved(step, str(path), str(grid) if grid else None, reason)))
        self._saved_step = step

    def _failed(self, err: Exception) -> ev.Finished:
        self.artifacts.wait()
        self.artifacts.error_log(traceback.format_exc())
        message = f"{type(err).__name__}: {err}"
        if isinstance(err, torch.OutOfMemoryError):
            message = (f"out of {self.device.type.upper()} memory at batch size {self.config.batch_size}; "
                       f"try --batch-size {max(self.config.batch_size // 2, 1)}")
        last = self.run_dir.last if self.run_dir.last.exists() else None
        return self._finish(ev.Finished("error", self.step, checkpoint=str(last) if last else None, error=message))

    def _finish(self, finished: ev.Finished) -> ev.Finished:
        self.artifacts.wait()  # the end waits for the checkpoint in flight
        self.publisher.end(finished, getattr(self, "total_steps", 0))
        return finished

    def _write_status(self, state: str) -> None:
        self.publisher.status(state, step=self.step, total_steps=self.total_steps)

    # -- state (its layout: checkpoint.py) -------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs, as plain tensors and data (weights_only-safe)."""
        return capture(self)

    def _load_state(self, state: dict[str, Any], history: bool = True) -> None:
        """A checkpoint; `history`: also the run's past and the guard's and monitor's state (a
        rollback keeps its own)."""
        restore(self, state, history)
