"""A user's training loop as the producer of a run: `gantui.init` and the calls a loop makes.

    run = gantui.init(name="dcgan", config=vars(opt))
    for step ...:
        run.log({"Loss_D": errD, "Loss_G": errG}, step=step)
        run.log_images(fake, step=step)
        if run.should_stop:
            break
    run.finish()

`log` is the loop's step boundary: the values are checked at once (a bad one is a TypeError in
the caller) and queued; what watchers asked for (pause, save, live settings) is done there, on
the loop's own thread. Nothing here blocks the loop except the pause a watcher asked for, syncs
a GPU more than once per row interval, raises into it for gantui's own I/O, or installs a
signal handler.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from gantui.run import events as ev
from gantui.run import images as img
from gantui.run.arguments import RunConfig, json_ready
from gantui.run.loopranks import LoopSide, ranks_boundary
from gantui.run.rows import Rows

GRID_INTERVAL = 10.0  # seconds between the sample grids a loop's images leave in samples/
GRID_TILES = 64


def schema_for(keys: list[str]) -> list[dict[str, Any]]:
    """Keys grouped into panes by their prefix, as TensorBoard groups tags: `loss/G` and `loss/D`
    in a pane `loss`; without a slash, by the part before the first underscore (`Loss_D`,
    `Loss_G`); a key with neither in a pane `metrics`."""
    panes: dict[str, list[list[str]]] = {}
    for key in keys:
        if "/" in key:
            group, label = key.rsplit("/", 1)
        else:
            group, label = (key.split("_", 1)[0], key) if "_" in key else ("metrics", key)
        panes.setdefault(group, []).append([key, label, ".4g"])
    return [{"title": title, "lines": lines} for title, lines in panes.items()]


def ending(error: BaseException | None) -> tuple[str | None, str | None]:
    """How an exception that ended the loop ends its run, as Lightning records it: (None, None) for
    a normal end (or `sys.exit(0)`), ("stopped", None) for Ctrl-C, ("error", text) otherwise."""
    if error is None or isinstance(error, SystemExit) and error.code in (None, 0):
        return None, None
    if isinstance(error, KeyboardInterrupt):
        return "stopped", None
    return "error", f"{type(error).__name__}: {error}"


class LoopAPI:
    """The calls a user's loop makes; mixed into `Run` (publisher.py), whose parts it uses."""

    _ranks: Any = None  # under torch.distributed: the agreement at the step boundaries (loopranks.py)
    _ranks_wanted = False  # init(ranks=True) before torch.distributed was up: _ranks made once it is
    _steer_on = "log"  # init(steer=...): "log": log() and poll() are step boundaries; "poll": poll() alone
    _boundary_thread: int | None = None  # the thread whose boundaries do the ranks' exchange

    def open_loop(self, name: str, config: dict[str, Any], tunable: dict[str, float],
                  total_steps: int | None, device: str) -> None:
        self.name, self.tunable = name, dict(tunable)
        self.user_config = RunConfig(json_ready(config), lambda: self._ended or self._write_config())
        self.total_steps = total_steps or 0
        self.device = device
        self.rows = Rows(self._put_row, self.writer.flush_soon, self.warn)  # type: ignore[attr-defined]
        self.combiner = self.rows.combiner
        self.step = 0
        self.image_shape: list[int] | None = None
        self._next_grid = 0.0
        self._on_save: Callable[[], Any] | None = None
        self._on_set: Callable[[dict[str, float]], Any] | None = None
        self._ended = False
        self.start()
        self._write_config()
        self.status("training", step=0, total_steps=self.total_steps)
        self.publish(ev.Started(
            run_dir=str(self.path), device=device, step=0, total_steps=self.total_steps, steps_per_epoch=0,
            config=self._config(), evaluation="not evaluated (a loop of your own)", tunable=dict(self.tunable),
            capabilities=ev.LOOP, producer="loop"))
        if self.writes:
            self.rows.start()  # a quiet loop's last row put out for it

    def _config(self) -> dict[str, Any]:
        return {"producer": "loop", "name": self.name, "out": str(self.path), "resolved_device": self.device,
                "config": self.user_config, "schema": schema_for(self.combiner.keys),
                "image_shape": self.image_shape, "evaluation": "not evaluated (a loop of your own)",
                "tunable": self.tunable, "total_steps": self.total_steps, "capabilities": asdict(ev.LOOP)}

    def _write_config(self) -> None:
        config = self._config()
        self.writer.task(lambda: self.dir.write_config(config))

    # -- the loop's calls -----------------------------------------------------------------
    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Numbers for the curves: floats, ints, numpy numbers or one-element tensors."""
        if not isinstance(metrics, dict):
            raise TypeError(f"gantui: log() takes a dict of numbers, got {type(metrics).__name__}")
        if self._ended:  # after finish(): nothing more is published
            return
        with self.rows.lock:  # log() from several threads: one step count, one set of sums
            self.step = self.step + 1 if step is None else int(step)
            due = self.writes and self.combiner.add(metrics, self.step)  # another rank's run writes nothing
        if due:
            self._flush_row(wait=False)
        self._boundary(None, "log")

    def log_images(self, images: Any, step: int | None = None) -> None:
        """A batch of images (NCHW or NHWC, float in [-1, 1] or [0, 1], or uint8): copied only as
        far as wanted, a preview for whoever watches and a grid in samples/ every GRID_INTERVAL s."""
        step = self.step if step is None else int(step)
        img.layout(tuple(images.shape))  # ValueError naming a shape that cannot be images
        if self._ended or not self.writes:
            return
        wanted = self.hub.previews_due()
        now = time.monotonic()
        grid_due = now >= self._next_grid
        if not (wanted or grid_due):
            return
        began = time.perf_counter()
        tiles = img.tiles(images, max(wanted, GRID_TILES if grid_due else 0))
        if self.image_shape is None:
            self.image_shape = [1 if tiles.ndim == 3 else 3, *tiles.shape[1:3]]
            self.publish(ev.Schema(schema_for(self.combiner.keys), self.image_shape))
            self._write_config()
        if wanted:
            self.publish(ev.Preview(step, tiles[:wanted], source="your loop"))
        if grid_due:
            self._next_grid = now + GRID_INTERVAL
            path, pixels = self.dir.sample_path(step), tiles[:GRID_TILES]
            self.writer.task(lambda: img.write_png(path, img.grid(pixels)))
        if wanted:
            self.hub.preview_cost(time.perf_counter() - began)

    def poll(self, step: int | None = None) -> None:
        """A step boundary with nothing to log: a watcher's pause waits here, a save or a setting
        is done here (`log` does this itself). Under torch.distributed every rank calls it (or
        `log`) at its steps, and `step` (default: the last logged) is how far this rank has come."""
        self._boundary(step, "poll")

    def _boundary(self, step: int | None, by: str) -> None:
        """A step boundary (after `finish`, none; `log`'s, not under `init(steer="poll")`)."""
        if self._ended or by == "log" and self._steer_on == "poll":
            return
        if (self._ranks is not None or self._ranks_wanted) and ranks_boundary(self, step):
            return
        if self.controls.asked:
            self._steer()

    @property
    def should_stop(self) -> bool:
        """True once someone stopped the run (`gantui stop`, `x` in a watcher); under
        torch.distributed, on every rank at the same step."""
        if self._ranks is not None and not self._ranks.alone:
            return self._ranks.stopped
        return self.controls._stop.is_set()

    def on_save(self, fn: Callable[[], Any]) -> None:
        """`fn()` is called on the loop's thread, at its next `log()`, when someone presses `s`;
        what it returns (a path) is told to the watchers."""
        self._on_save = fn

    def on_set(self, fn: Callable[[dict[str, float]], Any]) -> None:
        """`fn(values)` is called on the loop's thread, at its next `log()`, with the live settings
        a watcher changed (of those declared with `tunable=`; `run.tunable` holds them all)."""
        self._on_set = fn

    @property
    def config(self) -> RunConfig:
        """The config given to `init`; `run.config.update({...})` adds to it and to config.json."""
        return self.user_config

    def notice(self, text: str, step: int | None = None, tag: str | None = None) -> None:
        """A line of text for the run (TensorBoard's `add_text`): a `text` row of metrics.jsonl at
        `step` (default: the last logged) and a notice to whoever watches, prefixed by `tag`."""
        if self._ended or not self.writes:
            return
        text = str(text)
        self.row({"event": "text", "step": self.step if step is None else int(step),
                  **({"tag": tag} if tag is not None else {}), "text": text})
        self.publish(ev.Notice(f"{tag}: {text}" if tag is not None else text))

    def flush(self) -> None:
        """What was logged so far out now: the pending row to the watchers and metrics.jsonl, the
        file written (the end of a Lightning stage, TensorBoard's `flush`). The run goes on."""
        if not self._ended:
            self._flush_row()
            self.writer.sync()

    def finish(self, error: str | None = None) -> None:
        """The end of the run: its last row, its state (done, stopped, or error with `error`)."""
        self._finish("error" if error else "stopped" if self.should_stop else "done", error)

    def _finish(self, reason: str, error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self.rows.close()
        self._flush_row()
        self.end(ev.Finished(reason, self.step, error=error), self.total_steps)  # type: ignore[attr-defined]
        self.close()  # type: ignore[attr-defined]

    def __enter__(self) -> Any:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        reason, text = ending(error)
        if reason is None:
            self.finish()
        else:
            self._finish(reason, text)

    # -- at the loop's step boundary ------------------------------------------------------
    def _flush_row(self, wait: bool = True) -> None:
        """The pending row out (rows.py); `wait=False`: not while the background thread puts one out."""
        self.rows.out(wait)

    def _put_row(self, row: dict[str, Any], keys: list[str] | None) -> None:
        if keys is not None:  # a key logged for the first time: a curve
            self.publish(ev.Schema(schema_for(keys), self.image_shape))
            self._write_config()
        self.publish(ev.Metrics(row))

    def _steer(self) -> None:
        """What watchers asked for, done here: settings, a save, then a pause (waited out here)."""
        self._commands()
        if self.controls._running.is_set() or self.should_stop:
            return
        self.controls.hold(LoopSide(self).announce, self._commands, lambda: self.should_stop)

    def _commands(self, pending: dict[str, Any] | None = None) -> None:
        """Settings, a resample, a save: those drained here, or `pending` (what the ranks agreed)."""
        pending = self.controls._pending() if pending is None else pending
        if "set" in pending:
            values = pending["set"]
            self.tunable.update(values)
            if self._on_set is not None:
                self._call(self._on_set, values)
            self.publish(ev.Settings(self.step, values))
        if "resample" in pending:
            self.publish(ev.Notice("this run's images come from its loop: nothing to resample", "warning"))
        if "save" in pending:
            if self._on_save is None:
                self.publish(ev.Notice("this run saves nothing (its loop did not call run.on_save)", "warning"))
            else:
                saved = self._call(self._on_save)
                self.publish(ev.Saved(self.step, str(saved) if saved else "(the loop's own)", None, "manual"))

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A callback of the loop's: its failure is told to the watchers, not raised into `log()`."""
        try:
            return fn(*args)
        except Exception as err:
            self.publish(ev.Notice(f"{getattr(fn, '__name__', 'a callback')} failed: {type(err).__name__}: {err}",
                                   "error"))
            return None


class NullRun:
    """What a rank other than 0 gets (and a run that could not be opened): every call does nothing."""

    should_stop = False
    path = None
    tunable: dict[str, float] = {}

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None: ...
    def log_images(self, images: Any, step: int | None = None) -> None: ...
    def poll(self, step: int | None = None) -> None: ...
    def on_save(self, fn: Callable[[], Any]) -> None: ...
    def on_set(self, fn: Callable[[dict[str, float]], Any]) -> None: ...
    def flush(self) -> None: ...
    def notice(self, text: str, step: int | None = None, tag: str | None = None) -> None: ...
    def finish(self, error: str | None = None) -> None: ...

    @property
    def config(self) -> RunConfig:
        return RunConfig({}, lambda: None)

    def __enter__(self) -> NullRun:
        return self

    def __exit__(self, *exc: Any) -> None: ...
