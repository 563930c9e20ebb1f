"""What the training loop leaves behind at its boundaries: a metrics row (and, with many ranks,
what they agree on), the divergence guard's rollback, an evaluation, a preview, a grid, a
checkpoint, the end. A part of `Trainer` (trainer.py), kept apart from the loop itself."""
from __future__ import annotations

import math
import time
import traceback
from typing import Any

import torch

from gantui.engine.checkpoint import CheckpointError, load_checkpoint, rank_state
from gantui.engine.devicestats import FIELDS
from gantui.engine.distributed import broadcast, exchange, gather
from gantui.engine.guard import MAX_ROLLBACKS
from gantui.engine.monitor import EvaluationOff
from gantui.run import events as ev


def nan_for_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def none_for_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


class Outputs:
    """The trainer's outputs; its attributes are the trainer's (config, gan, run_dir, world...)."""

    def _log(self, flags: dict[str, float] | None = None) -> dict[str, float]:
        """A metrics row; with many ranks, their means, and the decisions (`flags`) they agree on."""
        steps = self.gan.meter.steps
        elapsed = max(time.perf_counter() - self._interval_start, 1e-9)
        stats = self.stats.latest or {}
        own = [self._interval_images / elapsed, *(nan_for_none(stats.get(key)) for key in FIELDS)]
        ranks, agreed = [own], dict(flags or {})

        def reduce(means: torch.Tensor) -> list[float]:
            nonlocal ranks, agreed
            values, ranks, agreed = exchange(self.world, means, own, flags or {})
            return values

        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch + 1,
                               **self.gan.read(reduce if self.world.many else None)}
        self.images_per_s = sum(rank[0] for rank in ranks)
        row.update(images_per_s=self.images_per_s, steps_per_s=steps / elapsed, time=time.time())
        if self.world.many:  # each rank's own, so a slow GPU shows
            row["rank_images_per_s"] = [rank[0] for rank in ranks]
        if self.stats.latest is not None or self.world.many:  # each rank's device: the GPU pane
            kind = "GPU" if self.device.type == "cuda" else "CPU"
            row["devices"] = [{"kind": kind, **{key: none_for_nan(v) for key, v in zip(FIELDS, rank[1:])}}
                              for rank in ranks]
        if self.stats.unavailable:
            row["devices_note"] = self.stats.unavailable
        if self.device.type == "cuda":  # a host-side counter: no sync
            row["gpu_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self._interval_start, self._interval_images = time.perf_counter(), 0
        self.emit(ev.Metrics(row))  # a row of metrics.jsonl and of the run's history
        return agreed

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
        self._load_state(self._rollback_target(), history=False)
        self.intervals.restart(self.step)  # a job's next row lay past the diverged step
        self.guard.rolled_back()
        self.gan.halve_lr()  # of the current rates, never more
        self.gan.meter.reset()
        self._interval_start, self._interval_images = time.perf_counter(), 0
        lr = self.gan.live.lr_g
        self._event({"event": "rollback", "step": bad_step, "to_step": self.step, "reason": problem, "lr": lr})
        self.emit(ev.Notice(f"{problem} at step {bad_step}: rolled back to step {self.step}, "
                            f"learning rate halved to {lr:.3g} ({self.guard.rollbacks}/{MAX_ROLLBACKS})", "warning"))
        return True

    def _rollback_target(self) -> dict[str, Any]:
        """last.pt, read by rank 0 and sent to every rank (the other machines have no copy); each
        rank restores its own random streams from it."""
        state: Any = None
        if self.world.main:
            try:
                state = load_checkpoint(self.run_dir.last)
            except CheckpointError as err:  # every rank fails alike, none waits for rank 0
                state = err
        state = broadcast(self.world, state)
        if isinstance(state, Exception):
            raise state
        return state

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
        self._saved_step = step = self.step
        ranks = gather(self.world, rank_state(self))  # every rank's random streams, on rank 0
        if not self.world.main:
            return
        grid = self._save_grid() if reason == "manual" else None
        state = self.state_dict()
        if self.world.many:
            state.update(world_size=self.world.size, ranks=ranks)
        self.artifacts.save_checkpoint(state, step, lambda path: self.emit(
            ev.Saved(step, str(path), str(grid) if grid else None, reason)))

    def _failed(self, err: Exception) -> ev.Finished:
        self.artifacts.wait()
        if self.world.main:
            self.artifacts.error_log(traceback.format_exc())
        message = f"{type(err).__name__}: {err}"
        if isinstance(err, torch.OutOfMemoryError):
            message = (f"out of {self.device.type.upper()} memory at batch size {self.config.batch_size}; "
                       f"try --batch-size {max(self.config.batch_size // 2, 1)}")
        last = self.run_dir.last if self.run_dir.last.exists() else None
        return self._finish(ev.Finished("error", self.step, checkpoint=str(last) if last else None, error=message))

    def _finish(self, finished: ev.Finished) -> ev.Finished:
        self.artifacts.wait()  # the end waits for the checkpoint in flight
        if hasattr(self, "stats"):
            self.stats.close()
        self.publisher.end(finished, getattr(self, "total_steps", 0))
        return finished

    def _write_status(self, state: str) -> None:
        self.publisher.status(state, step=self.step, total_steps=self.total_steps)
