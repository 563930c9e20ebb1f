"""The dashboard: panes fed by trainer events, keys that steer the trainer."""
from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, Static

from gantui.config import Config
from gantui.engine import events as ev
from gantui.engine.trainer import Trainer
from gantui.headless import EXIT_CODES, STOP_SIGNALS
from gantui.ui.messages import EngineEvent, message_for
from gantui.ui.widgets.help_screen import HelpScreen
from gantui.ui.widgets.metric_pane import HealthPane, LossPane
from gantui.ui.widgets.preview_pane import PreviewPane
from gantui.ui.widgets.quality_pane import QualityPane
from gantui.ui.widgets.status_line import StatusLine

MIN_SIZE = (80, 24)
PREVIEW_INTERVAL = 1.0  # seconds between previews at most
# Seconds between repaints of the metric panes at most: on a GPU a metrics row comes every few
# milliseconds, and a repaint costs the UI thread (and so the trainer) ~10-20 ms.
METRICS_INTERVAL = 1.0
# The dashboard's share of the trainer's time that previews may push it to: the UI thread's CPU
# time (the trainer waits for the GIL, and on a busy CPU for a core, meanwhile) plus the trainer's
# own time generating previews. Previews are spaced out until the two together stay under it.
UI_BUDGET = 0.02
MAX_PREVIEW_INTERVAL = 8.0
# After a stop signal the run is saved before the app exits; if the exit then hangs (Textual's
# writer blocks on a terminal that is gone, as after an SSH drop), the process leaves anyway,
# so that it does not linger holding the run directory's lock.
EXIT_GRACE_S = 3.0


class Engine(Protocol):
    """What the dashboard needs of a trainer; tests pass a scripted one."""

    step: int
    epoch: int
    images_per_s: float
    preview_visible: int  # digits the pane shows: the trainer generates no more
    preview_interval: float | None  # seconds between previews: the UI widens it when it is busy
    preview_seconds: float  # time spent generating previews so far

    def run(self) -> ev.Finished: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def save(self) -> None: ...
    def resample(self) -> None: ...
    def stop(self) -> None: ...


EngineFactory = Callable[[Callable[[ev.Event], Any]], Engine]


