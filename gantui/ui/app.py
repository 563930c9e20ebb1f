"""The dashboard: a client of a run. Events in (panes), commands out (keys); nothing of the trainer.

The same app draws a run in this process (`gantui`), in another process (`gantui watch`, over
its socket or an SSH relay) and a run nobody serves any more (a replay, read-only).
"""
from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, Static

from gantui.run import events as ev
from gantui.run.hub import settled
from gantui.common import STOP_SIGNALS, Pane, steps_per_s
from gantui.config import live_settings
from gantui.datasets import describe_config, evaluation_off_reason
from gantui.run.rundir import RunDir
from gantui.run.client import ConnectionLost, LocalLink, ReplayLink, StreamLink
from gantui.ui.layout import Layout
from gantui.ui.leaving import Leaving
from gantui.ui.messages import EngineEvent, message_for
from gantui.ui.steering import Steering
from gantui.ui.widgets.device_pane import DevicePane
from gantui.ui.widgets.metric_pane import HealthPane, LossPane, MetricPane
from gantui.ui.widgets.preview_pane import PreviewPane
from gantui.ui.widgets.quality_pane import QualityPane
from gantui.ui.widgets.status_line import StatusLine

# Seconds between repaints of the metric panes at most: on a GPU a metrics row comes every few
# milliseconds, and a repaint costs the UI thread (and so, in one process, the trainer) ~10-20 ms.
METRICS_INTERVAL = 1.0
COST_INTERVAL = 2.0  # seconds between reports of the UI thread's CPU time to the preview pacer

Link = LocalLink | StreamLink | ReplayLink


