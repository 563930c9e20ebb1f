"""The dashboard: a client of a run. Events in (panes), commands out (keys); nothing of the trainer.

The same app draws a run in this process (`gantui`), in another process (`gantui watch`, over
its socket or an SSH relay) and a run nobody serves any more (a replay, read-only).
"""
from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Footer, Static

from gantui.run import events as ev
from gantui.run.hub import settled
from gantui.common import STOP_SIGNALS, steps_per_s
from gantui.config import live_settings
from gantui.run.client import ConnectionLost, LocalLink, ReplayLink, StreamLink
from gantui.ui.leaving import Leaving
from gantui.ui.messages import EngineEvent, message_for
from gantui.ui.pictures.terminal import Terminal
from gantui.ui.pictures.widget import announce, follow_resize, switch_pictures
from gantui.ui.steering import Steering
from gantui.ui.widgets.preview_pane import PreviewPane
from gantui.ui.widgets.panes import Panes
from gantui.ui.widgets.status_line import Progress, Status, StatusLine

# Seconds between repaints of the metric panes at most: on a GPU a metrics row comes every few
# milliseconds, and a repaint costs the UI thread (and so, in one process, the trainer) ~10-20 ms.
METRICS_INTERVAL = 1.0
COST_INTERVAL = 2.0  # seconds between reports of the UI thread's CPU time to the preview pacer

Link = LocalLink | StreamLink | ReplayLink


MIN_SIZE = (80, 24)


