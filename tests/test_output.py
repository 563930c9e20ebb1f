"""A headless run's own output: a reader that stops reading, a reader that goes away."""
from __future__ import annotations

import fcntl
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import FAST, popen, wait_for_step


@pytest.fixture
def start():
    """Start runs; whatever a failed test left running is killed."""
    procs: list[subprocess.Popen] = []

    def run(out: Path) -> subprocess.Popen:
        procs.append(launch(out))
        return procs[-1]

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def launch(out: Path) -> subprocess.Popen:
    proc = popen([sys.executable, "-m", "gantui", "--no-ui", "--out", str(out), *FAST, "--log-every", "1",
                 "--steps", "1000000", "--eval-every", "0"],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)  # full after ~25 lines (before any is written)
    return proc


def hello(out: Path) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(out / "gantui.sock"))
        return json.loads(sock.makefile().readline())


def test_output_nobody_reads_blocks_neither_the_trainer_nor_the_watchers(tmp_path, start):
    out = tmp_path / "run"
    proc = start(out)  # stdout is never read while it trains: a paused pager, a stalled SSH session
    wait_for_step(out, 100, timeout=300)  # a line a step: ~13 KB, three times what the pipe holds
    assert hello(out)["type"] == "hello"  # the server answers: it is not stuck behind the printer
    proc.send_signal(signal.SIGTERM)  # the main thread, blocked writing, still takes the signal
    printed, err = proc.communicate(timeout=60)  # reading at last: every line comes out, then the end
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    steps = [int(line.split()[1].split("/")[0]) for line in printed.splitlines() if line.startswith("step ")]
    assert steps[:3] == [1, 2, 3] and steps[-1] >= 100
    assert "stopped at step" in printed.splitlines()[-1]


def test_output_that_goes_away_does_not_end_the_run(tmp_path, start):
    out = tmp_path / "run"
    proc = start(out)  # `gantui --no-ui | head -3`
    first = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    assert first[0].startswith("gantui: training on cpu")
    wait_for_step(out, 5)
    log = out / "gantui.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and "step " in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()  # still training
    text = log.read_text()
    assert "the output went away (Broken pipe); training goes on, logging here" in text
    step = int(text.splitlines()[-1].split()[1].split("/")[0])
    wait_for_step(out, step + 20)
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "stopped at step" in log.read_text().splitlines()[-1]
    assert (out / "checkpoints" / "last.pt").exists()


def test_a_signal_with_stdout_and_stderr_gone_still_saves_and_stops(tmp_path, start):
    """`gantui --no-ui 2>&1 | head`: the signal's own line cannot be written, the run saves anyway."""
    out = tmp_path / "run"
    proc = start(out)
    proc.stdout.readline()
    proc.stdout.close()
    proc.stderr.close()
    wait_for_step(out, 5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert (out / "checkpoints" / "last.pt").exists()
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"
