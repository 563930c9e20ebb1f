"""The dashboard outlives nothing it should: a hang-up detaches the run; `gantui watch` draws any run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gantui.engine.checkpoint import load_checkpoint
from support import (Peer, Terminal, controlling_terminal, dashboard_in_a_pty, last_step, run_process, start,
                     wait_for_step)

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