class GanApp(Steering, App[int]):
    CSS_PATH = "gantui.tcss"
    TITLE = "gantui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("space", "pause", "Pause"),
        Binding("space", "resume", "Resume"),
        Binding("p", "toggle_pause", "Pause", show=False),
        Binding("s", "save", "Save"),
        Binding("r", "resample", "Resample"),
        Binding("t", "tune", "Tune"),
        Binding("x", "stop_run", "Stop run"),
        Binding("q", "quit_run", "Quit"),
        Binding("d", "detach", "Detach"),
        Binding("ctrl+c", "quit_run", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("i", "switch_pictures", "Pictures", show=False),
        Binding("left", "scrub(-1)", "Older grid", show=False),
        Binding("right", "scrub(1)", "Newer grid", show=False),
        Binding("end", "live_samples", "Live samples", show=False),
    ]
    # The run as this dashboard knows it; a change repaints the status line (`status_changed`).
    started: reactive[ev.Started | None] = reactive(None, always_update=True, init=False)
    finished: reactive[ev.Finished | None] = reactive(None, init=False)
    lost: reactive[str | None] = reactive(None, init=False)  # why the link to a live run went
    paused: reactive[bool] = reactive(False, bindings=True, init=False)
    quitting: reactive[bool] = reactive(False, init=False)
    progress: reactive[Progress] = reactive(Progress(), init=False)

    def __init__(self, link: Link, *, on_hangup: str = "detach", clock: Callable[[], float] = time.monotonic,
                 job: bool = False, pictures: Terminal = Terminal()) -> None:
        """`job`: this dashboard started the run in processes of its own (`gantui --nproc`): it owns
        it as a dashboard owns a run in its process (q stops it, saved), and d leaves it running.
        `pictures`: what the terminal draws (pictures.terminal.detect), asked before the app starts."""
        super().__init__()
        self.link, self.clock = link, clock
        self.pictures = pictures
        self.job = job
        self.owner = link.owner or job  # q and a stop signal stop the run, not only this dashboard
        self.leaving = Leaving(self, on_hangup)
        self.started_at = clock()
        self.ended_at: float | None = None
        self.status_due = False
        self.pending_rows: list[dict[str, Any]] = []  # metrics rows not yet on screen
        self.metrics_painted = 0.0
        self.cpu_mark = time.thread_time()
        self.panes = Panes()
        self.loss_pane, self.metric_panes = self.panes.loss_pane, self.panes.metric_panes
        self.quality_pane, self.preview_pane = self.panes.quality_pane, self.panes.preview_pane
        self.status_line = StatusLine(clock)
        self.too_small = Static(id="too-small")

    def compose(self) -> ComposeResult:
        yield self.panes
        yield self.status_line
        yield self.too_small
        yield Footer()

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.leaving.on_stop_signal, signum)
        self.leaving.guard_sigcont()
        announce(self)
        self.set_interval(METRICS_INTERVAL / 4, self.paint_metrics_due)
        self.set_interval(COST_INTERVAL, self.report_cost)
        post = self.post_event
        if isinstance(self.link, StreamLink):
            self.run_worker(self.link.run(post), exit_on_error=False)
        else:
            self.link.start(post)

    def post_event(self, event: Any) -> None:
        """From any thread (the trainer's, for a run in this process): never blocks."""
        self.post_message(message_for(event))

    def on_unmount(self) -> None:
        self.link.close()
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        if self.leaving.detached:  # a second hang-up (the shell passes its own on) must not end the run
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    # -- events from the run -------------------------------------------------------------
    @on(EngineEvent)
    def on_engine_event(self, message: EngineEvent) -> None:
        if not self.screen_stack:  # closing (a quit, a detach): the run's last words have nowhere to go
            return
        match message.event:
            case ev.Metrics(row=row):
                self.pending_rows.append(row)
                if time.monotonic() - self.metrics_painted >= METRICS_INTERVAL:
                    self.paint_metrics()
                return  # the status line is repainted with the panes
            case ev.Quality(row=row):
                self.quality_pane.add([row])
            case ev.Preview() as preview:
                self.preview_pane.show(preview)
            case ev.Settings() as settings:
                self.on_settings(settings)
            case ev.Schema(panes=panes, image_shape=shape):
                self.paint_metrics()  # the rows so far into the lines they belong to
                self.panes.configure(panes, self.started.capabilities.panes if self.started else 0,
                                     started=self.started is not None)
                if shape:
                    self.preview_pane.channels, self.preview_pane.image_size = shape[0], shape[1]
            case ev.Started() as started:
                self.on_started(started)
            case ev.Paused(paused=paused, step=step, by=by):
                self.paused, self.progress = paused, replace(self.progress, step=step)
                if by is not None and by != self.link.name:
                    self.notify(f"{'paused' if paused else 'resumed'} from another terminal")
            case ev.Saved(reason="manual" | "periodic") as saved:
                self.notify(f"saved {saved.checkpoint}" + (f"\nand {saved.grid}" if saved.grid else ""))
            case ev.Notice(text=text, level=level):
                self.notify(text, severity=level)  # type: ignore[arg-type]
            case ev.Loading(done=done, total=total):
                self.preview_pane.loading(done, total)
            case ev.Finished() as finished:
                self.paint_metrics()
                self.on_finished(finished)
            case ConnectionLost(reason=reason):
                self.on_lost(reason)

    def on_started(self, event: ev.Started) -> None:
        """The run as it stands (a fresh run, a resumed one, or a snapshot for a late joiner)."""
        self.started = event
        self.started_at = self.clock() - event.elapsed  # a late joiner counts from the run's start
        rate = event.images_per_s or (event.history[-1].get("images_per_s") or 0.0 if event.history else 0.0)
        self.progress = Progress(event.step, event.epoch, rate, steps_per_s(
            event.history[-1], event.config.get("batch_size", 64)) if event.history else 0.0)
        self.paused = event.state == "paused"
        self.panes.show_run(event)
        where = "replay (read-only) of" if not event.live else "run directory:" if self.owner else "watching"
        self.notify(f"{where} {event.run_dir}", timeout=6)
        self.sub_title = "" if event.live else "replay, read-only"
        self.ask_for_previews(self.preview_pane.capacity())
        if event.finished is not None:
            self.finished = event.finished
        self.refresh_bindings()  # the keys this run takes

    def on_settings(self, event: ev.Settings) -> None:
        """Settings changed live (from any terminal): a marker on the curves, and a notice."""
        self.paint_metrics()  # the rows before the change first, so the marker falls between
        self.panes.mark(event.step)
        if self.started is not None:
            self.started = settled(self.started, event.values)
        labels = (self.started.settings or live_settings()) if self.started and self.started.capabilities.recipe else {}
        changes = ", ".join(f"{labels.get(k, k)} {v:g}" for k, v in event.values.items())
        self.notify(f"set at step {event.step}: {changes}")

    def paint_metrics_due(self) -> None:
        """The rows still waiting once the interval has passed (no newer row came to paint them):
        the timer's own phase would otherwise add a repaint between the rows' own."""
        if time.monotonic() - self.metrics_painted >= METRICS_INTERVAL:
            self.paint_metrics()

    def paint_metrics(self) -> None:
        """The rows that arrived since the last repaint, into the panes in one go."""
        if not self.pending_rows:
            return
        rows, self.pending_rows = self.pending_rows, []
        self.panes.add_rows(rows)
        last = rows[-1]
        self.progress = Progress(last["step"], last.get("epoch", 1) - 1, last.get("images_per_s") or 0.0,
                                 steps_per_s(last, self.started.config.get("batch_size", 64) if self.started else 64))
        self.metrics_painted = time.monotonic()

    def on_finished(self, event: ev.Finished) -> None:
        self.finished = event
        self.progress = replace(self.progress, step=event.step)
        self.paused = False
        self.refresh_bindings()
        if event.error:
            self.notify(f"training {event.reason}: {event.error}\nlast checkpoint: {event.checkpoint}\n"
                        "see error.log in the run directory; q quits", severity="error", timeout=3600)
        elif self.quitting or self.leaving.signal_received:
            self.leaving.leave(self.leaving.exit_code())
        else:
            self.notify(f"training {event.reason} at step {event.step}; q quits", timeout=3600)

    def on_lost(self, reason: str) -> None:
        self.lost = reason
        self.refresh_bindings()
        if self.started is None:  # never reached the run: nothing to show
            self.exit(2, return_code=2)
            return
        if self.quitting:  # the job ended before its last words reached this dashboard
            self.leaving.leave(self.leaving.exit_code())
            return
        if self.finished is None:
            self.notify(f"{reason}; q quits", severity="error", timeout=3600)

    def watch_paused(self, paused: bool) -> None:
        self.refresh_bindings()
        self.status_changed()

    # -- the status line, the layout, previews ----------------------------------------------
    def status_changed(self) -> None:
        """The run's state changed: the status line is repainted once, after this message."""
        if not self.status_due:
            self.status_due = True
            self.call_later(self.show_status)

    watch_started = watch_finished = watch_lost = watch_quitting = watch_progress = status_changed

    def show_status(self) -> None:
        self.status_due = False
        started = self.started
        if started is None:
            return
        if (not started.live or self.finished is not None) and self.ended_at is None:
            self.ended_at = self.clock()  # the clock stops with the run (a replay's: at once)
        self.status_line.status = Status.of(started, self.finished, lost=bool(self.lost), quitting=self.quitting,
                                            paused=self.paused, progress=self.progress, since=self.started_at,
                                            until=self.ended_at, pictures=self.pictures.protocol)

    def on_resize(self, event: events.Resize) -> None:
        follow_resize(self)
        width, height = event.size
        self.screen.set_class(width < MIN_SIZE[0] or height < MIN_SIZE[1], "too-small")
        self.too_small.update(
            f"Terminal too small: {width}x{height}, gantui needs {MIN_SIZE[0]}x{MIN_SIZE[1]}.\n"
            "Training goes on; enlarge the window, or press q to save and quit.")

    @on(PreviewPane.CapacityChanged)
    def previews_fit(self, message: PreviewPane.CapacityChanged) -> None:
        self.ask_for_previews(message.capacity)

    def ask_for_previews(self, count: int) -> None:
        """Previews are a request: the run generates as many as the largest consumer shows."""
        if self.started is not None and self.link.live and not self.lost:  # a relayed replay answers too
            self.send("preview", count=count, depth=self.pictures.depth)

    def action_switch_pictures(self) -> None:
        """i: full-resolution pictures <-> half blocks (where the terminal draws pictures)."""
        if switch_pictures(self):
            self.ask_for_previews(self.preview_pane.capacity())
            self.status_changed()

    def report_cost(self) -> None:
        """This thread's CPU time to the run's one preview pacer (counted only in its own process)."""
        now = time.thread_time()
        self.link.report_cost(now - self.cpu_mark)
        self.cpu_mark = now
