"""What the controls ask for, done on the trainer's own thread: live settings, a resample, a save,
a pause, a stop. One process steers itself at every step (`Alone`); the ranks of a torchrun job
agree at the metrics interval and act together (`Together`). The trainer chooses one at its
start (`steering_for`) and calls it at its step boundaries; `run/controls.py` is the other side,
the requests, safe from any thread."""
from __future__ import annotations

from typing import Any

from gantui.penalties import PENALTIES
from gantui.run import events as ev
from gantui.run.agreement import Ranks, settle


class Alone:
    """One process: the commands at every step boundary, a pause waited out there."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.controls = trainer.controls

    def before_step(self) -> bool:
        """Settings, a resample, a save, then a pause; True: stop here."""
        self.commands()
        if self.controls.paused:
            self.controls.hold(self.announce, self.commands)
            self.trainer.clock.reset()  # paused time is not training
        return self.controls.stopped

    def at_row(self) -> bool:
        """The metrics row (one process: no collective); True: stop here."""
        self.trainer.outputs.log()
        return False

    def commands(self, pending: dict[str, Any] | None = None) -> None:
        """What the controls queued since the last step (or what the ranks agreed): settings, then a
        resample, then a save."""
        pending = self.controls.pending() if pending is None else pending
        if "set" in pending:
            apply_settings(self.trainer, pending["set"])
        if "resample" in pending:
            resample(self.trainer)
        if "save" in pending:
            self.trainer.outputs.save("manual")

    def announce(self, paused: bool) -> None:
        """The status and the watchers told; while paused, the numbers on screen made current."""
        tell(self.trainer, paused)
        if paused and self.trainer.gan.meter.steps:
            self.trainer.outputs.log()  # one process: no collective


class Together(Alone):
    """The ranks of a torchrun job: at the metrics interval rank 0's commands and any rank's stop (a
    signal) go out with the metrics (one all-reduce), and every rank does them at that step
    (run/agreement.py, shared with a user's loop)."""

    def __init__(self, trainer: Any) -> None:
        super().__init__(trainer)
        self.ranks = Ranks(trainer.world.rank, trainer.world.size)

    def before_step(self) -> bool:
        return False  # the ranks act together, at the metrics interval

    def at_row(self) -> bool:
        trainer, main = self.trainer, self.trainer.world.main
        pending = self.controls.pending() if main else {}
        lead = {}
        if main:  # rank 0's clock: when the next row and checkpoint fall
            lead = trainer.intervals.lead(trainer.gan.meter.steps / trainer.clock.elapsed())
        agreed = trainer.outputs.log({"stop": self.controls.stopped, "pause": main and self.controls.paused,
                                      "save": "save" in pending, "set": "set" in pending, **lead})
        trainer.intervals.follow(trainer.step, agreed)
        stop = settle(self.ranks, agreed, pending, self)
        if agreed["pause"]:
            trainer.clock.reset()  # paused time is not training
        if stop:
            self.controls.stop()  # every rank ends as stopped
        return stop

    def announce(self, paused: bool) -> None:  # (agreement.Side's, as `controls` and `commands`)
        tell(self.trainer, paused)


def steering_for(trainer: Any) -> Alone:
    return Together(trainer) if trainer.world.many else Alone(trainer)


def tell(trainer: Any, paused: bool) -> None:
    """A pause or its end: status.json and the watchers."""
    trainer.outputs.write_status("paused" if paused else "training")
    trainer.emit(ev.Paused(paused, trainer.step))


def resample(trainer: Any) -> None:
    """New preview noise, and a preview drawn with it at once (rank 0's, in a job)."""
    trainer.samples.resample()
    trainer.emit(ev.Notice("preview noise resampled"))
    if trainer.previews is not None:
        trainer.outputs.preview(trainer.config.preview_count)


def apply_settings(trainer: Any, values: dict[str, Any]) -> None:
    """Live settings (checked already): applied to the GAN, a `set` row, a Settings event. A
    penalty off since the start stays off (its figures were not announced)."""
    gan = trainer.gan
    for key in [k for k in PENALTIES if values.get(k) and PENALTIES[k] not in gan.penalties]:
        how = (f"resume with --resume RUN --{key} {values[key]:g}" if PENALTIES[key].batch_norm or not gan.d_batch_norm
               else f"D was built for it off: start a new run, gantui --config RUN --{key} {values[key]:g}")
        values.pop(key)
        trainer.emit(ev.Notice(f"--{key} was off when this run started, so it cannot be turned on live: {how}",
                               "error"))
    changed = {k: v for k, v in values.items() if gan.live.get(k) != v}
    if not changed:
        return
    gan.apply(changed)
    trainer.emit(ev.Settings(trainer.step, changed))  # the run writes the `set` row and keeps the marker