class GanApp(App[int]):
    CSS_PATH = "gantui.tcss"
    TITLE = "gantui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("space", "pause", "Pause"),
        Binding("space", "resume", "Resume"),
        Binding("p", "toggle_pause", "Pause", show=False),
        Binding("s", "save", "Save"),
        Binding("r", "resample", "Resample"),
        Binding("q", "quit_run", "Quit"),
        Binding("ctrl+c", "quit_run", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]
    paused: reactive[bool] = reactive(False, bindings=True)

    def __init__(self, make_engine: EngineFactory, batch_size: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.engine = make_engine(lambda event: self.post_message(message_for(event)))
        self.batch_size = batch_size
        self.started: ev.Started | None = None
        self.finished: ev.Finished | None = None
        self.signal_received: int | None = None
        self.abandon_trainer = False  # a second signal: exit without waiting for the trainer thread
        self.started_at = clock()
        self.quitting = False
        self.status_painted = 0.0
        self.pending_rows: list[dict[str, Any]] = []  # metrics rows not yet on screen
        self.metrics_painted = 0.0
        self.cpu_mark: tuple[float, float] | None = None
        self.preview_floor = self.engine.preview_interval or PREVIEW_INTERVAL
        self.loss_pane = LossPane()
        self.health_pane = HealthPane()
        self.quality_pane = QualityPane()
        self.preview_pane = PreviewPane()
        self.status_line = StatusLine("starting...")
        self.too_small = Static(id="too-small")

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield self.loss_pane
                yield self.health_pane
                yield self.quality_pane
            yield self.preview_pane
        yield self.status_line
        yield self.too_small
        yield Footer()

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.on_stop_signal, signum)
        self.set_interval(0.5, self.tick_status)
        self.set_interval(2.0, self.pace_previews)
        self.set_interval(METRICS_INTERVAL, self.paint_metrics)
        self.train()

    def on_unmount(self) -> None:
        self.engine.stop()  # the app cannot exit while the trainer thread runs
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def train(self) -> None:
        self.engine.run()  # reports through events; Finished always comes last

    # -- keys ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pause", "resume", "toggle_pause", "save", "resample") and self.finished is not None:
            return None  # greyed out once training has ended
        if action == "pause":
            return not self.paused  # False hides it: the footer shows Pause or Resume
        if action == "resume":
            return self.paused
        return True

    def action_pause(self) -> None:
        self.engine.pause()
        self.paused = True

    def action_resume(self) -> None:
        self.engine.resume()
        self.paused = False

    def action_toggle_pause(self) -> None:
        self.action_resume() if self.paused else self.action_pause()

    def action_save(self) -> None:
        self.engine.save()
        self.notify("saving a checkpoint and a sample grid...")

    def action_resample(self) -> None:
        self.engine.resample()

    def action_quit_run(self) -> None:
        if self.finished is not None:
            self.leave(self.exit_code())
            return
        if not self.quitting:
            self.quitting = True
            self.notify("saving a checkpoint, then quitting...")
        self.engine.stop()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_stop_signal(self, signum: int) -> None:
        if self.signal_received is not None:  # a second signal: leave now, terminal restored
            self.abandon_trainer = True
            self.leave(128 + signum)
            return
        self.signal_received = signum
        self.action_quit_run()

    def leave(self, code: int) -> None:
        """Exit with `code` as both the app's result and its return code."""
        if self.signal_received is not None:  # the terminal may be gone: do not wait on it for ever
            watchdog = threading.Timer(EXIT_GRACE_S, os._exit, (code,))
            watchdog.daemon = True  # a prompt exit does not wait for it
            watchdog.start()
        self.exit(code, return_code=code)

    def exit_code(self) -> int:
        if self.finished is not None and self.finished.reason in EXIT_CODES:
            return EXIT_CODES[self.finished.reason]
        return 128 + self.signal_received if self.signal_received else 0

    # -- events from the trainer ---------------------------------------------------------
    @on(EngineEvent)
    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, ev.Metrics):
            self.pending_rows.append(event.row)
            if time.monotonic() - self.metrics_painted >= METRICS_INTERVAL:
                self.paint_metrics()
            return  # the status line is repainted with the panes
        if isinstance(event, ev.Quality):
            self.quality_pane.add([event.row])
        elif isinstance(event, ev.Preview):
            self.preview_pane.show(event.images, event.step)
        elif isinstance(event, ev.Started):
            self.started = event
            self.started_at = self.clock()
            if event.history:  # a resumed run: its past curves
                self.loss_pane.add(event.history)
                self.health_pane.add(event.history)
            self.quality_pane.add(event.quality)
            if event.config.get("eval_every") == 0:
                self.quality_pane.off()
            self.notify(f"run directory: {event.run_dir}", timeout=6)
            self.engine.preview_visible = self.preview_pane.capacity()
        elif isinstance(event, ev.Paused):
            self.paused = event.paused
        elif isinstance(event, ev.Saved):
            if event.reason in ("manual", "periodic"):
                self.notify(f"saved {event.checkpoint}" + (f"\nand {event.grid}" if event.grid else ""))
        elif isinstance(event, ev.Notice):
            self.notify(event.text, severity=event.level)  # type: ignore[arg-type]
        elif isinstance(event, ev.Finished):
            self.paint_metrics()
            self.on_finished(event)
        self.refresh_status()

    def paint_metrics(self) -> None:
        """The rows that arrived since the last repaint, into the panes in one go."""
        if not self.pending_rows:
            return
        rows, self.pending_rows = self.pending_rows, []
        self.loss_pane.add(rows)
        self.health_pane.add(rows)
        self.metrics_painted = time.monotonic()
        self.refresh_status()

    def on_finished(self, event: ev.Finished) -> None:
        self.finished = event
        self.paused = False
        self.refresh_bindings()
        if event.error:
            self.notify(f"training {event.reason}: {event.error}\nlast checkpoint: {event.checkpoint}\n"
                        "see error.log in the run directory; q quits", severity="error", timeout=3600)
        elif self.quitting or self.signal_received:
            self.leave(self.exit_code())
        else:
            self.notify(f"training done at step {event.step}; q quits", timeout=3600)

    # -- layout and status ---------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        width, height = event.size
        self.screen.set_class(width < MIN_SIZE[0] or height < MIN_SIZE[1], "too-small")
        self.too_small.update(
            f"Terminal too small: {width}x{height}, gantui needs {MIN_SIZE[0]}x{MIN_SIZE[1]}.\n"
            "Training goes on; enlarge the window, or press q to save and quit.")

    @on(PreviewPane.CapacityChanged)
    def on_preview_capacity(self, message: PreviewPane.CapacityChanged) -> None:
        self.engine.preview_visible = message.capacity

    def pace_previews(self) -> None:
        """Space previews out while the dashboard costs more than its budget, and back in when it does not."""
        # This (the UI) thread's CPU time, and the trainer's time spent on previews.
        now, spent = time.monotonic(), time.thread_time() + self.engine.preview_seconds
        interval = self.engine.preview_interval
        if self.cpu_mark is not None and interval is not None:
            share = (spent - self.cpu_mark[1]) / max(now - self.cpu_mark[0], 1e-6)
            if share > UI_BUDGET:
                self.engine.preview_interval = min(interval * 1.5, MAX_PREVIEW_INTERVAL)
            elif share < UI_BUDGET / 2:
                self.engine.preview_interval = max(interval / 1.5, self.preview_floor)
        self.cpu_mark = (now, spent)

    def tick_status(self) -> None:
        """The clock: a repaint only when no event has refreshed the status line this second."""
        if time.monotonic() - self.status_painted >= 0.95:
            self.refresh_status()

    def refresh_status(self) -> None:
        if self.started is None:
            return
        self.status_painted = time.monotonic()
        finished = self.finished
        compiling = self.started.config.get("compile") and self.engine.step == self.started.step
        state = finished.reason.upper() if finished else (
            "QUITTING" if self.quitting else "PAUSED" if self.paused else "COMPILING" if compiling else "TRAINING")
        self.status_line.show(
            device=self.started.device, state=state, epoch=self.engine.epoch + 1, step=self.engine.step,
            total=self.started.total_steps, images_per_s=self.engine.images_per_s, batch_size=self.batch_size,
            elapsed=self.clock() - self.started_at, run_dir=self.started.run_dir,
        )

    def watch_paused(self, paused: bool) -> None:
        self.refresh_bindings()


def run_dashboard(config: Config, resume_state: dict[str, Any] | None = None) -> int:
    def make_engine(emit: Callable[[ev.Event], Any]) -> Trainer:
        return Trainer(config, emit, resume_state=resume_state, preview_interval=PREVIEW_INTERVAL)

    app = GanApp(make_engine, config.batch_size)
    # Our own loop: asyncio.run() would wait for the trainer thread before returning.
    loop = asyncio.new_event_loop()
    code = app.run(loop=loop)
    code = code if code is not None else app.exit_code()
    if app.abandon_trainer:  # the terminal is restored; the trainer may be stuck mid-save
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    loop.close()
    return code
