"""`gantui compare` in a terminal: a leaderboard of the runs, a figure of every run overlaid and
their FID on a log scale, each run's samples at the same step side by side, what differs between
them; the selected run steered with `gantui watch`'s keys. A client of run directories only (it
reads what the runs write, and sends commands to their sockets); torch-free."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static

from gantui.run.client import connect, read_messages
from gantui.run.compare import Entry, runs_in, shown
from gantui.run.rundir import RunDir
from gantui.run.tracks import AXES, RemoteTrack, Track, entries
from gantui.ui.compare.board import SORTS, Leaderboard
from gantui.ui.compare.leave import LeaveSweepScreen
from gantui.ui.compare.widgets import Chart, Samples, badge
from gantui.ui.pictures.terminal import Terminal
from gantui.ui.pictures.widget import announce, follow_resize, switch_pictures
from gantui.ui.widgets.confirm_screen import ConfirmScreen

WEIGHTS = (0.0, 0.6, 0.9, 0.99)  # smoothing, as TensorBoard's slider's usual stops
POLL = 1.0  # seconds between looks at the runs' directories


def remote(spec: str, depth: int) -> RemoteTrack:
    from gantui.run.client import relay_link

    host, run = spec.split(":", 1)
    return RemoteTrack(spec, relay_link(host, run), depth)


def command(run: RunDir, cmd: str, name: str, timeout: float = 10.0) -> str:
    """A command over a run's socket, answered: what to say of it. (The server reads a command and
    writes to its client side by side; a client gone before the answer may lose its command.)"""
    try:
        sock = connect(run)
        if sock is None:
            return f"{name} is not running"
        with sock:
            sock.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
            for msg in read_messages(sock, time.monotonic() + timeout):
                if msg.get("type") == "error":
                    return f"{name}: {msg.get('error')}"
                if msg.get("type") == "ok":
                    return f"{cmd} sent to {name}"
    except (OSError, ValueError) as err:
        return f"{name}: {getattr(err, 'strerror', None) or err}"
    return f"{name}: no answer to {cmd}"


def nearby(path: str) -> str:
    """A path as short as it can be said from here."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


