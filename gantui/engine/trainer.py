"""The training loop: set-up, a loop that calls the parts, finish.

`Trainer.run()` is meant for one background thread. Other threads steer it only through its
`controls` (pause, resume, save, resample, set, stop: run/controls.py), which touch nothing but
a `threading.Event` and a `queue.Queue`; its `steering` (steering.py: one process, or the ranks
together, chosen at the start) applies them between steps. It holds its parts: the GAN (`gan.py`:
networks, optimisers, objective, one step), the batch stream, the meter and the clock, the
guard, the monitor (quality, collapse), the artifacts (checkpoints, grids), and the outputs
(outputs.py: rows, rollbacks, evaluations, previews, saves, the end).
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

import torch

from gantui.common import panes_json
from gantui.run import events as ev
from gantui.config import Config, check_live_values, default_eval_every, live_settings
from gantui.datasets import describe, evaluation_off_reason
from gantui.engine.artifacts import Artifacts
from gantui.engine.batches import BatchStream
from gantui.engine import checkpoint
from gantui.engine.data import load_dataset
from gantui.engine.device import configure_backend, resolve_device, use_bf16
from gantui.engine.devicestats import DeviceStats
from gantui.engine.distributed import World, barrier, broadcast
from gantui.engine.gan import GAN
from gantui.engine.guard import MAX_ROLLBACKS, Guard
from gantui.engine.intervals import Intervals
from gantui.engine.meter import Clock
from gantui.engine.monitor import Monitor
from gantui.engine.outputs import Outputs
from gantui.engine.networks import parameters
from gantui.engine.samples import Samples
from gantui.engine.steering import steering_for
from gantui.penalties import PENALTIES
from gantui.run.controls import Controls
from gantui.run.publisher import Publisher
from gantui.run.rundir import default_run_dir


class StoppedBeforeStart(Exception):
    """Asked to stop while a folder was being decoded."""


class PreviewSource(Protocol):
    """Who decides when previews are generated and how many (run.hub.RunHub)."""

    def previews_due(self) -> int: ...  # 0: none now
    def preview_cost(self, seconds: float) -> None: ...


class Trainer:
    def __init__(self, config: Config, emit: Callable[[ev.Event], Any] | None = None, *, run: Publisher | None = None,
                 resume_state: dict[str, Any] | None = None, previews: PreviewSource | None = None,
                 world: World = World()) -> None:
        """`run`: the run it publishes through (by default one of its own, not served, whose only
        consumer is `emit`); `previews`: None generates none (a headless run that nobody serves);
        `world`: this process's rank in a torchrun job (ranks.py: what they agree on)."""
        self.config, self.previews, self.world = config, previews, world
        self.controls = Controls()
        self.publisher = run or Publisher.for_trainer(config.out or default_run_dir(), serve=False, write=world.main)
        self.publisher.attach(self.controls)
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
        self.clock = Clock()
        self.outputs = Outputs(self)
        self.steering = steering_for(self)
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
        first = self.world.local_rank == 0  # each machine's first process decodes a folder into its
        if not first:                       # cache; the machine's other processes then read it
            barrier(self.world)
        images, labels = load_dataset(self.data, self.device, cfg.data_root, cfg.data,
                                      progress=self._decoding,
                                      notice=lambda text: self.emit(ev.Notice(text)))
        if first:
            barrier(self.world)
        ranks = self.world.size
        self.batches = BatchStream(images, labels if cfg.conditional else None, cfg.batch_size, cfg.seed,
                                   self.world.rank, ranks)
        self.steps_per_epoch = len(images) // (cfg.batch_size * cfg.d_steps * ranks)
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch size {cfg.batch_size} x {cfg.d_steps} D steps{f' x {ranks} processes' * (ranks > 1)}"
                             f" is more than the dataset ({len(images)} images)")
        self.total_steps = cfg.steps or cfg.epochs * self.steps_per_epoch
        configure_backend(self.device)
        self.stats = DeviceStats(self.device.type, self.device.index).start()  # the GPU pane's figures
        self.gan = GAN(cfg, self.device, self.bf16, classes=self.classes, shape=self.data.shape, ranks=ranks)
        self.guard = Guard(self.gan.objective)
        self.samples = Samples(self.gan, cfg.preview_count, cfg.seed)
        eval_gen = torch.Generator().manual_seed(cfg.seed + 2)
        eval_labels = torch.arange(cfg.eval_n, device=self.device) % self.classes if cfg.conditional else None
        self.monitor = Monitor(self.gan.noise(cfg.eval_n, eval_gen, torch.device("cpu")).to(self.device),
                               eval_labels, self.device, self.bf16, cfg.dataset)
        if ranks > 1:  # the networks alike on every rank (DDP also sends rank 0's); latents and noise not
            torch.manual_seed(cfg.seed + self.world.rank)
            random.seed(cfg.seed + self.world.rank)
        resumed = self._resume_state is not None
        if resumed:
            self.restore(self._resume_state)
            self._resume_state = None
        self.publisher.start()
        self.publisher.status("training", step=self.step, total_steps=self.total_steps)
        if self.world.main:
            self.run_dir.write_config({**cfg.to_dict(), "out": str(self.run_dir.path), "resolved_device": str(self.device),
                                   "schema": panes_json(self.gan.schema()), "capabilities": asdict(ev.Capabilities()),
                                   **self._announced(), **self._job()})
        if resumed:
            self.outputs.event({"event": "resume", "step": self.step, "from": cfg.resume})

    def _announced(self) -> dict[str, Any]:
        """What a client must not guess: the images' shape, evaluation on or why not, the classes, the
        live settings (those of penalties registered in this process alone included)."""
        off = evaluation_off_reason(self.config.dataset) or (None if self.eval_every else "--eval-every 0")
        return {"image_shape": list(self.data.shape), "evaluation": off,
                "class_names": list(self.data.classes) if self.data.classes else None,
                "settings": live_settings(), "locked": [k for k in PENALTIES if k not in (self.config.penalties_on or ())]}

    def _job(self) -> dict[str, Any]:
        """A torchrun job's size and id: a restart finds its run by the id (cli/ranks.py)."""
        if not self.world.many:
            return {}
        return {"processes": self.world.size, "job": os.environ.get("TORCHELASTIC_RUN_ID")}

    def _decoding(self, done: int, total: int) -> None:
        """A folder's first decode, as it goes; a stop (a signal, `q`) ends it, with nothing trained."""
        if self.controls.stopped:
            raise StoppedBeforeStart
        self.emit(ev.Loading(done, total))

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> ev.Finished:
        try:
            self._setup()
        except StoppedBeforeStart:
            return self.outputs.finish(ev.Finished("stopped", self.step))
        except Exception as err:
            return self.outputs.finish(ev.Finished("error", self.step, error=f"{type(err).__name__}: {err}"))
        self.emit(ev.Started(
            run_dir=str(self.run_dir.path), device=str(self.device), step=self.step,
            total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch, config={**self.config.to_dict(), **self._job()},
            epoch=self.epoch, images_per_s=self.clock.images_per_s, schema=self.gan.schema(), **self._announced()))
        c, h, w = self.data.shape
        self.emit(ev.Notice(f"{self.config.dataset} {c}x{h}x{w}: G {parameters(self.gan.G):,} parameters, "
                            f"D {parameters(self.gan.D):,}"))
        if off := evaluation_off_reason(self.config.dataset):
            self.emit(ev.Notice(f"quality evaluation is off: {off}", "warning"))
        outputs = self.outputs
        try:
            self._loop()
            if self.gan.meter.steps and not self.guard.diverged:
                outputs.log()
        except Exception as err:
            return outputs.failed(err)
        if self.guard.diverged:
            return outputs.finish(ev.Finished("diverged", self.step, checkpoint=str(self.run_dir.last),
                                              error=f"diverged {MAX_ROLLBACKS + 1} times: {self.guard.diverged}"))
        reason = "stopped" if self.controls.stopped else "done"
        if self.world.main and reason == "done" and self.eval_every and (not self.quality or self.quality[-1]["step"] != self.step):
            outputs.evaluate()  # the figures for the finished run
        if outputs.saved_step != self.step:
            outputs.save("final")
        return outputs.finish(ev.Finished(reason, self.step, checkpoint=str(self.run_dir.last)))

    def _loop(self) -> None:
        cfg = self.config
        self.intervals = Intervals({"log_every": cfg.log_every, "sample_every": cfg.sample_every,
                                    "save_every": cfg.save_every, "eval_every": self.eval_every}, cfg.timed,
                                   ranks=self.world.size)
        if cfg.timed:
            self.emit(ev.Notice(f"at this device's speed, by the clock: {self.intervals.describe()} "
                                "(a step flag given wins)"))
        outputs, steering = self.outputs, self.steering
        self.clock.reset()
        if broadcast(self.world, not self.run_dir.last.exists()):  # rank 0's disk decides for every rank
            outputs.save("start")  # a rollback target from the first step on
        if cfg.compile:
            self.emit(ev.Notice("compiling G and D (torch.compile): the first steps take a while"))
        main = self.world.main
        while self.step < self.total_steps and not self.guard.diverged:
            if steering.before_step():  # one process: the commands, a pause (many ranks: at the row)
                break
            self._train_step()
            self.step += 1
            self.clock.count(cfg.batch_size * self.gan.live.d_steps)
            if self.step == cfg.fault_nan_step and not self.guard.rollbacks:  # test hook: a loss goes NaN
                self.gan.meter.sums.fill_(float("nan"))
            due = self.intervals.due
            if due("log_every", self.step):
                if steering.at_row():  # the row; many ranks: what they agreed on
                    break  # stopped, every rank at this step
                if outputs.check_health():
                    continue
            if main and due("sample_every", self.step):
                outputs.save_grid()
            if main and self.eval_every and due("eval_every", self.step):
                outputs.evaluate()
            if due("save_every", self.step):
                outputs.save("periodic")
            if main and self.previews is not None and (count := self.previews.previews_due()):
                outputs.preview(count)

    def _train_step(self) -> None:
        self.gan.step(self.batches)

    # -- state (its layout: checkpoint.py) -------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs, as plain tensors and data (weights_only-safe)."""
        return checkpoint.capture(self)

    def restore(self, state: dict[str, Any], history: bool = True) -> None:
        """A checkpoint; `history`: also the run's past and the guard's and monitor's state (a
        rollback keeps its own)."""
        checkpoint.restore(self, state, history)
