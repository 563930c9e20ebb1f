"""The dashboard outlives nothing it should: a hang-up detaches the run; `gantui watch` draws any run."""
from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from gantui.engine.checkpoint import load_checkpoint
from support import Peer, controlling_terminal, dashboard_in_a_pty, last_step, popen, run_process, start, wait_for_step

TERM_ENV = {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}


class Terminal:
    """A command in a fresh pseudo-terminal; `screen` is everything it has drawn."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.main, child = pty.openpty()
        self.proc = popen([sys.executable, "-m", "gantui", *args], stdin=child, stdout=child, stderr=child,
                          env={**os.environ, **TERM_ENV, **(env or {})}, start_new_session=True)
        os.close(child)
        self.screen = b""

    def read(self, seconds: float = 0.2) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if select.select([self.main], [], [], 0.05)[0]:
                try:
                    self.screen += os.read(self.main, 1 << 20)
                except OSError:
                    return

    def wait_for(self, text: bytes, timeout: float = 60, since: int = 0) -> float:
        """Until `text` is drawn (after byte `since` of the output); the seconds it took."""
        start_time = time.monotonic()
        while text not in self.screen[since:]:
            assert time.monotonic() - start_time < timeout, f"{text!r} never appeared"
            assert self.proc.poll() is None, self.screen[-2000:]
            self.read(0.1)
        return time.monotonic() - start_time

    def press(self, keys: bytes) -> int:
        """Type `keys`; returns where the output stood, for `wait_for(..., since=)`."""
        os.write(self.main, keys)
        return len(self.screen)

    def exit_code(self, timeout: float = 30) -> int:
        """Its exit status, reading what it draws meanwhile (a full terminal would block its exit)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "it did not exit"
            self.read(0.1)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.main)


def test_a_hang_up_detaches_the_run_which_trains_on_and_can_be_watched_and_stopped(tmp_path):
    """An SSH drop: the terminal closes and the kernel sends SIGHUP. The dashboard goes, the process
    trains on headless (log lines in gantui.log), still serves its socket, and `gantui stop` ends it."""
    out = tmp_path / "run"
    proc, main = dashboard_in_a_pty(out, preexec_fn=controlling_terminal)
    try:
        os.close(main)  # the terminal goes away; the kernel hangs up its session
        main = None
        step = last_step(out)
        wait_for_step(out, step + 10, timeout=60)  # steps keep coming after the hang-up
        assert proc.poll() is None
        log, deadline = out / "gantui.log", time.monotonic() + 30  # once the dashboard has gone
        while not (log.exists() and "detached" in log.read_text() and "step " in log.read_text()):
            assert time.monotonic() < deadline, "no detached log lines"
            time.sleep(0.1)
        peer = Peer(out)
        peer.read()
        snapshot = peer.read()
        assert snapshot["state"] == "training" and snapshot["step"] >= step + 10
        peer.close()
        stopped = run_process([sys.executable, "-m", "gantui", "stop", str(out)], capture_output=True,
                              text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert proc.wait(timeout=30) == 0
        assert load_checkpoint(out)["step"] >= step + 10
        assert "Traceback" not in (out / "gantui.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        if main is not None:
            os.close(main)


def test_watch_attaches_steers_detaches_and_replays(tmp_path):
    out = tmp_path / "run"
    run = start(out, "--steps", "1000000")
    watcher = None
    try:
        wait_for_step(out, 2)
        watcher = Terminal("watch", str(out))
        first = watcher.wait_for("▄".encode(), timeout=30)  # a preview drawn in half blocks
        watcher.wait_for(b"TRAINING")
        watcher.press(b" ")
        deadline = time.monotonic() + 30
        while json.loads((out / "status.json").read_text())["state"] != "paused":
            assert time.monotonic() < deadline, "the watcher's space did not pause the run"
            time.sleep(0.1)
        watcher.wait_for(b"PAUSED")
        watcher.wait_for(b"TRAINING", since=watcher.press(b" "))
        watcher.press(b"q")  # detach: the watcher goes, the run goes on
        assert watcher.exit_code() == 0
        step = last_step(out)
        wait_for_step(out, step + 4)
        assert run.poll() is None
        watcher.close()
        watcher = Terminal("watch", str(out))  # again, then stop the run from it (x, then y)
        watcher.wait_for(b"TRAINING")
        watcher.wait_for(b"Stop the run?", since=watcher.press(b"x"))
        watcher.press(b"y")
        watcher.wait_for(b"STOPPED")
        assert run.wait(timeout=60) == 0
        watcher.press(b"q")
        assert watcher.exit_code() == 0
        watcher.close()
        watcher = Terminal("watch", str(out))  # a run nobody serves: replayed, read-only
        watcher.wait_for(b"STOPPED (replay)")
        watcher.wait_for(b"replay (read-only)")
        watcher.press(b"q")
        assert watcher.exit_code() == 0
        print(f"first frame with a preview after {first:.2f} s")
    finally:
        if watcher is not None:
            watcher.close()
        if run.poll() is None:
            run.kill()
        run.communicate(timeout=30)


def test_watch_host_run_goes_through_the_transport(tmp_path):
    """`gantui watch HOST:RUN` runs `ssh HOST gantui relay RUN`; here a local stand-in for ssh that
    runs the command the way sshd does (one string, through a shell)."""
    out = tmp_path / "run"
    run = start(out, "--steps", "1000000")
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text('#!/bin/sh\nshift\nexec sh -c "$*"\n')
    fake_ssh.chmod(0o755)
    bin_dir = Path(sys.executable).parent  # where `gantui` is installed
    env = {"GANTUI_SSH": str(fake_ssh), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    watcher = None
    try:
        wait_for_step(out, 2)
        watcher = Terminal("watch", f"somehost:{out}", env=env)
        watcher.wait_for(b"TRAINING")
        watcher.wait_for("▄".encode(), timeout=30)
        watcher.press(b"s")  # a checkpoint now, between the periodic ones (every 1000 steps)
        deadline = time.monotonic() + 30
        while not [p for p in (out / "checkpoints").glob("step-*.pt") if p.name != "step-00000000.pt"]:
            assert time.monotonic() < deadline, "s over the relay saved nothing"
            time.sleep(0.1)
        watcher.press(b"q")
        assert watcher.exit_code() == 0
        assert run.poll() is None
        missing = run_process([sys.executable, "-m", "gantui", "watch", f"somehost:{tmp_path / 'nowhere'}"],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert missing.returncode == 2  # not a terminal: refused before anything is drawn
    finally:
        if watcher is not None:
            watcher.close()
        run.terminate()
        run.communicate(timeout=60)
