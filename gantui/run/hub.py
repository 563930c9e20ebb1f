"""The run's hub: one publisher (the trainer), any number of consumers, one preview pacer.

The trainer calls `publish` from its thread; the hub keeps a snapshot of the run (so a consumer
that joins late starts from the whole picture) and hands each event to every consumer's
`deliver`, which must never block (a Textual `post_message`, a bounded per-client queue, the
headless printer's queue). Consumers steer the run through `command`, which touches only the trainer's
thread-safe controls. `publish` never raises into the producer (a user's loop, a background
flush): a consumer whose `deliver` fails is warned of once on stderr and goes on getting events.
Torch-free.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gantui.common import say
from gantui.run import events as ev
from gantui.run.history import History

Deliver = Callable[[ev.Event], Any]
CheckSet = Callable[[dict[str, Any]], dict[str, Any]]


class Controls(Protocol):
    """What the hub may do to a trainer: each method only sets an event or queues a command."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def save(self) -> None: ...
    def resample(self) -> None: ...
    def set(self, values: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...


class Pacer:
    """The one preview pacer: previews at most every `floor` seconds, spaced out while what they
    cost (the trainer generating them, plus any in-process dashboard's CPU, reported with
    `spent`) exceeds `budget` of the time, and brought back when it falls under half of it."""

    def __init__(self, floor: float = 1.0, budget: float = 0.02, ceiling: float = 8.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.floor, self.budget, self.ceiling, self.clock = floor, budget, ceiling, clock
        self.interval = floor
        self._lock = threading.Lock()
        self._cost = 0.0  # seconds spent since the last adaptation
        self._mark = clock()
        self._next = 0.0

    def due(self) -> bool:
        return self.clock() >= self._next

    def spent(self, seconds: float) -> None:
        with self._lock:
            self._cost += seconds

    def adapt(self) -> None:
        """After a preview: widen or narrow the interval by the share of time they cost lately."""
        now = self.clock()
        with self._lock:
            share, self._cost = self._cost / max(now - self._mark, 1e-6), 0.0
            self._mark = now
        if share > self.budget:
            self.interval = min(self.interval * 1.5, self.ceiling)
        elif share < self.budget / 2:
            self.interval = max(self.interval / 1.5, self.floor)
        self._next = now + self.interval


def settled(started: ev.Started, values: dict[str, Any]) -> ev.Started:
    """The run as it stands after a live change: a loop's declared settings, or the trainer's config."""
    if started.tunable is not None:
        return replace(started, tunable={**started.tunable, **values})
    return replace(started, config={**started.config, **values})


@dataclass
class Consumer:
    deliver: Deliver
    name: str
    previews: int = 0  # how many preview tiles it shows; 0: none


class RunHub:
    def __init__(self, pacer: Pacer | None = None, check_set: CheckSet | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`check_set`: checks a `set` command's values (raising ValueError); None refuses them.
        `clock`: what a snapshot's elapsed time is counted by."""
        self.pacer = pacer or Pacer()
        self.clock = clock
        self.check_set = check_set
        self.controls: Controls | None = None
        self._lock = threading.RLock()
        self._consumers: dict[str, Consumer] = {}
        self.wanted = 0  # the most preview tiles any consumer shows
        self._ids = itertools.count(1)
        self.started: ev.Started | None = None
        self._started_at = 0.0
        # The run's one history: the producer's checkpoints, snapshots and replays all read it.
        self.history = History()
        self.quality = History()
        self.sets: list[dict[str, Any]] = []
        self.preview: ev.Preview | None = None
        self.finished: ev.Finished | None = None
        self.loading: ev.Loading | None = None  # a folder being decoded, before Started
        self.state = "starting"
        self.step = self.epoch = 0
        self.images_per_s = 0.0
        self._asked: dict[str, str] = {}  # "pause"/"resume" -> who asked last, for the Paused event
        self._warned: set[str] = set()  # what failed in publish, said once each

    def attach(self, controls: Controls) -> None:
        self.controls = controls

    # -- the publisher's side (the trainer's thread) -----------------------------------
    def publish(self, event: ev.Event) -> None:
        with self._lock:
            try:
                event = self._record(event)
                if isinstance(event, ev.Started):
                    event = self.snapshot()  # with the run's past, which the hub holds
            except Exception as err:
                self._warn_once("the hub", f"could not record a {type(event).__name__} ({type(err).__name__}: {err})")
            for consumer in list(self._consumers.values()):
                try:
                    consumer.deliver(event)
                except Exception as err:
                    self._warn_once(consumer.name, f"a watcher ({consumer.name}) failed to take a "
                                    f"{type(event).__name__}: {type(err).__name__}: {err}")

    def _warn_once(self, who: str, text: str) -> None:
        if who not in self._warned:
            self._warned.add(who)
            say(f"gantui: warning: {text}; the run goes on")

    def _record(self, event: ev.Event) -> ev.Event:
        if isinstance(event, ev.Started):  # a past it brings joins the hub's (the trainer's resume fills the hub itself)
            self.history.extend(event.history)
            self.quality.extend(event.quality)
            self.sets.extend(event.sets)
            self.started, self._started_at = replace(event, history=[], quality=[], sets=[]), self.clock()
            self.step, self.epoch, self.state = event.step, event.epoch, event.state
            self.images_per_s = event.images_per_s
        elif isinstance(event, ev.Metrics):
            self.history.append(event.row)
            self.step, self.epoch = event.row["step"], event.row.get("epoch", 1) - 1
            self.images_per_s = event.row.get("images_per_s") or 0.0
        elif isinstance(event, ev.Quality):
            self.quality.append(event.row)
        elif isinstance(event, ev.Preview):
            self.preview = event
        elif isinstance(event, ev.Settings):
            self.sets.append({"step": event.step, "values": event.values})
            self.started = settled(self.started, event.values)
        elif isinstance(event, ev.Schema):
            if self.started is not None:
                self.started = replace(self.started, schema=event.panes,
                                       image_shape=event.image_shape or self.started.image_shape)
        elif isinstance(event, ev.Paused):
            self.state, self.step = ("paused" if event.paused else "training"), event.step
            event = replace(event, by=self._asked.pop("pause" if event.paused else "resume", None))
        elif isinstance(event, ev.Finished):
            self.finished, self.state, self.step = event, event.reason, event.step
        elif isinstance(event, ev.Loading):
            self.loading = event
        return event

    def snapshot(self) -> ev.Started | None:
        """The run as it stands, as a Started event; None before the trainer has started."""
        with self._lock:
            if self.started is None:
                return None
            return replace(self.started, step=self.step, epoch=self.epoch, images_per_s=self.images_per_s,
                           elapsed=self.clock() - self._started_at,
                           history=list(self.history), quality=list(self.quality), sets=list(self.sets), state=self.state,
                           preview=self.preview, finished=self.finished)

    # -- preview demand (the trainer asks between steps) -------------------------------
    def previews_due(self) -> int:
        """How many previews to generate now: the most any consumer shows, when the pacer allows.
        Read without the lock (an int attribute): a fast loop asks at every step."""
        wanted = self.wanted
        return wanted if wanted and self.pacer.due() else 0

    def _count_wanted(self) -> None:
        """With the lock held, after the consumers or what they show changed."""
        self.wanted = max((c.previews for c in self._consumers.values()), default=0)

    def preview_cost(self, seconds: float) -> None:
        """The trainer's time for one preview; the pacer sets the next one by it."""
        self.pacer.spent(seconds)
        self.pacer.adapt()

    # -- the consumers' side (any thread) ----------------------------------------------
    def new_name(self) -> str:
        return f"c{next(self._ids)}"

    def subscribe(self, deliver: Deliver, previews: int = 0, name: str | None = None) -> str:
        """Add a consumer; it gets the snapshot first when the run has started, then every event."""
        with self._lock:
            name = name or self.new_name()
            self._consumers[name] = Consumer(deliver, name, previews)
            self._count_wanted()
            snapshot = self.snapshot()
            if snapshot is not None:
                deliver(snapshot)
            elif self.loading is not None:  # still decoding a folder: how far it is
                deliver(self.loading)
            return name

    def unsubscribe(self, name: str) -> None:
        with self._lock:
            self._consumers.pop(name, None)
            self._count_wanted()

    def command(self, name: str, cmd: dict[str, Any]) -> None:
        """A checked command (run.protocol.parse_command) from consumer `name`."""
        action = cmd["cmd"]
        if action == "preview":
            with self._lock:
                if name in self._consumers:
                    self._consumers[name].previews = cmd["count"]
                    self._count_wanted()
            return
        if self.controls is None or self.finished is not None:
            raise RuntimeError("the run is not training")
        if action in ("pause", "resume"):
            self._asked[action] = name
        if action == "set":
            if self.check_set is None:
                raise RuntimeError("this run has no live settings")
            try:
                values = self.check_set(cmd["values"])
            except ValueError as err:  # ConfigError among them: the same message as the flag's
                raise RuntimeError(str(err)) from None
            self.controls.set(values)
            return
        getattr(self.controls, action)()
