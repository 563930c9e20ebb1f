"""A producer's controls: safe from any thread, they touch nothing but a `threading.Event` and a
`queue.Queue`; the producer (the trainer, a user's loop) drains them at each step boundary
(`pending`)."""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Controls:
    def __init__(self) -> None:
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        # True once anything was asked: a fast loop's step boundary reads this one attribute (an
        # Event and a Queue cost it 6 us after a step has left the caches cold); cleared by `pending`
        self.asked = False

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Until resumed (or stopped), `seconds` at most; True: no longer paused."""
        return self._running.wait(seconds)

    def pause(self) -> None:
        self._running.clear()
        self.asked = True

    def resume(self) -> None:
        self._running.set()

    def toggle_pause(self) -> None:
        self.resume() if self.paused else self.pause()

    def save(self) -> None:
        self._ask("save", None)

    def resample(self) -> None:
        self._ask("resample", None)

    def set(self, values: dict[str, Any]) -> None:
        """Live settings, checked by config.check_live_values; applied at the next step boundary."""
        self._ask("set", dict(values))

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused loop so it can finish
        self.asked = True

    def hold(self, announce: Callable[[bool], None], commands: Callable[[], None],
             stopped: Callable[[], bool] | None = None) -> None:
        """A watcher's pause, for every producer (the trainer, a user's loop), on its own thread:
        announced, waited out with the commands still done (a save, a setting: at once, as in a
        run that is not paused), announced again unless it was a stop that woke it (`stopped`:
        the producer's own word for it, else this one's)."""
        announce(True)
        while not self._running.wait(0.05):  # a timeout, so that commands are done while paused
            commands()
        commands()
        if not (stopped or self._stop.is_set)():
            announce(False)

    def _ask(self, kind: str, value: Any) -> None:
        self._commands.put((kind, value))
        self.asked = True

    def pending(self) -> dict[str, Any]:
        """The commands queued since the last call, each kind once (a flood of saves is one save;
        settings merge, the newest value of each winning)."""
        self.asked = False  # before the state is read: nothing asked from now on is missed
        pending: dict[str, Any] = {}
        while True:
            try:
                kind, value = self._commands.get_nowait()
            except queue.Empty:
                return pending
            pending[kind] = {**pending.get(kind, {}), **value} if kind == "set" else value
