"""What the controls ask for, done on the trainer's own thread at a step boundary: live settings,
a resample, a save, a pause. Functions of the trainer, as checkpoint.py's capture and restore are
(`controls.py` is the other side: the requests, safe from any thread)."""
from __future__ import annotations

import time
from typing import Any

from gantui.engine.distributed import agree, broadcast
from gantui.run import events as ev


def apply_commands(trainer: Any) -> None:
    """What `_pending` drained since the last step: settings, then a resample, then a save."""
    pending = trainer._pending()
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
    for key in [k for k in ("gp", "r1") if values.get(k) and k not in gan.penalties]:
        trainer.emit(ev.Notice(f"--{key} was off when this run started, so it cannot be turned on live: "
                               f"resume with --resume RUN --{key} {values.pop(key):g}", "error"))
    changed = {k: v for k, v in values.items() if getattr(trainer.config, k) != v}
    if not changed:
        return
    gan.apply(changed)
    trainer.emit(ev.Settings(trainer.step, changed))  # the run writes the `set` row and keeps the marker


def wait_while_paused(trainer: Any) -> None:
    """Until resumed or stopped, commands still applied; the status and the watchers told."""
    trainer._write_status("paused")
    trainer.emit(ev.Paused(True, trainer.step))
    if trainer.gan.meter.steps:
        trainer._log()  # so the numbers on screen are current while paused
    while not trainer._running.wait(0.05):  # a timeout, so commands still work while paused
        apply_commands(trainer)
    apply_commands(trainer)
    if trainer._stop.is_set():
        return  # woken to stop, not resumed: Finished comes next
    trainer._write_status("training")
    trainer.emit(ev.Paused(False, trainer.step))


def agree_at_interval(trainer: Any) -> bool:
    """A torchrun job's step boundary, at the metrics interval: rank 0's commands and any rank's
    stop (a signal) go out with the metrics (one all-reduce), and every rank applies them at this
    step. True: stop here."""
    world, main = trainer.world, trainer.world.main
    pending = trainer._pending() if main else {}
    lead = {}
    if main:  # rank 0's clock: when the next row and checkpoint fall
        rate = trainer.gan.meter.steps / max(time.perf_counter() - trainer._interval_start, 1e-9)
        lead = trainer.intervals.lead(rate)
    agreed = trainer._log({"stop": trainer._stop.is_set(), "pause": main and not trainer._running.is_set(),
                           "save": "save" in pending, "set": "set" in pending, **lead})
    trainer.intervals.follow(trainer.step, agreed)
    if agreed["set"]:
        apply_settings(trainer, broadcast(world, pending.get("set")))
    if "resample" in pending:
        resample(trainer)
    if agreed["save"]:
        trainer._save("manual")
    stop = agreed["stop"] or (agreed["pause"] and paused_together(trainer))
    if stop:
        trainer._stop.set()  # every rank ends as stopped
    return stop


def paused_together(trainer: Any) -> bool:
    """Every rank waits until rank 0 is resumed (or any rank is stopped); True: stopped."""
    world, main = trainer.world, trainer.world.main
    if main:
        trainer._write_status("paused")
        trainer.emit(ev.Paused(True, trainer.step))
    while True:
        if main:
            trainer._running.wait(0.2)
        agreed = agree(world, {"stop": trainer._stop.is_set(), "pause": main and not trainer._running.is_set()})
        if agreed["stop"] or not agreed["pause"]:
            break
    if main and not agreed["stop"]:
        trainer._write_status("training")
        trainer.emit(ev.Paused(False, trainer.step))
    trainer._interval_start, trainer._interval_images = time.perf_counter(), 0  # paused time is not training
    return agreed["stop"]
