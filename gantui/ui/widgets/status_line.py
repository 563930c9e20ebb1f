"""One line: state, step, images/s, ETA, epoch, elapsed, device, run directory.

The dashboard sets `status` (a `Status`, made from its own state by `Status.of`) whenever that
state changes; the line repaints itself then, and once a second for the clock."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from textual.reactive import reactive
from textual.widgets import Static

from gantui.common import eta_seconds, format_duration
from gantui.run import events as ev


@dataclass(frozen=True)
class Progress:
    """How far a run has come, from its newest metrics row (or its snapshot, or its end)."""

    step: int = 0
    epoch: int = 0  # completed epochs
    images_per_s: float = 0.0
    steps_per_s: float = 0.0


@dataclass(frozen=True)
class Status:
    device: str
    state: str  # TRAINING, PAUSED, DONE ... (replay)
    step: int
    total: int  # 0: its length is not known (no ETA)
    epoch: int | None  # None: a loop of the user's (no epochs)
    images_per_s: float | None  # None: a loop of the user's (steps/s instead)
    steps_per_s: float
    run_dir: str
    batch: tuple[int, int] | None  # (processes, images per process) of a torchrun job: its global batch
    since: float  # the clock reading the elapsed time counts from
    until: float | None  # the clock reading it stopped at (the run has ended), else None
    pictures: str = "blocks"  # how samples are drawn: kitty, sixel, iterm (full resolution) or half blocks

    @classmethod
    def of(cls, started: ev.Started, finished: ev.Finished | None, *, lost: bool, quitting: bool, paused: bool,
           progress: Progress, since: float, until: float | None, pictures: str = "blocks") -> Status:
        processes = started.config.get("processes") or 1
        compiling = started.config.get("compile") and progress.step == started.step and finished is None
        state = finished.reason.upper() if finished else "DISCONNECTED" if lost else (
            "QUITTING" if quitting else "PAUSED" if paused else "COMPILING" if compiling else "TRAINING")
        epochs = started.capabilities.epochs
        return cls(
            device=started.device, state=state + ("" if started.live else " (replay)"), step=progress.step,
            total=started.total_steps, epoch=progress.epoch + 1 if epochs else None,
            images_per_s=None if not epochs else progress.images_per_s if finished is None else 0.0,
            steps_per_s=progress.steps_per_s if finished is None else 0.0, run_dir=started.run_dir,
            batch=(processes, started.config.get("batch_size", 0)) if processes > 1 else None,
            since=since, until=until, pictures=pictures)


class StatusLine(Static):
    status: reactive[Status | None] = reactive(None, layout=False)

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("starting...")
        self.clock = clock

    def on_mount(self) -> None:
        self.set_interval(1.0, self.paint)  # the elapsed time and the ETA

    def watch_status(self) -> None:
        self.paint()

    def paint(self) -> None:
        status = self.status
        if status is None:
            return
        elapsed = (self.clock() if status.until is None else status.until) - status.since
        eta = eta_seconds(status.step, status.total, status.steps_per_s)
        rate = f"{status.steps_per_s:,.1f} steps/s" if status.images_per_s is None else f"{status.images_per_s:,.0f} img/s"
        batch = status.batch
        self.update(
            f"[b]{status.state}[/b] │ step {status.step}{f'/{status.total}' if status.total else ''} │ {rate}"
            + (f" │ ETA {'?' if eta is None else format_duration(eta)}" if status.total else "")
            + (f" │ epoch {status.epoch}" if status.epoch is not None else "")
            + (f" │ batch {batch[0] * batch[1]} ({batch[0]}×{batch[1]})" if batch else "")
            + f" │ {format_duration(elapsed)} elapsed │ {status.device}"
            + (f" │ {status.pictures}" if status.pictures != "blocks" else "") + f" │ [dim]{status.run_dir}[/dim]",
            layout=False,  # one line, always: no layout pass for the whole screen each second
        )
