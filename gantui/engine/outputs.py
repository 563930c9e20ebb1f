"""What the training loop leaves behind at its boundaries: a metrics row (and, with many ranks,
what they agree on), the divergence guard's rollback, an evaluation, a preview, a grid, a
checkpoint, the end. The trainer's collaborator (`trainer.outputs`), kept apart from the loop:
it works on the trainer's parts (its GAN, samples, monitor, guard, intervals, artifacts, clock,
publisher), and changes the trainer itself only through `restore` (a rollback), its clock's
rate and, when evaluation fails, its `eval_every`."""
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
    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.saved_step = -1  # the step of the newest checkpoint taken

    def log(self, flags: dict[str, float] | None = None) -> dict[str, float]:
        """A metrics row; with many ranks, their means, and the decisions (`flags`) they agree on."""
        t = self.trainer
        steps = t.gan.meter.steps
        elapsed = t.clock.elapsed()
        stats = t.stats.latest or {}
        own = [t.clock.images / elapsed, *(nan_for_none(stats.get(key)) for key in FIELDS)]
        ranks, agreed = [own], dict(flags or {})

        def reduce(means: torch.Tensor) -> list[float]:
            nonlocal ranks, agreed
            values, ranks, agreed = exchange(t.world, means, own, flags or {})
            return values

        row: dict[str, Any] = {"step": t.step, "epoch": t.epoch + 1,
                               **t.gan.read(reduce if t.world.many else None)}
        t.clock.images_per_s = sum(rank[0] for rank in ranks)
        row.update(images_per_s=t.clock.images_per_s, steps_per_s=steps / elapsed, time=time.time())
        if t.world.many:  # each rank's own, so a slow GPU shows
            row["rank_images_per_s"] = [rank[0] for rank in ranks]
        if t.stats.latest is not None or t.world.many:  # each rank's device: the GPU pane
            kind = "GPU" if t.device.type == "cuda" else "CPU"
            row["devices"] = [{"kind": kind, **{key: none_for_nan(v) for key, v in zip(FIELDS, rank[1:])}}
                              for rank in ranks]
        if t.stats.unavailable:
            row["devices_note"] = t.stats.unavailable
        if t.device.type == "cuda":  # a host-side counter: no sync
            row["gpu_mem_mb"] = torch.cuda.max_memory_allocated(t.device) / 2**20
        t.clock.reset()
        t.emit(ev.Metrics(row))  # a row of metrics.jsonl and of the run's history
        return agreed

    def check_health(self) -> bool:
        """The divergence guard, at each metrics read: True when it rolled back or gave up."""
        t = self.trainer
        keys = [key for key in t.gan.meter.keys if key in t.history[-1]]
        problem = t.guard.problem(t.history[-1], keys)
        if problem is None:
            return False
        if t.guard.diverged:
            self.event({"event": "diverged", "step": t.step, "reason": problem})
            t.emit(ev.Notice(f"diverged at step {t.step} ({problem}); stopping", "error"))
            return True
        bad_step = t.step
        t.artifacts.wait()  # last.pt as the newest save left it
        t.restore(self._rollback_target(), history=False)
        t.intervals.restart(t.step)  # a job's next row lay past the diverged step
        t.guard.rolled_back()
        t.gan.halve_lr()  # of the current rates, never more
        t.gan.meter.reset()
        t.clock.reset()
        lr = t.gan.live.lr_g
        self.event({"event": "rollback", "step": bad_step, "to_step": t.step, "reason": problem, "lr": lr})
        t.emit(ev.Notice(f"{problem} at step {bad_step}: rolled back to step {t.step}, "
                         f"learning rate halved to {lr:.3g} ({t.guard.rollbacks}/{MAX_ROLLBACKS})", "warning"))
        return True

    def _rollback_target(self) -> dict[str, Any]:
        """last.pt, read by rank 0 and sent to every rank (the other machines have no copy); each
        rank restores its own random streams from it."""
        t = self.trainer
        state: Any = None
        if t.world.main:
            try:
                state = load_checkpoint(t.run_dir.last)
            except CheckpointError as err:  # every rank fails alike, none waits for rank 0
                state = err
        state = broadcast(t.world, state)
        if isinstance(state, Exception):
            raise state
        return state

    def event(self, row: dict[str, Any]) -> None:
        """A line of metrics.jsonl: metrics, or an event (a resume, a rollback, a set, a divergence)."""
        self.trainer.publisher.row(row)

    def evaluate(self) -> None:
        t = self.trainer
        try:
            row = t.monitor.evaluate(t.gan.generate, t.step, t.epoch)
        except EvaluationOff as err:
            t.eval_every = 0
            t.emit(ev.Notice(f"quality evaluation turned off: {err}", "error"))
            return
        t.emit(ev.Quality(row))
        if warning := t.monitor.warning(row):
            pausing = t.config.on_collapse == "pause"
            t.emit(ev.Notice(warning + ("; pausing (--on-collapse pause)" if pausing else ""), "warning"))
            if pausing:
                t.controls.pause()

    def preview(self, count: int) -> None:
        t = self.trainer
        start = time.perf_counter()
        images = t.samples.preview(count)
        t.emit(ev.Preview(t.step, images, source=t.samples.source, row=t.samples.per_class))
        t.previews.preview_cost(time.perf_counter() - start)

    def save_grid(self):
        t = self.trainer
        images, nrow = t.samples.grid()
        return t.artifacts.save_grid(images, t.step, nrow)

    def save(self, reason: str) -> None:
        """A checkpoint (and with `s` a grid); a failure is reported and training goes on."""
        t = self.trainer
        if not t.gan.finite():
            t.emit(ev.Notice(f"checkpoint at step {t.step} skipped: non-finite weights", "error"))
            return
        self.saved_step = step = t.step
        ranks = gather(t.world, rank_state(t))  # every rank's random streams, on rank 0
        if not t.world.main:
            return
        grid = self.save_grid() if reason == "manual" else None
        state = t.state_dict()
        if t.world.many:
            state.update(world_size=t.world.size, ranks=ranks)
        t.artifacts.save_checkpoint(state, step, lambda path: t.emit(
            ev.Saved(step, str(path), str(grid) if grid else None, reason)))

    def failed(self, err: Exception) -> ev.Finished:
        t = self.trainer
        t.artifacts.wait()
        if t.world.main:
            t.artifacts.error_log(traceback.format_exc())
        message = f"{type(err).__name__}: {err}"
        if isinstance(err, torch.OutOfMemoryError):
            message = (f"out of {t.device.type.upper()} memory at batch size {t.config.batch_size}; "
                       f"try --batch-size {max(t.config.batch_size // 2, 1)}")
        last = t.run_dir.last if t.run_dir.last.exists() else None
        return self.finish(ev.Finished("error", t.step, checkpoint=str(last) if last else None, error=message))

    def finish(self, finished: ev.Finished) -> ev.Finished:
        t = self.trainer
        t.artifacts.wait()  # the end waits for the checkpoint in flight
        if hasattr(t, "stats"):
            t.stats.close()
        t.publisher.end(finished, getattr(t, "total_steps", 0))
        return finished

    def write_status(self, state: str) -> None:
        t = self.trainer
        t.publisher.status(state, step=t.step, total_steps=t.total_steps)