class CompareApp(App):
    CSS_PATH = "compare.tcss"
    TITLE = "gantui compare"
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/Resume"),
        Binding("s", "save", "Save"),
        Binding("x", "stop_run", "Stop run"),
        Binding("m", "metric", "Figure"),
        Binding("z", "smoothing", "Smoothing"),
        Binding("a", "axis", "Axis"),
        Binding("b", "baseline", "Baseline"),
        Binding("o", "sort", "Sort"),
        Binding("left", "scrub(-1)", "Older samples"),
        Binding("right", "scrub(1)", "Newer samples"),
        Binding("end", "scrub_live", "Newest", show=False, priority=True),
        Binding("i", "switch_pictures", "Pictures", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    metric = reactive("loss_g")
    weight = reactive(0.6)
    axis = reactive("steps")
    scrub: reactive[int | None] = reactive(None)  # the samples' step; None: each run's newest
    baseline: reactive[int | None] = reactive(None)  # a run's index
    sort = reactive("order")

    def __init__(self, runs: list[RunDir | str], poll: float = POLL, sweep: Any = None,
                 folders: list[Path] = (), pictures: Terminal = Terminal()) -> None:
        """`runs`: run directories, or HOST:RUN (followed through `ssh HOST gantui relay RUN`).
        `folders`: folders of runs (a sweep's trials), whose new runs join as they start. `sweep`: a
        sweep running in this process (sweep/runner.py): its progress, and what q does. `pictures`:
        what the terminal draws (pictures.terminal.detect)."""
        super().__init__()
        self.pictures = pictures
        self.tracks = [Track(run) if isinstance(run, RunDir) else remote(run, pictures.depth) for run in runs]
        self.folders = list(folders) + ([sweep.sweep.trials] if sweep is not None else [])
        self.sweep = sweep
        self.choice: str | None = None  # leaving a sweep's view: "stop" or "leave"
        self.poll = poll
        self.entries: list[Entry] = []

    def compose(self) -> ComposeResult:
        yield Leaderboard(id="board", cursor_type="row", zebra_stripes=True)
        yield Static(id="diff")
        with Horizontal(id="charts"):
            yield Chart(id="curve")
            yield Chart(id="fid")
        yield Samples(id="samples")
        yield Static(id="state")
        yield Footer()

    def on_mount(self) -> None:
        announce(self)
        for track in self.tracks:
            if isinstance(track, RemoteTrack):
                self.run_worker(track.link.run(track.post), exit_on_error=False)
            track.refresh()
        if self.sweep is not None:
            self.title = f"gantui sweep {self.sweep.sweep.path.name}"
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.leave, "stop")  # gantui stop SWEEP
        keys = self.keys()
        if keys and self.metric not in keys:
            self.metric = keys[0]
        self.call_after_refresh(self.redraw)  # once the charts have set up their plots (their on_mount)
        self.set_interval(self.poll, self.look)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for track in self.tracks:
            seen.update(dict.fromkeys(track.keys()))
        return [k for k in seen if k not in ("images_per_s", "steps_per_s")]

    def look(self) -> None:
        grown = False
        known = {t.where for t in self.tracks}
        for folder in self.folders:  # runs started since (a sweep's new trials)
            for run in runs_in(folder):
                if str(run.path) not in known:
                    self.tracks.append(Track(run))
                    grown = True
        if any([track.refresh() for track in self.tracks]) or grown:
            self.redraw()
        elif self.sweep is not None:
            self.show_state()  # the study's progress

    def redraw(self) -> None:
        self.entries = entries(self.tracks)
        self.fill_board()
        self.query_one("#curve", Chart).show(self.tracks, self.metric, self.axis, self.weight)
        self.query_one("#fid", Chart).show(self.tracks, "fid", self.axis, 0.0, quality=True)
        self.query_one(Samples).show(self.tracks, self.scrub)
        self.show_diff()
        self.show_state()

    def fill_board(self) -> None:
        self.query_one(Leaderboard).show(self.entries, self.baseline, self.sort)

    def selected(self) -> int | None:
        boards = self.query(Leaderboard)  # none while the app is closing (a row highlighted late)
        return boards.first().selected() if boards else None

    @on(DataTable.RowHighlighted)
    def highlighted(self) -> None:
        self.show_diff()

    def show_diff(self) -> None:
        i = self.selected()
        if i is None:
            return
        e = self.entries[i]
        differs = "  ".join(f"{k}={shown(v)}" for k, v in e.diff.items()) or "the same settings as the others"
        local = self.tracks[i].run is not None and self.tracks[i].config.get("producer", "gantui") == "gantui"
        again = f"gantui --config {nearby(e.dir)}" if local else ""
        self.query_one("#diff", Static).update(Text.assemble(badge(i), f" {e.name}: {differs}",
                                                             (f"   again: {again}" if again else "", "dim")))

    def show_state(self) -> None:
        if self.sweep is not None:
            try:
                line = self.sweep.progress() + (" · finished" if self.sweep.finished() else "")
            except Exception as err:  # the storage's passing error: said, and read again next time
                line = f"the study cannot be read now ({type(err).__name__})"
            self.query_one("#state", Static).update(line)
            return
        at = "newest" if self.scrub is None else f"step {self.scrub:,}"
        at += f" ({self.pictures.protocol})" if self.pictures.pixels else ""
        base = self.tracks[self.baseline].name if self.baseline is not None else "none"
        self.query_one("#state", Static).update(
            f"{len(self.tracks)} runs · x: {self.axis} · figure: {self.metric} · smoothing {self.weight:g} · "
            f"samples: {at} · baseline: {base} · sort: {self.sort}")

    # -- keys ---------------------------------------------------------------------------------
    def action_metric(self) -> None:
        keys = self.keys()
        if keys:
            self.metric = keys[(keys.index(self.metric) + 1) % len(keys)] if self.metric in keys else keys[0]
            self.redraw()

    def action_smoothing(self) -> None:
        self.weight = WEIGHTS[(WEIGHTS.index(self.weight) + 1) % len(WEIGHTS)] if self.weight in WEIGHTS else WEIGHTS[0]
        self.redraw()

    def action_axis(self) -> None:
        self.axis = AXES[(AXES.index(self.axis) + 1) % len(AXES)]
        self.redraw()

    def action_baseline(self) -> None:
        i = self.selected()
        self.baseline = None if i == self.baseline else i
        self.redraw()

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.redraw()

    def action_scrub(self, direction: int) -> None:
        """Every run's samples an older or newer saved grid back, together."""
        steps = sorted({step for track in self.tracks for step, _ in track.grids})
        if not steps:
            return
        at = steps[-1] if self.scrub is None else self.scrub
        later = [s for s in steps if s > at] if direction > 0 else [s for s in steps if s < at]
        if direction > 0:
            self.scrub = later[0] if later and later[0] != steps[-1] else None
        else:
            self.scrub = later[-1] if later else steps[0]
        self.redraw()

    def action_scrub_live(self) -> None:
        self.scrub = None
        self.redraw()

    def on_resize(self) -> None:
        follow_resize(self)

    def action_switch_pictures(self) -> None:
        """i: the samples at full resolution <-> in half blocks (where the terminal draws pictures)."""
        if not switch_pictures(self):
            return
        for track in self.tracks:
            if isinstance(track, RemoteTrack):
                track.ask_previews(self.pictures.depth)
        self.show_state()

    def action_toggle_pause(self) -> None:
        i = self.selected()
        if i is not None:
            self.send(i, "resume" if self.tracks[i].state == "paused" else "pause")

    def action_save(self) -> None:
        i = self.selected()
        if i is not None:
            self.send(i, "save")

    def action_stop_run(self) -> None:
        i = self.selected()
        if i is None or not self.tracks[i].live:
            self.notify("that run is not running", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.send(i, "stop")

        self.push_screen(ConfirmScreen(f"Stop {self.tracks[i].name}? It saves first."), answered)

    def action_quit(self) -> None:
        """A sweep still running asks whether to stop its trials or leave them running."""
        if self.sweep is None or self.sweep.finished():
            self.exit()
            return

        def answered(choice: str | None) -> None:
            if choice is not None:
                self.leave(choice)

        self.push_screen(LeaveSweepScreen(), answered)

    def leave(self, choice: str) -> None:
        self.choice = choice
        self.exit()

    def on_unmount(self) -> None:
        if self.sweep is not None:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)

    def send(self, index: int, cmd: str) -> None:
        """A command to the run's process, over its socket."""
        track = self.tracks[index]
        if isinstance(track, RemoteTrack) and track.live:
            try:
                track.link.send({"cmd": cmd})
            except (RuntimeError, OSError) as err:
                self.notify(f"{track.name}: {err}", severity="error")
            else:
                self.notify(f"{cmd} sent to {track.name}")
            return
        if not track.live or track.run is None:
            self.notify(f"{track.name} is not running", severity="warning")
            return
        self.run_worker(lambda: self.notify(command(track.run, cmd, track.name)), thread=True)
