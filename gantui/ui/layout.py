"""The dashboard's layout, preview requests and status line: a part of `GanApp` (app.py), as
steering.py (the keys) and leaving.py (quit, hang-up, signals) are."""
from __future__ import annotations

import time

from textual import events

from gantui.ui.widgets.preview_pane import PreviewPane

MIN_SIZE = (80, 24)


class Layout:
    """Its attributes are the app's (started, finished, link, status_line, too_small...)."""

    def on_resize(self, event: events.Resize) -> None:
        width, height = event.size
        self.screen.set_class(width < MIN_SIZE[0] or height < MIN_SIZE[1], "too-small")
        self.too_small.update(
            f"Terminal too small: {width}x{height}, gantui needs {MIN_SIZE[0]}x{MIN_SIZE[1]}.\n"
            "Training goes on; enlarge the window, or press q to save and quit.")

    def on_preview_pane_capacity_changed(self, message: PreviewPane.CapacityChanged) -> None:
        """(By its name: Textual's `@on` is not collected from a mixin.)"""
        self.ask_for_previews(message.capacity)

    def ask_for_previews(self, count: int) -> None:
        """Previews are a request: the run generates as many as the largest consumer shows."""
        if self.started is not None and self.steerable():
            self.send("preview", count=count)

    def report_cost(self) -> None:
        """This thread's CPU time to the run's one preview pacer (counted only in its own process)."""
        now = time.thread_time()
        self.link.report_cost(now - self.cpu_mark)
        self.cpu_mark = now

    def tick_status(self) -> None:
        """The clock: a repaint only when no event has refreshed the status line this second."""
        if time.monotonic() - self.status_painted >= 0.95:
            self.refresh_status()

    def refresh_status(self) -> None:
        if self.started is None:
            return
        self.status_painted = time.monotonic()
        finished, started = self.finished, self.started
        processes = started.config.get("processes") or 1
        compiling = started.config.get("compile") and self.step == started.step and finished is None
        state = finished.reason.upper() if finished else "DISCONNECTED" if self.lost else (
            "QUITTING" if self.quitting else "PAUSED" if self.paused else "COMPILING" if compiling else "TRAINING")
        if not started.live:
            state += " (replay)"
        if started.live and finished is None:
            elapsed = self.clock() - self.started_at
        else:  # frozen once the run has ended (a replay: at once)
            self.ended_at = self.clock() - self.started_at if self.ended_at is None else self.ended_at
            elapsed = self.ended_at
        self.status_line.show(
            device=started.device, state=state, step=self.step, total=started.total_steps,
            epoch=self.epoch + 1 if started.capabilities.epochs else None,
            images_per_s=None if not started.capabilities.epochs else self.images_per_s if finished is None else 0.0,
            steps_per_s=self.steps_per_s if finished is None else 0.0, elapsed=elapsed,
            run_dir=started.run_dir, batch=(processes, started.config.get("batch_size", 0)) if processes > 1 else None,
        )
