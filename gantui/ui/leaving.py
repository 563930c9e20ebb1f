"""How the dashboard goes: stop signals, a terminal that hangs up, exit codes (`app.leaving`)."""
from __future__ import annotations

import os
import signal
import termios
import threading
from typing import Any

from gantui.common import EXIT_CODES

# After a stop signal the run is saved before the app exits; if the exit then hangs (Textual's
# writer blocks on a terminal that is gone), the process leaves anyway, so that it does not
# linger holding the run directory's lock.
EXIT_GRACE_S = 3.0


def terminal_alive(fd: int = 0) -> bool:
    """A hung-up terminal answers EIO (and a detached dashboard's stdin is /dev/null)."""
    try:
        termios.tcgetattr(fd)
    except (termios.error, OSError):
        return False
    return True


class Leaving:
    """The app's way out; it reads the app's run state (owner, job, started, finished, lost)."""

    def __init__(self, app: Any, on_hangup: str) -> None:
        self.app, self.on_hangup = app, on_hangup
        self.signal_received: int | None = None
        self.detached = False  # the terminal hung up: the dashboard went, the run goes on
        self.abandon_trainer = False  # a second signal: exit without waiting for the trainer thread

    def on_stop_signal(self, signum: int) -> None:
        if self.detached:
            return  # going already; a hang-up comes twice (from the kernel, then from the shell)
        if not self.app.owner:  # a watcher's terminal went, or it was told to go: only the watcher goes
            self.signal_received = signum  # so that a hung terminal cannot keep it from leaving
            self.leave(0)
            return
        if signum == getattr(signal, "SIGHUP", None) and self.on_hangup == "detach":
            self.detach()
            return
        if self.signal_received is not None:  # a second signal: leave now, terminal restored
            self.abandon_trainer = True
            self.leave(128 + signum)
            return
        self.signal_received = signum
        self.app.action_quit_run()

    def detach(self) -> None:
        """The terminal is gone: point stdin/stdout/stderr away from it (writes to a hung-up
        terminal fail or block), then leave; the run goes on in this process, unwatched."""
        self.detached = True
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        self.app.exit(0, return_code=0)

    def detach_job(self) -> None:
        """d: the dashboard goes, the job it started goes on (tmux's detach); the launcher says how
        to attach again and how to stop it."""
        if self.app.job:
            self.detached = True
            self.app.exit(0, return_code=0)

    def leave(self, code: int) -> None:
        """Exit with `code` as both the app's result and its return code."""
        if self.signal_received is not None:  # the terminal may be gone: do not wait on it for ever
            watchdog = threading.Timer(EXIT_GRACE_S, os._exit, (code,))
            watchdog.daemon = True  # a prompt exit does not wait for it
            watchdog.start()
        self.app.exit(code, return_code=code)

    def exit_code(self) -> int:
        app = self.app
        if app.started is None and app.lost:
            return 2  # never reached the run
        if not app.owner:
            return 0
        if app.finished is not None and app.finished.reason in EXIT_CODES:
            return EXIT_CODES[app.finished.reason]
        return 128 + self.signal_received if self.signal_received else 0

    def guard_sigcont(self) -> None:
        """A hang-up comes with SIGCONT, on which Textual's driver restarts its output on the dead
        terminal while the app is leaving: its shutdown then waited for ever on the old writer
        (seen 1 hang-up in 7). A SIGCONT counts only while the terminal is alive."""
        textual_handler = signal.getsignal(signal.SIGCONT)
        if not callable(textual_handler):
            return

        def on_sigcont(signum: int, frame: Any) -> None:
            if not self.detached and terminal_alive():
                textual_handler(signum, frame)

        signal.signal(signal.SIGCONT, on_sigcont)
