"""A trainer's controls: safe from any thread, they touch nothing but a `threading.Event` and a
`queue.Queue`; the loop drains them at each step boundary (`_pending`)."""
from __future__ import annotations

import queue
import threading
from typing import Any


class Controls:
    def __init__(self) -> None:
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def toggle_pause(self) -> None:
        self.resume() if self.paused else self.pause()

    def save(self) -> None:
        self._commands.put(("save", None))

    def resample(self) -> None:
        self._commands.put(("resample", None))

    def set(self, values: dict[str, Any]) -> None:
        """Live settings, checked by config.check_live_values; applied at the next step boundary."""
        self._commands.put(("set", dict(values)))

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused loop so it can finish

    def _pending(self) -> dict[str, Any]:
        """The commands queued since the last call, each kind once (a flood of saves is one save;
        settings merge, the newest value of each winning)."""
        pending: dict[str, Any] = {}
        while True:
            try:
                kind, value = self._commands.get_nowait()
            except queue.Empty:
                return pending
            pending[kind] = {**pending.get(kind, {}), **value} if kind == "set" else value
