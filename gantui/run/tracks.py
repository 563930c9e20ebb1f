"""Runs followed from their directories, for the comparison view: each one's curves, evaluations,
state and sample grids, read again as they grow (new bytes only). Torch-free; a live run and a
finished one alike, whoever trains them."""
from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Any

from gantui.run.compare import Entry, number, settings_of, with_diff
from gantui.run.rundir import RunDir, Tail, parse_rows
from gantui.run.runs import LIVE_STATES, run_state

HISTORY = 20_000  # rows a run keeps: a day-long run's curve is its sampled past and its recent rows
AXES = ("steps", "images", "time")


class Track:
    """A run on this machine, read from its directory."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.where = str(run.path)
        self.name = run.path.name
        self._reset()

    def _reset(self) -> None:
        run = self.run
        self.rows: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.quality: list[dict[str, Any]] = []
        self.config = run.read_config()
        self.state = run_state(run)
        self.grids: list[tuple[int, Path]] = []
        self._tail = Tail(run.metrics)
        self._first = True

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def images_per_step(self) -> int | None:
        """Images D sees a step: batch x D steps x processes (None for a loop's run: unknown)."""
        batch = self.config.get("batch_size")
        if not isinstance(batch, int):
            return None
        return batch * int(self.config.get("d_steps") or 1) * int(self.config.get("processes") or 1)

    def refresh(self) -> bool:
        """Read what the run wrote since; whether anything changed."""
        changed = False
        try:
            size = self.run.metrics.stat().st_size
        except OSError:  # none yet, or the run's directory removed while shown
            size = 0
        if size < self._tail.offset:  # another file there now (a trial started again in its directory)
            self._reset()
        if self._first:  # a run of any length: its sampled past and its recent rows, in bounded time
            self._first = False
            self._tail.offset = size  # what is written meanwhile is read next time (a row twice is skipped)
            changed = self._take(self.run.read_metrics_bounded())
        elif lines := self._tail.lines():
            changed = self._take(parse_rows(b"\n".join(lines)))
        state = run_state(self.run)
        if state != self.state or not self.config:
            self.state, self.config, changed = state, self.run.read_config(), True
        grids = self.run.grids()
        if len(grids) != len(self.grids):
            self.grids, changed = grids, True
        return changed

    def _take(self, rows: list[dict[str, Any]]) -> bool:
        for row in rows:
            if not isinstance(row.get("step"), int):
                continue
            if row.get("event") == "quality":
                if not self.quality or row["step"] > self.quality[-1]["step"]:
                    self.quality.append(row)
            elif "event" not in row and (not self.rows or row["step"] > self.rows[-1]["step"]):
                self.rows.append(row)
        return bool(rows)

    def keys(self) -> list[str]:
        """The figures its rows hold, in their order (the numbers only)."""
        seen: dict[str, None] = {}
        for row in list(self.rows)[-50:]:
            for key, value in row.items():
                if key not in ("step", "epoch", "time") and isinstance(value, int | float) and not isinstance(value, bool):
                    seen.setdefault(key, None)
        return list(seen)

    def series(self, key: str, axis: str, rows: list[dict[str, Any]] | None = None) -> tuple[list[float], list[float]]:
        """(x, y) of `key` over the axis: steps, images seen, or seconds since the run's first row."""
        rows = list(self.rows) if rows is None else rows
        start = self.rows[0].get("time") if self.rows else None
        per_step = self.images_per_step() or 1
        xs, ys = [], []
        for row in rows:
            value = row.get(key)
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue
            if axis == "time":
                if not isinstance(row.get("time"), int | float) or start is None:
                    continue
                xs.append(row["time"] - start)
            else:
                xs.append(row["step"] * (per_step if axis == "images" else 1))
            ys.append(float(value))
        return xs, ys

    def grid_at(self, step: int | None) -> tuple[int, Path] | None:
        """The newest sample grid at or before `step` (None: the newest of all): (step, its file), or
        for a run on another host (step, its preview's images)."""
        at = [g for g in self.grids if step is None or g[0] <= step]
        return at[-1] if at else None


class RemoteTrack(Track):
    """A run on another host, followed through its relay (`ssh HOST gantui relay RUN`): the events it
    serves any watcher. Its samples are the previews it sends (the newest 50), not its saved grids."""

    PREVIEWS = 50
    TILES = 16

    def __init__(self, spec: str, link: Any, depth: int = 4) -> None:
        self.run = None  # type: ignore[assignment]
        self.where, self.link = spec, link
        self.depth = depth  # bits a channel its previews come in: 8 where the view draws pictures
        self.name = spec.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        self.rows = deque(maxlen=HISTORY)
        self.quality, self.config, self.state = [], {}, "starting"
        self.grids: list[tuple[int, Any]] = []  # (step, uint8 images)
        self._changed = False

    def post(self, event: Any) -> None:
        """An event from the relay, on the view's event loop."""
        from gantui.run import events as ev
        from gantui.run.client import ConnectionLost

        match event:
            case ev.Started():
                self.ask_previews()
                self.config = {**event.config, "image_shape": event.image_shape}
                self._take(event.history)
                self._take([{**row, "event": "quality"} for row in event.quality])
                self.state = event.finished.reason if event.finished else event.state
                if event.preview is not None:
                    self._preview(event.preview)
            case ev.Metrics():
                self._take([event.row])
            case ev.Quality():
                self._take([{**event.row, "event": "quality"}])
            case ev.Preview():
                self._preview(event)
            case ev.Paused():
                self.state = "paused" if event.paused else "training"
            case ev.Finished():
                self.state = event.reason
            case ConnectionLost():
                if self.state in LIVE_STATES:
                    self.state = "lost"
            case _:
                return
        self._changed = True

    def ask_previews(self, depth: int | None = None) -> None:
        """Previews are made for the watchers that ask (16: a side-by-side box's worth); the run, or
        the relay of a run nobody serves, sends them again where the depth is new."""
        self.depth = depth or self.depth
        self.link.send({"cmd": "preview", "count": self.TILES, "depth": self.depth})

    def _preview(self, preview: Any) -> None:
        if self.grids and self.grids[-1][0] == preview.step:
            self.grids[-1] = (preview.step, preview.images)
        else:
            self.grids = [*self.grids, (preview.step, preview.images)][-self.PREVIEWS:]

    def refresh(self) -> bool:
        changed, self._changed = self._changed, False
        return changed


def smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    out, last = [], 0.0
    for i, value in enumerate(values):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight ** (i + 1)) if weight else value)
    return out


def entries(tracks: list[Track]) -> list[Entry]:
    """The leaderboard's figures and differing settings, as `gantui compare --json` gives them, from
    what the tracks hold (no file read again)."""
    made = []
    for t in tracks:
        fids = [f for f in (number(r.get("fid")) for r in t.quality) if f is not None]
        last = t.rows[-1] if t.rows else {}
        made.append(Entry(dir=t.where, name=t.name, state=t.state, step=last.get("step", 0),
                          best_fid=min(fids) if fids else None, last_fid=fids[-1] if fids else None, coverage=None,
                          images_per_s=number(last.get("images_per_s")), settings=settings_of(t.config),
                          scored_by=(t.config.get("dataset"), t.quality[-1].get("fid_n")) if t.quality else None))
    return with_diff(made)
