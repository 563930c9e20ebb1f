"""What the controls ask for, done on the trainer's own thread at a step boundary: live settings,
a resample, a save, a pause. Functions of the trainer, as checkpoint.py's capture and restore are
(`controls.py` is the other side: the requests, safe from any thread)."""
from __future__ import annotations

import time
from typing import Any

from gantui.penalties import PENALTIES
from gantui.run import events as ev
from gantui.run.agreement import Ranks, settle


def apply_commands(trainer: Any, pending: dict[str, Any] | None = None) -> None:
    """What `_pending` drained since the last step (or what the ranks agreed): settings, then a
    resample, then a save."""
    pending = trainer._pending() if pending is None else pending
    if "set" in pending:
        apply_settings(trainer, pending["set"])
    if "resample" in pending:
        resample(trainer)
    if "save" in pending:
        trainer._save("manual")


def resample(trainer: Any) -> None:
    """New preview noise, and a preview drawn with it at once (rank 0's, in a job)."""
    trainer.samples.resample()
    trainer.emit(ev.Notice("preview noise resampled"))
    if trainer.previews is not None:
        trainer._preview(trainer.config.preview_count)


def apply_settings(trainer: Any, values: dict[str, Any]) -> None:
    """Live settings (checked already): applied to the GAN, a `set` row, a Settings event. A
    penalty off since the start stays off (its figures were not announced)."""
    gan = trainer.gan
    for key in [k for k in PENALTIES if values.get(k) and PENALTIES[k] not in gan.penalties]:
        trainer.emit(ev.Notice(f"--{key} was off when this run started, so it cannot be turned on live: "
                               f"resume with --resume RUN --{key} {values.pop(key):g}", "error"))
    changed = {k: v for k, v in values.items() if gan.live.get(k) != v}
    if not changed:
        return
    gan.apply(changed)
    trainer.emit(ev.Settings(trainer.step, changed))  # the run writes the `set` row and keeps the marker


def wait_while_paused(trainer: Any) -> None:
    """Until resumed or stopped (Controls.hold, as a user's loop pauses), commands still applied;
    the status and the watchers told."""
    def announce(paused: bool) -> None:
        TrainerSide(trainer).announce(paused)  # as the ranks announce theirs
        if paused and trainer.gan.meter.steps:
            trainer._log()  # so the numbers on screen are current while paused (in one process: no collective)

    trainer.hold(announce, lambda: apply_commands(trainer))


class TrainerSide:
    """The trainer as the ranks' protocol sees it (run/agreement.py, shared with a user's loop)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def pending(self) -> dict[str, Any]:
        return self.trainer._pending()

    def commands(self, pending: dict[str, Any]) -> None:
        apply_commands(self.trainer, pending)

    def stopping(self) -> bool:
        return self.trainer._stop.is_set()

    def held(self) -> bool:
        return not self.trainer._running.is_set()

    def wait(self, seconds: float) -> None:
        self.trainer._running.wait(seconds)

    def announce(self, paused: bool) -> None:
        self.trainer._write_status("paused" if paused else "training")
        self.trainer.emit(ev.Paused(paused, self.trainer.step))


def ranks_of(trainer: Any) -> Ranks:
    """The job's ranks, agreeing through the default group (its CPU tensors go through gloo)."""
    return Ranks(trainer.world.rank, trainer.world.size)


def agree_at_interval(trainer: Any) -> bool:
    """A torchrun job's step boundary, at the metrics interval: rank 0's commands and any rank's
    stop (a signal) go out with the metrics (one all-reduce), and every rank does them at this
    step (run/agreement.py). True: stop here."""
    main = trainer.world.main
    pending = trainer._pending() if main else {}
    lead = {}
    if main:  # rank 0's clock: when the next row and checkpoint fall
        rate = trainer.gan.meter.steps / max(time.perf_counter() - trainer._interval_start, 1e-9)
        lead = trainer.intervals.lead(rate)
    agreed = trainer._log({"stop": trainer._stop.is_set(), "pause": main and not trainer._running.is_set(),
                           "save": "save" in pending, "set": "set" in pending, **lead})
    trainer.intervals.follow(trainer.step, agreed)
    stop = settle(ranks_of(trainer), agreed, pending, TrainerSide(trainer))
    if agreed["pause"]:
        trainer._interval_start, trainer._interval_images = time.perf_counter(), 0  # paused time is not training
    if stop:
        trainer._stop.set()  # every rank ends as stopped
    return stop

