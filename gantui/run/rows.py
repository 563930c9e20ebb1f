"""A loop's metrics rows: combined from `log()` calls on any thread, and put out in order.

The loop's own `log()` puts a row out when one is due (every COMBINE_INTERVAL at most), reading
its tensor sums on the loop's thread as before (the one sync of an interval). What the loop
logged last would otherwise wait for its next `log()`: a burst of steps followed by an
evaluation, a long save or a sleep before `finish()` left its newest row unseen. So a thread of
the run's (`gantui-rows`) puts the pending row out once the loop has been quiet for QUIET
seconds, and has the writer flush it: within a second of the last call the row is in
metrics.jsonl and with every watcher, whatever the loop does next.

That thread reads GPU sums itself: `.tolist()` there is a sync of that thread (the GIL released
while it waits), never of the loop's, and it reads each CUDA sum on the stream it was summed on
(combine.means), so it sees every addition the loop queued. The loop's thread only ever swaps
the sums out under the lock (no sync). Rows go out one at a time, oldest first: a `log()` that
finds the background thread putting a row out leaves its own for its next call, without waiting.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gantui.common import Line, Pane
from gantui.run.combine import Combiner, read

QUIET = 0.25  # seconds without a log() call after which the pending row is put out for the loop
TICK = 0.1  # how often the background thread looks


class Rows:
    def __init__(self, put: Callable[[dict[str, Any], list[str] | None], Any], flush_file: Callable[[], Any],
                 warn: Callable[[str], Any]) -> None:
        """`put(row, keys)`: publish a row (`keys`: every key so far, when a new one came);
        `flush_file()`: have metrics.jsonl flushed soon; `warn(text)`: a background failure."""
        self.combiner = Combiner()
        self.lock = threading.Lock()  # the combiner and the loop's step count: log() from any thread
        self._out = threading.Lock()  # one row out at a time, in order
        self._put, self._flush_file, self._warn = put, flush_file, warn
        self._announced = 0  # keys announced so far (a new key is a new curve)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="gantui-rows", daemon=True)
        self._thread.start()

    def out(self, wait: bool = True) -> bool:
        """The pending row out on this thread (its tensor sums read here); False when there was none,
        or, with `wait=False`, when another thread is putting a row out (the next call does it)."""
        if not self._out.acquire(blocking=wait):
            return False
        try:
            with self.lock:
                taken = self.combiner.take()
                keys = self.combiner.keys
                new_keys = keys[:] if len(keys) != self._announced else None
            if taken is None:
                return False
            row = read(taken)
            if new_keys is not None:
                self._announced = len(new_keys)
            self._put(row, new_keys)
            return True
        finally:
            self._out.release()

    def close(self) -> None:
        """The background thread stopped (the end of the run); the caller puts the last row out."""
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10.0)
        self._thread = None

    def _watch(self) -> None:
        combiner = self.combiner
        while not self._closed.wait(TICK):
            try:
                if combiner.calls and combiner.clock() - combiner.last_call >= QUIET and self.out():
                    self._flush_file()
            except BaseException as err:  # never the end of the thread: one warning, the run goes on
                if not self._warned:
                    self._warned = True
                    try:
                        self._warn(f"a quiet loop's last row could not be put out ({type(err).__name__}: {err})")
                    except Exception:
                        pass


def schema_for(keys: list[str]) -> list[Pane]:
    """Keys grouped into panes by their prefix, as TensorBoard groups tags: `loss/G` and `loss/D`
    in a pane `loss`; without a slash, by the part before the first underscore (`Loss_D`,
    `Loss_G`); a key with neither in a pane `metrics`."""
    panes: dict[str, list[Line]] = {}
    for key in keys:
        if "/" in key:
            group, label = key.rsplit("/", 1)
        else:
            group, label = (key.split("_", 1)[0], key) if "_" in key else ("metrics", key)
        panes.setdefault(group, []).append(Line(key, label, ".4g"))
    return [Pane(title, tuple(lines)) for title, lines in panes.items()]
