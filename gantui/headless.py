"""`gantui --no-ui`: a consumer of the run's events that prints plain lines."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from gantui import events as ev
from gantui.common import format_duration, format_metrics, format_quality
from gantui.config import Config


class HeadlessPrinter:
    """Turns trainer events into lines on `out`."""

    def __init__(self, out: TextIO, batch_size: int) -> None:
        self.out = out
        self.batch_size = batch_size
        self.total_steps = 0
        self.run_dir: str | None = None
        self.schema: list[dict] | None = None
        self.started = time.monotonic()

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Started):
            self.total_steps = event.total_steps
            self.run_dir = event.run_dir
            self.schema = event.schema or None
            self.started = time.monotonic()
            resumed = f", from step {event.step}" if event.step else ""
            self.print(f"gantui: training on {event.device}, {event.total_steps} steps{resumed}; run directory {event.run_dir}")
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
        elif isinstance(event, ev.Finished):
            took = format_duration(time.monotonic() - self.started)
            if event.error:
                log = Path(self.run_dir) / "error.log" if self.run_dir else None
                where = f"; traceback in {log}" if log and log.exists() else ""
                self.print(f"gantui: {event.reason} at step {event.step}: {event.error}; last checkpoint "
                           f"{event.checkpoint}{where}", err=True)
            else:
                self.print(f"gantui: {event.reason} at step {event.step} after {took}; checkpoint {event.checkpoint}")

    def print(self, line: str, err: bool = False) -> None:
        print(line, file=sys.stderr if err else self.out, flush=True)


def run_headless(config: Config, resume_state: dict[str, Any] | None = None, out: TextIO | None = None) -> int:
    """Train (in a thread) and print; see session.Session.run_headless."""
    from gantui.session import run_headless as run

    return run(config, resume_state, out)
