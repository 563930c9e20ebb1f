"""`gantui --no-ui`: the same Trainer, one plain line per logging interval."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from gantui.config import Config
from gantui.engine import events as ev
from gantui.engine.trainer import Trainer

EXIT_CODES = {"error": 1, "diverged": 3}
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def eta_seconds(step: int, total_steps: int, batch_size: int, images_per_s: float) -> float | None:
    return max(total_steps - step, 0) * batch_size / images_per_s if images_per_s > 0 else None


def format_metrics(row: dict[str, Any], total_steps: int, batch_size: int) -> str:
    def num(key: str, fmt: str = ".3f") -> str:
        value = row.get(key)
        return "nan" if value is None else format(value, fmt)

    rate = row.get("images_per_s") or 0.0
    eta = eta_seconds(row["step"], total_steps, batch_size, rate)
    return (f"step {row['step']}/{total_steps} epoch {row['epoch']} | loss_d {num('loss_d')} loss_g {num('loss_g')}"
            f" | D(x) {num('d_real')} D(G(z)) {num('d_fake')} | acc real {num('acc_real', '.2f')}"
            f" fake {num('acc_fake', '.2f')} | {rate:,.0f} img/s | ETA {'?' if eta is None else format_duration(eta)}")


def format_quality(row: dict[str, Any]) -> str:
    return (f"quality at step {row['step']} | FID {row['fid']:.2f} (N={row['fid_n']}) | {row['classes']}/10 classes"
            f" KL {row['kl']:.3f} | confidence {row['confidence']:.3f} score {row['score']:.2f}"
            f" | took {row['eval_s']:.1f} s")


class HeadlessPrinter:
    """Turns trainer events into lines on `out`."""

    def __init__(self, out: TextIO, batch_size: int) -> None:
        self.out = out
        self.batch_size = batch_size
        self.total_steps = 0
        self.run_dir: str | None = None
        self.started = time.monotonic()

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Started):
            self.total_steps = event.total_steps
            self.run_dir = event.run_dir
            self.started = time.monotonic()
            resumed = f", resumed at step {event.step}" if event.step else ""
            self.print(f"gantui: training on {event.device}, {event.total_steps} steps{resumed}; run directory {event.run_dir}")
        elif isinstance(event, ev.Metrics):
            self.print(format_metrics(event.row, self.total_steps, self.batch_size))
        elif isinstance(event, ev.Quality):
            self.print(format_quality(event.row))
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
    """Train in this thread; a stop signal finishes the step, saves, and exits with 128+signal."""
    trainer = Trainer(config, HeadlessPrinter(out or sys.stdout, config.batch_size), resume_state=resume_state)
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if received:  # a second signal: leave now
            os._exit(128 + signum)
        received.append(signum)
        print(f"gantui: {signal.Signals(signum).name}, saving and stopping", file=sys.stderr, flush=True)
        trainer.stop()

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        finished = trainer.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if finished.reason in EXIT_CODES:
        return EXIT_CODES[finished.reason]
    return 128 + received[0] if received else 0
