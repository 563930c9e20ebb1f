"""`gantui --no-ui`: a consumer of the run's events that prints plain lines.

The hub calls the printer from the trainer's thread, so it only queues lines; the main thread,
idle while the trainer trains, writes them (`write_pending`). A reader that stops reading (a
paused pager, a stalled SSH session, a pipe nobody empties) then blocks only that write, never
the trainer or the run's watchers. Output that goes away (`| head`, a closed pipe) does not end
the run either: the lines go on in RUN_DIR/gantui.log, as after a dashboard's hang-up.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from gantui.run import events as ev
from gantui.common import Pane, format_duration, format_metrics, format_quality


MAX_QUEUED = 10_000  # lines held while the output is not read; past that the oldest are dropped


class HeadlessPrinter:
    """Turns trainer events into lines on `out`."""

    def __init__(self, out: TextIO, batch_size: int) -> None:
        self.out, self.err = out, sys.stderr
        self._lines: deque[tuple[str, bool]] = deque(maxlen=MAX_QUEUED)
        self._dropped = 0
        self._ready = threading.Condition()
        self.batch_size = batch_size
        self.total_steps = 0
        self.run_dir: str | None = None
        self.schema: list[Pane] | None = None
        self.started = time.monotonic()
        self.decoded_tenth = -1  # a folder's first decode: the last tenth reported

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Started):
            self.total_steps = event.total_steps
            self.run_dir = event.run_dir
            self.schema = event.schema or None
            self.started = time.monotonic()
            resumed = f", from step {event.step}" if event.step else ""
            n, batch = event.config.get("processes") or 1, event.config.get("batch_size")
            ranks = f" x {n} processes (a step: {n} x {batch} images)" if n > 1 else ""
            self.print(f"gantui: training on {event.device}{ranks}, {event.total_steps} steps{resumed}; "
                       f"run directory {event.run_dir}")
        elif isinstance(event, ev.Metrics):
            self.print(format_metrics(event.row, self.total_steps, self.batch_size, self.schema))
        elif isinstance(event, ev.Quality):
            self.print(format_quality(event.row))
        elif isinstance(event, ev.Paused):
            by = " from a watcher" if event.by else ""
            self.print(f"{'paused' if event.paused else 'resumed'}{by} at step {event.step}")
        elif isinstance(event, ev.Settings):
            self.print(f"set at step {event.step}: " + ", ".join(f"{k} {v:g}" for k, v in event.values.items()))
        elif isinstance(event, ev.Saved) and event.reason in ("manual", "periodic"):
            self.print(f"saved {event.checkpoint}")
        elif isinstance(event, ev.Notice):
            self.print(f"{event.level}: {event.text}")
        elif isinstance(event, ev.Loading) and (tenth := event.done * 10 // event.total) != self.decoded_tenth:
            self.decoded_tenth = tenth  # a line at each tenth
            self.print(f"decoding {event.done:,}/{event.total:,} images")
        elif isinstance(event, ev.Finished):
            took = format_duration(time.monotonic() - self.started)
            if event.error:
                log = Path(self.run_dir) / "error.log" if self.run_dir else None
                where = f"; traceback in {log}" if log and log.exists() else ""
                self.print(f"gantui: {event.reason} at step {event.step}: {event.error}; last checkpoint "
                           f"{event.checkpoint}{where}", err=True)
            else:
                saved = f"checkpoint {event.checkpoint}" if event.checkpoint else "nothing trained, nothing saved"
                self.print(f"gantui: {event.reason} at step {event.step} after {took}; {saved}")

    def print(self, line: str, err: bool = False) -> None:
        """Queue a line (any thread; never blocks)."""
        with self._ready:
            self._dropped += len(self._lines) == MAX_QUEUED
            self._lines.append((line, err))
            self._ready.notify()

    def write_pending(self, timeout: float = 0.0) -> None:
        """Write the queued lines, waiting up to `timeout` for one (the main thread)."""
        with self._ready:
            self._ready.wait_for(lambda: self._lines, timeout)
            lines, dropped = list(self._lines), self._dropped
            self._lines.clear()
            self._dropped = 0
        if dropped:
            lines.insert(0, (f"gantui: {dropped} lines not printed: the output was not being read "
                             "(metrics.jsonl has every row)", True))
        for line, err in lines:
            self._write(line, err)

    def _write(self, line: str, err: bool) -> None:
        try:
            print(line, file=self.err if err else self.out, flush=True)
        except OSError as error:  # the reader went away (EPIPE) or the terminal did (EIO)
            self._output_gone(err, error)
            with contextlib.suppress(OSError):
                print(line, file=self.err if err else self.out, flush=True)

    def _output_gone(self, err: bool, error: OSError) -> None:
        """Send what follows for that stream to RUN_DIR/gantui.log; the run goes on."""
        stream = self.err if err else self.out
        with contextlib.suppress(OSError, ValueError):  # ValueError: no descriptor (a StringIO)
            devnull = os.open(os.devnull, os.O_WRONLY)  # what it still buffers must not fail again at exit
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        try:
            replacement = open(Path(self.run_dir) / "gantui.log" if self.run_dir else os.devnull, "a", buffering=1)
        except OSError:
            replacement = open(os.devnull, "w")
        with contextlib.suppress(OSError):
            print(f"gantui: the output went away ({error.strerror or error}); training goes on, logging here",
                  file=replacement, flush=True)
        if err:
            self.err = replacement
        else:
            self.out = replacement
