"""A training process: the trainer in a thread of its own, publishing through its run (the hub,
the socket), and a front end.

Every training process serves its run (`gantui watch` attaches to it); the front end is the
headless printer or the dashboard. When the dashboard's terminal hangs up, the dashboard goes
and the process carries on as a headless run logging to RUN_DIR/gantui.log.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, TextIO

from gantui.run import events as ev
from gantui.common import EXIT_CODES, PARENT_ENV, STOP_SIGNALS, say
from gantui.config import Config
from gantui.engine.distributed import World
from gantui.engine.trainer import Trainer
from gantui.headless import HeadlessPrinter
from gantui.run.publisher import Publisher


class Session:
    def __init__(self, config: Config, resume_state: dict[str, Any] | None = None, *, serve: bool = True,
                 world: World = World()) -> None:
        """`world`: a torchrun job's rank; only rank 0 writes and serves the run."""
        self.run = Publisher.for_trainer(config.out, serve=serve, write=world.main)
        self.hub = self.run.hub
        self.trainer = Trainer(config, run=self.run, resume_state=resume_state, previews=self.hub, world=world)
        self.run_dir = self.run.dir
        self.finished: ev.Finished | None = None
        self.thread = threading.Thread(target=self._train, name="gantui-trainer", daemon=True)

    def _train(self) -> None:
        self.finished = self.trainer.run()

    def start(self) -> None:
        self.run.start()  # served from the start: a folder's decode can be watched
        self.thread.start()

    def wait(self) -> ev.Finished:
        """Until the trainer has finished; in the main thread, signal handlers run meanwhile."""
        while self.thread.is_alive():
            self.thread.join(0.2)
        self.run.close()
        assert self.finished is not None
        return self.finished

    def run_headless(self, printer: HeadlessPrinter, *, detached: bool = False) -> int:
        """Print events until the run ends; a stop signal finishes the step, saves, exits 128+signal.
        `detached`: the trainer runs already (a dashboard has gone)."""
        received: list[int] = []

        def on_signal(signum: int, frame: Any) -> None:
            if received:  # a second signal: leave now
                os._exit(128 + signum)
            received.append(signum)
            say(f"gantui: {signal.Signals(signum).name}, saving and stopping")
            self.trainer.controls.stop()

        previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS if s not in self._ignored()}
        name = self.hub.subscribe(printer)
        parent = os.environ.get(PARENT_ENV)
        try:
            if not detached:
                self.start()
            while self.thread.is_alive():  # the main thread writes the lines: see headless.py
                printer.write_pending(0.2)
                if parent and os.getppid() != int(parent):  # the sweep that started it has gone
                    parent = None
                    say("gantui: the process that started this run has gone: saving and stopping")
                    self.trainer.controls.stop()
            finished = self.wait()
            printer.write_pending()
        finally:
            self.hub.unsubscribe(name)
            for s, handler in previous.items():
                signal.signal(s, handler)
        if finished.reason in EXIT_CODES:
            return EXIT_CODES[finished.reason]
        return 128 + received[0] if received else 0

    def _ignored(self) -> tuple[int, ...]:
        return tuple(s for s in STOP_SIGNALS if signal.getsignal(s) == signal.SIG_IGN)

    def run_dashboard(self, on_hangup: str = "detach", images: str = "auto") -> int:
        import asyncio

        from gantui.run.client import LocalLink
        from gantui.ui.app import GanApp
        from gantui.ui.pictures.terminal import detect

        app = GanApp(LocalLink(self.hub), on_hangup=on_hangup, pictures=detect(images))
        self.start()
        # Our own loop: asyncio.run() would wait for the trainer thread before returning.
        loop = asyncio.new_event_loop()
        code = app.run(loop=loop)
        code = code if code is not None else app.leaving.exit_code()
        if app.leaving.abandon_trainer:  # the terminal is restored; the trainer may be stuck mid-save
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        loop.close()
        if app.leaving.detached:
            return self.carry_on_detached()
        self.wait()
        return code

    def carry_on_detached(self) -> int:
        """After a hang-up: log lines to RUN_DIR/gantui.log, serve the run, train on until the end."""
        log = os.open(self.run_dir.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for fd in (1, 2):
            os.dup2(log, fd)
        os.close(log)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        print("gantui: the terminal hung up; training goes on, detached (gantui watch attaches)", flush=True)
        return self.run_headless(HeadlessPrinter(sys.stdout, self.trainer.config.batch_size), detached=True)


def run_headless(config: Config, resume_state: dict[str, Any] | None = None, out: TextIO | None = None) -> int:
    session = Session(config, resume_state)
    return session.run_headless(HeadlessPrinter(out or sys.stdout, config.batch_size))


def run_dashboard(config: Config, resume_state: dict[str, Any] | None = None, on_hangup: str = "detach",
                  images: str = "auto") -> int:
    return Session(config, resume_state).run_dashboard(on_hangup, images)
