"""metrics.jsonl, kept open and written by a thread of its own.

The producer's thread only queues a row (microseconds). The writer encodes the rows, appends them
and flushes within FLUSH_INTERVAL of the first unflushed row (a row is on disk within about a
second, and a fast loop does not pay a system call per row); `sync` flushes now (a pause, a stop)
and `close` fsyncs (the end of a run). A write that fails (a full disk) is reported through
`report`, and the rows go on being tried: the producer never sees the error. Nothing ends the
thread but `close`: a row that cannot be encoded or a task that raises is reported, and the next
is written. A file whose last line was cut (a killed process, a full disk) gets a newline before
the first row appended to it, so that row is not swallowed by the cut one.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gantui.common import finite_row

FLUSH_INTERVAL = 1.0  # seconds between flushes at most
_STOP = object()


class RowWriter:
    def __init__(self, path: Path, report: Callable[[str], None], still_ours: Callable[[], bool]) -> None:
        self.path, self.report, self.still_ours = path, report, still_ours
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._file: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        self._dirty = False  # rows written since the last flush
        self.gone = False  # the run directory was removed or replaced: nothing more is written

    def put(self, row: dict[str, Any] | Callable[[], Any]) -> None:
        """From any thread; never blocks, never raises."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="gantui-writer", daemon=True)
                    self._thread.start()
        self._queue.put(row)

    def task(self, fn: Callable[[], Any]) -> None:
        """Work for the writer's thread (a PNG to encode and write); an OSError is reported."""
        self.put(fn)  # type: ignore[arg-type]

    def sync(self, fsync: bool = False, timeout: float = 10.0) -> None:
        """Until what was queued before this call is written and flushed (fsynced too, if asked)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put((done, fsync))
        done.wait(timeout)

    def flush_soon(self) -> None:
        """What was queued before this call written and flushed now, without waiting for it."""
        if self._thread is not None:
            self._queue.put((threading.Event(), False))

    def close(self) -> None:
        """Flush, fsync, stop the thread (the end of a run)."""
        if self._thread is None:
            return
        self.sync(fsync=True)
        self._queue.put(_STOP)
        self._thread.join(5.0)
        self._thread = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def _run(self) -> None:
        while True:
            wait = FLUSH_INTERVAL - (time.monotonic() - self._flushed) if self._dirty else FLUSH_INTERVAL
            try:
                items = [self._queue.get(timeout=max(wait, 0.0))]
            except queue.Empty:
                items = []
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            barriers = [i for i in items if isinstance(i, tuple)]
            try:
                self._handle(items, barriers)
            except BaseException as err:  # never the end of the thread: the next rows are tried
                self._say(f"the writer failed ({type(err).__name__}: {err}); it goes on")
            finally:
                for done, _ in barriers:
                    done.set()
            if any(i is _STOP for i in items):
                return

    def _handle(self, items: list[Any], barriers: list[tuple[threading.Event, bool]]) -> None:
        rows = [i for i in items if isinstance(i, dict)]
        if rows:
            self._write(rows)
        for task in (i for i in items if callable(i)):
            try:
                task()
            except OSError as err:
                self._say(f"{getattr(err, 'filename', None) or 'a file'} not written: {err.strerror or err}")
            except BaseException as err:
                self._say(f"a background task failed: {type(err).__name__}: {err}")
        if barriers or (self._dirty and time.monotonic() - self._flushed >= FLUSH_INTERVAL):
            self._flush(fsync=any(fsync for _, fsync in barriers))

    def _say(self, text: str) -> None:
        """`report`, which must not end the thread either."""
        try:
            self.report(text)
        except Exception:
            pass

    def _encode(self, rows: list[dict[str, Any]]) -> str:
        lines = []
        for row in rows:
            try:
                lines.append(json.dumps(finite_row(row), allow_nan=False) + "\n")
            except (TypeError, ValueError) as err:
                self._say(f"a row not written to metrics.jsonl: {err}")
        return "".join(lines)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if self.gone:
            return
        text = self._encode(rows)
        try:
            if self._file is None:
                if not self.still_ours():
                    raise FileNotFoundError("the run directory was removed or replaced")
                self._file = open(self.path, "a", encoding="utf-8")
                if not ends_a_line(self.path):
                    self._file.write("\n")
            self._file.write(text)
            self._dirty = True
        except OSError as err:
            if isinstance(err, FileNotFoundError) or not self.still_ours():
                self._lost()
                return
            self._say(f"metrics.jsonl not written: {err.strerror or err}")
            self._reopen()

    def _flush(self, fsync: bool) -> None:
        self._flushed, self._dirty = time.monotonic(), False
        if self._file is None:
            return
        if not self.still_ours():  # a stat a second: a newer run's files are not ours to write
            self._lost()
            return
        try:
            self._file.flush()
            if fsync:
                os.fsync(self._file.fileno())
        except OSError as err:
            self._say(f"metrics.jsonl not written: {err.strerror or err}")
            self._reopen()

    def _lost(self) -> None:
        """The run directory was removed or replaced: nothing more is written, said once."""
        self.gone = True
        self._say("the run directory was removed or replaced: metrics.jsonl is no longer written")
        self._reopen()

    def _reopen(self) -> None:
        """After a failed write: drop what the buffer holds (a partial line is skipped by readers)."""
        try:
            self._file.close()
        except (OSError, AttributeError):
            pass
        self._file = None


def ends_a_line(path: Path) -> bool:
    """Whether the file is empty or ends with a newline (False: its last line was cut)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:
        return True


class NoWriter:
    """What a rank other than 0 writes: nothing (rank 0 owns the run's files)."""

    gone = False

    def put(self, row: Any) -> None: ...
    def task(self, fn: Callable[[], Any]) -> None: ...
    def sync(self, fsync: bool = False, timeout: float = 10.0) -> None: ...
    def flush_soon(self) -> None: ...
    def close(self) -> None: ...
