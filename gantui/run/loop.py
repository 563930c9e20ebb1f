"""A user's training loop as the producer of a run: `gantui.Run`, the object `gantui.init` returns.

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
signal handler. The run's machinery (directory, lock, writer, hub, server, controls) is a
`Publisher` (publisher.py) that the run holds and never shows.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gantui.common import panes_json
from gantui.run import events as ev
from gantui.run import images as img
from gantui.run.arguments import RunConfig, json_ready
from gantui.run.loopranks import LoopRanks, LoopSide, ranks_boundary
from gantui.run.publisher import Publisher
from gantui.run.rows import Rows, schema_for

GRID_INTERVAL = 10.0  # seconds between the sample grids a loop's images leave in samples/
GRID_TILES = 64


def ending(error: BaseException | None) -> tuple[str | None, str | None]:
    """How an exception that ended the loop ends its run, as Lightning records it: (None, None) for
    a normal end (or `sys.exit(0)`), ("stopped", None) for Ctrl-C, ("error", text) otherwise."""
    if error is None or isinstance(error, SystemExit) and error.code in (None, 0):
        return None, None
    if isinstance(error, KeyboardInterrupt):
        return "stopped", None
    return "error", f"{type(error).__name__}: {error}"


class Run:
    """A run for a loop of your own: what `gantui.init` returns. `log` and `log_images` publish,
    `poll` and `should_stop` are the steering, `on_save` and `on_set` answer a watcher's keys,
    `config` and `notice` add to the record, `flush` and `finish` (or `with`) end it."""

    _boundary_thread: int | None = None  # the thread whose boundaries do the ranks' exchange

    def __init__(self, publisher: Publisher, name: str, config: dict[str, Any], tunable: dict[str, float],
                 total_steps: int | None, device: str, *, steer: str = "log",
                 ranks: tuple[int, int] | None = None, join_ranks: bool = False) -> None:
        """Opened and announced: config.json, status.json, the Started event (gantui.init makes it).
        `steer`: "log": log() and poll() are step boundaries; "poll": poll() alone. `ranks`: (rank,
        size) of a torch.distributed job it agrees with; `join_ranks`: agree with the ranks once
        torch.distributed is up (a run made before the process group, as Lightning's logger is)."""
        self._pub = publisher
        self._name, self._tunable = name, dict(tunable)
        self._config = RunConfig(json_ready(config), lambda: self._ended or self._write_config())
        self._total_steps = total_steps or 0
        self._device = device
        self._rows = Rows(self._put_row, publisher.writer.flush_soon, publisher.warn)
        self._combiner = self._rows.combiner
        self._step = 0
        self._image_shape: list[int] | None = None
        self._next_grid = 0.0
        self._on_save: Callable[[], Any] | None = None
        self._on_set: Callable[[dict[str, float]], Any] | None = None
        self._ended = False
        self._steer_on, self._ranks_wanted = steer, join_ranks and ranks is None
        self._ranks: LoopRanks | None = None  # under torch.distributed: the agreement at the step boundaries
        publisher.start()
        self._write_config()
        publisher.status("training", step=0, total_steps=self._total_steps)
        publisher.publish(ev.Started(
            run_dir=str(self.path), device=device, step=0, total_steps=self._total_steps, steps_per_epoch=0,
            config=self._announced(), evaluation="not evaluated (a loop of your own)", tunable=dict(self._tunable),
            capabilities=ev.LOOP, producer="loop"))
        if publisher.writes:
            self._rows.start()  # a quiet loop's last row put out for it
        if ranks is not None:
            self._ranks = LoopRanks(self, *ranks)

    @property
    def path(self) -> Path:
        """The run's directory (under torch.distributed, rank 0's on every rank once they agree)."""
        return self._pub.path

    @property
    def tunable(self) -> dict[str, float]:
        """The live settings declared with `init(tunable=...)`, as watchers last set them."""
        return self._tunable

    @property
    def step(self) -> int:
        """The step of the last `log` (or the count of calls without one)."""
        return self._step

    def _announced(self) -> dict[str, Any]:
        return {"producer": "loop", "name": self._name, "out": str(self.path), "resolved_device": self._device,
                "config": self._config, "schema": panes_json(schema_for(self._combiner.keys)),
                "image_shape": self._image_shape, "evaluation": "not evaluated (a loop of your own)",
                "tunable": self._tunable, "total_steps": self._total_steps, "capabilities": asdict(ev.LOOP)}

    def _write_config(self) -> None:
        config, pub = self._announced(), self._pub
        pub.writer.task(lambda: pub.dir.write_config(config))

    # -- the loop's calls -----------------------------------------------------------------
    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Numbers for the curves: floats, ints, numpy numbers or one-element tensors."""
        if not isinstance(metrics, dict):
            raise TypeError(f"gantui: log() takes a dict of numbers, got {type(metrics).__name__}")
        if self._ended:  # after finish(): nothing more is published
            return
        with self._rows.lock:  # log() from several threads: one step count, one set of sums
            self._step = self._step + 1 if step is None else int(step)
            due = self._pub.writes and self._combiner.add(metrics, self._step)  # another rank's run writes nothing
        if due:
            self._flush_row(wait=False)
        self._boundary(None, "log")

    def log_images(self, images: Any, step: int | None = None) -> None:
        """A batch of images (NCHW or NHWC, float in [-1, 1] or [0, 1], or uint8): copied only as
        far as wanted, a preview for whoever watches and a grid in samples/ every GRID_INTERVAL s."""
        step = self._step if step is None else int(step)
        img.layout(tuple(images.shape))  # ValueError naming a shape that cannot be images
        pub = self._pub
        if self._ended or not pub.writes:
            return
        wanted = pub.hub.previews_due()
        now = time.monotonic()
        grid_due = now >= self._next_grid
        if not (wanted or grid_due):
            return
        began = time.perf_counter()
        tiles = img.tiles(images, max(wanted, GRID_TILES if grid_due else 0))
        if self._image_shape is None:
            self._image_shape = [1 if tiles.ndim == 3 else 3, *tiles.shape[1:3]]
            pub.publish(ev.Schema(schema_for(self._combiner.keys), self._image_shape))
            self._write_config()
        if wanted:
            pub.publish(ev.Preview(step, tiles[:wanted], source="your loop"))
        if grid_due:
            self._next_grid = now + GRID_INTERVAL
            path, pixels = pub.dir.sample_path(step), tiles[:GRID_TILES]
            pub.writer.task(lambda: img.write_png(path, img.grid(pixels)))
        if wanted:
            pub.hub.preview_cost(time.perf_counter() - began)

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
        if self._pub.controls.asked:
            self._steer()

    @property
    def should_stop(self) -> bool:
        """True once someone stopped the run (`gantui stop`, `x` in a watcher); under
        torch.distributed, on every rank at the same step."""
        if self.ranks_agree:
            return self._ranks.stopped
        return self._pub.controls.stopped

    @property
    def ranks_agree(self) -> bool:
        """Whether the ranks of a torch.distributed job agree at this run's step boundaries: then a
        stop is on every rank at the same step, and a collective there meets every rank."""
        return self._ranks is not None and not self._ranks.alone

    def steer_with_poll(self) -> None:
        """From now on `poll` alone is a step boundary, on every rank, agreeing with the ranks once
        torch.distributed is up (as `init(steer="poll")`): for an integration that made the run
        before it knew it would call `poll` on every rank (Lightning's callback)."""
        self._steer_on, self._ranks_wanted = "poll", self._ranks is None

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
        return self._config

    def notice(self, text: str, step: int | None = None, tag: str | None = None) -> None:
        """A line of text for the run (TensorBoard's `add_text`): a `text` row of metrics.jsonl at
        `step` (default: the last logged) and a notice to whoever watches, prefixed by `tag`."""
        if self._ended or not self._pub.writes:
            return
        text = str(text)
        self._pub.row({"event": "text", "step": self._step if step is None else int(step),
                       **({"tag": tag} if tag is not None else {}), "text": text})
        self._pub.publish(ev.Notice(f"{tag}: {text}" if tag is not None else text))

    def flush(self) -> None:
        """What was logged so far out now: the pending row to the watchers and metrics.jsonl, the
        file written (the end of a Lightning stage, TensorBoard's `flush`). The run goes on."""
        if not self._ended:
            self._flush_row()
            self._pub.writer.sync()

    def finish(self, error: str | None = None) -> None:
        """The end of the run: its last row, its state (done, stopped, or error with `error`)."""
        self._finish("error" if error else "stopped" if self.should_stop else "done", error)

    def _finish(self, reason: str, error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._rows.close()
        self._flush_row()
        self._pub.end(ev.Finished(reason, self._step, error=error), self._total_steps)
        self._pub.close()

    def __enter__(self) -> Run:
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
        self._rows.out(wait)

    def _put_row(self, row: dict[str, Any], keys: list[str] | None) -> None:
        if keys is not None:  # a key logged for the first time: a curve
            self._pub.publish(ev.Schema(schema_for(keys), self._image_shape))
            self._write_config()
        self._pub.publish(ev.Metrics(row))

    def _steer(self) -> None:
        """What watchers asked for, done here: settings, a save, then a pause (waited out here)."""
        self._commands()
        controls = self._pub.controls
        if not controls.paused or self.should_stop:
            return
        controls.hold(LoopSide(self).announce, self._commands, lambda: self.should_stop)

    def _commands(self, pending: dict[str, Any] | None = None) -> None:
        """Settings, a resample, a save: those drained here, or `pending` (what the ranks agreed)."""
        pending = self._pub.controls.pending() if pending is None else pending
        publish = self._pub.publish
        if "set" in pending:
            values = pending["set"]
            self._tunable.update(values)
            if self._on_set is not None:
                self._call(self._on_set, values)
            publish(ev.Settings(self._step, values))
        if "resample" in pending:
            publish(ev.Notice("this run's images come from its loop: nothing to resample", "warning"))
        if "save" in pending:
            if self._on_save is None:
                publish(ev.Notice("this run saves nothing (its loop did not call run.on_save)", "warning"))
            else:
                saved = self._call(self._on_save)
                publish(ev.Saved(self._step, str(saved) if saved else "(the loop's own)", None, "manual"))

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A callback of the loop's: its failure is told to the watchers, not raised into `log()`."""
        try:
            return fn(*args)
        except Exception as err:
            self._pub.publish(ev.Notice(f"{getattr(fn, '__name__', 'a callback')} failed: {type(err).__name__}: {err}",
                                   "error"))
            return None