class GanApp(Steering, Leaving, Layout, App[int]):
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
        Binding("left", "scrub(-1)", "Older grid", show=False),
        Binding("right", "scrub(1)", "Newer grid", show=False),
        Binding("end", "live_samples", "Live samples", show=False),
    ]
    paused: reactive[bool] = reactive(False, bindings=True)

    def __init__(self, link: Link, *, on_hangup: str = "detach", clock: Callable[[], float] = time.monotonic,
                 job: bool = False) -> None:
        """`job`: this dashboard started the run in processes of its own (`gantui --nproc`): it owns
        it as a dashboard owns a run in its process (q stops it, saved), and d leaves it running."""
        super().__init__()
        self.link, self.on_hangup, self.clock = link, on_hangup, clock
        self.job = job
        self.owner = link.owner or job  # q and a stop signal stop the run, not only this dashboard
        self.started: ev.Started | None = None
        self.finished: ev.Finished | None = None
        self.lost: str | None = None  # why the link to a live run went
        self.step = self.epoch = 0
        self.images_per_s = self.steps_per_s = 0.0
        self.signal_received: int | None = None
        self.detached = False  # the terminal hung up: the dashboard went, the run goes on
        self.abandon_trainer = False  # a second signal: exit without waiting for the trainer thread
        self.started_at = clock()
        self.ended_at: float | None = None
        self.quitting = False
        self.status_painted = 0.0
        self.pending_rows: list[dict[str, Any]] = []  # metrics rows not yet on screen
        self.metrics_painted = 0.0
        self.cpu_mark = time.thread_time()
        self.loss_pane = LossPane()
        self.health_pane = HealthPane()
        self.metric_panes: list[MetricPane] = [self.loss_pane, self.health_pane]  # as many as the run announces
        self.quality_pane = QualityPane()
        self.preview_pane = PreviewPane()
        self.device_pane = DevicePane()
        self.status_line = StatusLine("starting...")
        self.too_small = Static(id="too-small")

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield self.loss_pane
                yield self.health_pane
                yield self.quality_pane
            with Vertical(id="right"):
                yield self.preview_pane
                yield self.device_pane
        yield self.status_line
        yield self.too_small
        yield Footer()

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.on_stop_signal, signum)
        self.guard_sigcont()
        self.set_interval(0.5, self.tick_status)
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
        if self.detached:  # a second hang-up (the shell passes its own on) must not end the run
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
                self.configure_panes(panes)
                if shape:
                    self.preview_pane.channels, self.preview_pane.image_size = shape[0], shape[1]
            case ev.Started() as started:
                self.on_started(started)
            case ev.Paused(paused=paused, step=step, by=by):
                self.paused, self.step = paused, step
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
        self.refresh_status()

    def on_started(self, event: ev.Started) -> None:
        """The run as it stands (a fresh run, a resumed one, or a snapshot for a late joiner)."""
        self.started = event
        self.started_at = self.clock() - event.elapsed  # a late joiner counts from the run's start
        rate = event.images_per_s or (event.history[-1].get("images_per_s") or 0.0 if event.history else 0.0)
        self.step, self.epoch, self.images_per_s = event.step, event.epoch, rate
        self.steps_per_s = steps_per_s(event.history[-1], event.config.get("batch_size", 64)) if event.history else 0.0
        self.paused = event.state == "paused"
        self.configure_panes(event.schema)
        for pane in self.metric_panes:
            if event.history:  # a resumed run's past curves, or a late joiner's
                pane.add(event.history)
            for change in event.sets:
                pane.mark(change["step"])
        if event.history:
            self.device_pane.show(event.history[-1])
        self.quality_pane.add(event.quality)
        self.quality_pane.display = event.capabilities.evaluates  # a loop of the user's is not evaluated here
        if event.image_shape is None:  # a run from before runs announced it
            off = evaluation_off_reason(event.config.get("dataset", "mnist")) or (
                "" if event.config.get("eval_every") == 0 else None)
        else:
            off = event.evaluation
        if off is not None:
            self.quality_pane.off(off or "--eval-every 0")
        shape = event.image_shape or describe_config(event.config).shape
        self.preview_pane.channels, self.preview_pane.image_size = shape[0], shape[1]
        self.preview_pane.run_dir = RunDir(event.run_dir)  # over ssh, a path this machine may not have
        if event.preview is not None:
            self.preview_pane.show(event.preview)
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
        for pane in self.metric_panes:
            pane.mark(event.step)
        if self.started is not None:
            self.started = settled(self.started, event.values)
        changes = ", ".join(f"{live_settings().get(k, k) if self.started and self.started.capabilities.recipe else k} {v:g}"
                            for k, v in event.values.items())
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
        for pane in self.metric_panes:
            pane.add(rows)
        last = rows[-1]
        self.device_pane.show(last)
        self.step, self.epoch, self.images_per_s = last["step"], last.get("epoch", 1) - 1, last.get("images_per_s") or 0.0
        self.steps_per_s = steps_per_s(last, self.started.config.get("batch_size", 64) if self.started else 64)
        self.metrics_painted = time.monotonic()
        self.refresh_status()

    def configure_panes(self, schema: list[Pane]) -> None:
        """A pane for each group of figures the run announced (a loop's grow as it logs new keys)."""
        shown = self.started.capabilities.panes if self.started is not None else 0
        if not schema and self.started is not None and not shown:
            schema = [Pane("metrics")]  # a loop that has logged nothing yet
        if shown:
            schema = schema[:shown]  # the trainer's third pane (gradients, when the second is full) is the log's only
        left = self.query_one("#left")
        while len(self.metric_panes) < len(schema):
            pane = MetricPane(len(self.metric_panes))
            self.metric_panes.append(pane)
            left.mount(pane, before=self.quality_pane)
        for pane in self.metric_panes:
            pane.configure(schema)

    def on_finished(self, event: ev.Finished) -> None:
        self.finished = event
        self.step = event.step
        self.paused = False
        self.refresh_bindings()
        if event.error:
            self.notify(f"training {event.reason}: {event.error}\nlast checkpoint: {event.checkpoint}\n"
                        "see error.log in the run directory; q quits", severity="error", timeout=3600)
        elif self.quitting or self.signal_received:
            self.leave(self.exit_code())
        else:
            self.notify(f"training {event.reason} at step {event.step}; q quits", timeout=3600)

    def on_lost(self, reason: str) -> None:
        self.lost = reason
        self.refresh_bindings()
        if self.started is None:  # never reached the run: nothing to show
            self.exit(2, return_code=2)
            return
        if self.quitting:  # the job ended before its last words reached this dashboard
            self.leave(self.exit_code())
            return
        if self.finished is None:
            self.notify(f"{reason}; q quits", severity="error", timeout=3600)

    def watch_paused(self, paused: bool) -> None:
        self.refresh_bindings()
