"""One trial of a sweep: an ordinary headless gantui run in its own directory and process (its
own socket, `gantui watch`, checkpoints, exact resume), watched from its metrics.jsonl. Each new
value of the objective is reported to Optuna; a trial the pruner gives up on is sent SIGTERM,
which saves it and stops it between steps (never killed mid-write). A trial whose sweep has gone
(killed outright) saves and stops by itself (common.PARENT_ENV)."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gantui.common import PARENT_ENV
from gantui.run.compare import quality_rows
from gantui.run.rundir import RunDir, Tail
from gantui.sweep.space import Objective, Param

POLL = 1.0  # seconds between looks at a trial's new rows
STOP_WAIT = 300.0  # seconds a trial has to save and exit once asked
def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def same_host(worker: str | None) -> bool:
    """Whether a trial's sweep process ran on this host (`--resume` takes back only this host's)."""
    return bool(worker) and worker.rsplit(":", 1)[0] == socket.gethostname()


def settings(params: dict[str, Any]) -> list[str]:
    """A trial's parameters as NAME=VALUE, numbers to 3 figures (its line, its directory's name)."""
    return [f"{k}={format(v, '.3g') if isinstance(v, float) else v}" for k, v in params.items()]


def trial_name(number: int, params: dict[str, Any]) -> str:
    words = "-".join(settings(params))
    return f"{number:03d}-{re.sub(r'[^A-Za-z0-9=.,_+-]', '_', words)}"[:100]


@dataclass
class Outcome:
    state: str  # "complete", "pruned", "failed" or "interrupted" (the sweep stopped: resumable)
    value: float | None = None
    step: int = 0
    message: str = ""


class TrialRun:
    """A trial's process, from its start (or resume) to its outcome."""

    def __init__(self, trial: Any, run: RunDir, objective: Objective, argv: list[str], env: dict[str, str]) -> None:
        self.trial, self.run, self.objective = trial, run, objective
        self.argv, self.env = argv, env
        self.process: subprocess.Popen | None = None
        self.pruned_at: int | None = None
        self.interrupted = threading.Event()  # the sweep is stopping: the trial is saved, to resume
        self._tail = Tail(run.metrics)
        self._reported: set[int] = set()  # steps whose value Optuna has (a resumed run's rows repeat some)

    @classmethod
    def fresh(cls, trial, run: RunDir, objective: Objective, flags: list[str], params: list[Param],
              env: dict[str, str]) -> TrialRun:
        own = [f for p in params for f in p.flags(trial.params[p.name])]
        return cls(trial, run, objective, ["--out", str(run.path), *flags, *own], env)

    @classmethod
    def resumed(cls, trial, run: RunDir, objective: Objective, env: dict[str, str]) -> TrialRun:
        return cls(trial, run, objective, ["--resume", str(run.path)], env)

    def start(self) -> None:
        self.run.path.mkdir(parents=True, exist_ok=True)
        with open(self.run.path / "output.log", "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "gantui", "--no-ui", *self.argv], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**self.env, PARENT_ENV: str(os.getpid())})  # saved once the sweep has gone

    def stop(self) -> None:
        """Save and stop it (SIGTERM: gantui saves first); the sweep is stopping."""
        self.interrupted.set()
        self._signal()

    def end(self) -> None:
        """Its process ended: asked to save and stop, and waited for, if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self._signal()
            try:
                self.process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _signal(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def watch(self) -> Outcome:
        """Until the process ends: each new objective value reported, the pruner asked."""
        assert self.process is not None
        while True:
            try:
                code = self.process.wait(POLL)
            except subprocess.TimeoutExpired:
                code = None
            for step, value in self._new_values():
                asking = code is None and self.pruned_at is None and not self.interrupted.is_set()
                if self._report(step, value, asking):  # a trial that has ended is not pruned
                    self.pruned_at = step
                    self._signal()
            if code is not None:
                return self.outcome(code)

    def _report(self, step: int, value: float, asking: bool) -> bool:
        """Report a value; whether the pruner, when `asking`, wants the trial stopped."""
        if step in self._reported or not math.isfinite(value):
            return False
        self._reported.add(step)
        self.trial.report(value, step)
        return asking and self.trial.should_prune()

    def _new_values(self) -> list[tuple[int, float]]:
        found = []
        for line in self._tail.lines():
            if self.objective.key.encode() not in line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if self._counts(row) and isinstance(row.get("step"), int):
                found.append((row["step"], float(row[self.objective.key])))
        return found

    def _counts(self, row: dict[str, Any]) -> bool:
        value = row.get(self.objective.key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (row.get("event") == "quality") if self.objective.quality else "event" not in row

    def values(self) -> list[float]:
        rows = quality_rows(self.run) if self.objective.quality else self.run.read_metrics()
        return [float(r[self.objective.key]) for r in rows if self._counts(r)]

    def outcome(self, code: int) -> Outcome:
        """How the trial ended, its process having exited with `code`."""
        step = self.run.read_status().get("step") or 0
        if self.pruned_at is not None:
            return Outcome("pruned", step=step, message=f"at step {self.pruned_at}")
        if self.interrupted.is_set():
            return Outcome("interrupted", step=step)
        if code != 0:
            return Outcome("failed", step=step, message=error_line(self.run.path / "output.log", code))
        value = self.objective.value(self.values())
        if value is None:
            return Outcome("failed", step=step, message=f"the run logged no {self.objective.key}")
        return Outcome("complete", value, step)


def error_line(log: Path, code: int) -> str:
    """What the trial's process said last: its one-line error, or the last line of a traceback."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    said = next((line for line in reversed(lines) if line.startswith("gantui: error:")), lines[-1] if lines else "")
    return f"{said.removeprefix('gantui: error: ')} (exit {code})" if said else f"exit {code}"
