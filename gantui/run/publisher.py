"""The publisher: what makes a run a run, for every producer (the built-in trainer, a user's loop).

A `Publisher` holds the run directory and its lock, writes config.json, status.json and
metrics.jsonl (through its writer thread), owns the hub (snapshot, fan-out, the preview pacer) and
the socket server, and the controls a watcher steers it with. A producer publishes events through
it and reads the controls at its step boundaries; every consumer (the dashboard, the headless
printer, `gantui watch`, replays) reads from it. It is internal: one constructor for each role
(`for_trainer`, `for_loop`, `for_rank`); the user's object, `gantui.Run`, is `loop.py`'s and holds
one. Torch-free.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gantui.common import say
from gantui.run import events as ev
from gantui.run.controls import Controls
from gantui.run.hub import CheckSet, RunHub
from gantui.run.rundir import RunDir
from gantui.run.server import RunServer
from gantui.run.writer import NoWriter, RowWriter

REPEAT_WINDOW = 10.0  # seconds in which a repeated notice is counted, not sent again


class Publisher:
    def __init__(self, out: str | Path, *, serve: bool = True, lock: bool = True, check_set: CheckSet | None = None,
                 echo: bool = False, write: bool = True) -> None:
        """`lock`: take the run directory's lock (the CLI takes it earlier for the built-in trainer);
        `echo`: warnings also go to stderr (a user's loop has no headless printer); `write`: False
        for a rank other than 0 of a torchrun job, which keeps the run's past but writes nothing.
        Made by one of the constructors below, one for each role."""
        self.dir = RunDir(out)
        self.writes = write
        self._lock_fd = self.dir.lock() if lock and write else None  # RunDirBusy: another process has it
        self.controls = Controls()  # a producer with its own (the trainer) attaches them
        self.hub = RunHub(check_set=check_set)
        self.hub.attach(self.controls)
        self.writer = RowWriter(self.dir.metrics, self.warn, self.dir.still_ours) if write else NoWriter()
        self.server = RunServer(self.hub, self.dir) if serve and write else None
        self.echo = echo
        self.closed = self.started = False
        self._repeats: dict[str, list[float]] = {}  # notice text -> [first sent, repeats since]
        self._status_failed = False

    @classmethod
    def for_trainer(cls, out: str | Path, *, serve: bool = True, write: bool = True) -> Publisher:
        """The built-in trainer's: the CLI holds the directory's lock since its checks; `write`:
        rank 0 of a torchrun job (the others keep the run's past and write nothing)."""
        return cls(out, serve=serve, lock=False, write=write)

    @classmethod
    def for_loop(cls, out: str | Path, *, serve: bool = True, check_set: CheckSet | None = None) -> Publisher:
        """A user's loop's (rank 0's under torch.distributed): the directory locked here, its
        warnings also on stderr, `set` commands checked against what the loop declared."""
        return cls(out, serve=serve, check_set=check_set, echo=True)

    @classmethod
    def for_rank(cls, out: str | Path) -> Publisher:
        """A loop's rank other than 0 (or a rank 0 whose directory could not be opened): it writes
        and serves nothing, and takes part in the steering."""
        return cls(out, serve=False, lock=False, write=False)

    def attach(self, controls: Controls) -> None:
        """A producer with controls of its own (the built-in trainer reads them at its step boundaries)."""
        self.controls = controls
        self.hub.attach(controls)

    @property
    def path(self) -> Path:
        return self.dir.path

    def start(self) -> None:
        """The directory made, the socket served (a run that cannot be served trains all the same)."""
        if self.started:
            return
        self.started = True
        if not self.writes:
            return
        self.dir.create()
        if self.server is not None:
            try:
                self.server.start()
            except OSError as err:
                say(f"gantui: warning: the run is not served ({err}); `gantui watch` cannot attach")
                self.server = None

    # -- the producer's side ---------------------------------------------------------------
    def publish(self, event: ev.Event) -> None:
        """To every consumer; metrics, quality and settings also become rows of metrics.jsonl."""
        if isinstance(event, ev.Notice):
            event = self._collapse(event)
            if event is None:
                return
            if self.echo and event.level != "information":
                say(f"gantui: {event.level}: {event.text}")
        elif isinstance(event, ev.Metrics | ev.Quality):
            self.writer.put(event.row if "time" in event.row else {"time": time.time(), **event.row})
        elif isinstance(event, ev.Settings):
            self.row({"event": "set", "step": event.step, "values": event.values})
        self.hub.publish(event)

    def row(self, row: dict[str, Any]) -> None:
        """A line of metrics.jsonl that is not a curve's (a resume, a rollback, a divergence)."""
        self.writer.put({"time": time.time(), **row})

    def status(self, state: str, **fields: Any) -> None:
        """status.json; a pause or an end also writes out the rows so far (the file is then current)."""
        if not self.writes:
            return
        if state != "training":
            self.writer.sync()
        try:
            self.dir.write_status(state, **fields)
        except OSError as err:
            if fields.get("error") is None and not self._status_failed:  # once; a failed end says enough
                self.warn(f"status.json not written: {err.strerror or err}")
            self._status_failed = True
        else:
            self._status_failed = False

    def warn(self, text: str) -> None:
        """A failure in the background: a notice to every terminal watching (repeats counted)."""
        self.publish(ev.Notice(text, "error"))

    def _collapse(self, notice: ev.Notice) -> ev.Notice | None:
        """A notice already sent in the last REPEAT_WINDOW seconds is counted; the next one sent
        says how many were held back (a full disk fails every row: one notice, not 200 a second)."""
        now = time.monotonic()
        seen = self._repeats.get(notice.text)
        if seen is not None and now - seen[0] < REPEAT_WINDOW:
            seen[1] += 1
            return None
        if len(self._repeats) > 256:
            self._repeats.clear()
        self._repeats[notice.text] = [now, 0]
        if seen and seen[1]:
            return replace(notice, text=f"{notice.text} ({seen[1]:.0f} more like it before this)")
        return notice

    def end(self, finished: ev.Finished, total_steps: int = 0) -> None:
        """The end: status written, Finished to every consumer, rows fsynced. The server and the
        lock stay until `close` (a dashboard in this process still shows the end)."""
        self.status(finished.reason, step=finished.step, total_steps=total_steps, error=finished.error)
        self.hub.publish(finished)
        self.writer.close()

    def close(self) -> None:
        """Stop serving, release the directory (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        if self.server is not None:
            self.server.close()
        if self._lock_fd is not None:
            self.dir.unlock(self._lock_fd)
            self._lock_fd = None
