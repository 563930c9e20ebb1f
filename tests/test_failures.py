"""Failures inside the run: an exception in the training thread, out of memory, a second signal."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from gantui.config import Config
from gantui.engine.checkpoint import load_checkpoint
from gantui.run.rundir import RunDir
from gantui.engine.trainer import Trainer
from gantui.session import run_headless
from support import FAST, NEVER, dashboard_in_a_pty, make_app, popen, read_until, wait_for, wait_for_step, wait_until


def fail_at(monkeypatch, step: int, error: Exception) -> None:
    """Make the training step raise `error` when the trainer is at `step`."""
    original = Trainer._train_step

    def failing_step(self: Trainer) -> None:
        if self.step == step:
            raise error
        original(self)

    monkeypatch.setattr(Trainer, "_train_step", failing_step)


def test_exception_in_training_headless(tiny_config, monkeypatch, capsys):
    config = tiny_config(steps=40, save_every=4)
    fail_at(monkeypatch, 9, RuntimeError("boom in the step"))
    assert run_headless(config) == 1
    err = capsys.readouterr().err.strip()
    assert "error at step 9: RuntimeError: boom in the step" in err
    assert "error.log" in err and "Traceback" not in err and len(err.splitlines()) == 1
    log = (Path(config.out) / "error.log").read_text()
    assert log.startswith("Traceback") and "failing_step" in log and "boom in the step" in log
    assert load_checkpoint(config.out)["step"] == 8  # the last good state is kept


async def test_exception_in_training_dashboard(tiny_config, monkeypatch):
    config = tiny_config(steps=40, save_every=4)
    fail_at(monkeypatch, 9, RuntimeError("boom in the step"))
    app = make_app(config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.finished is not None)
        await pilot.pause(0.3)  # a window, not a wait: the dashboard must not exit in it
        assert app.is_running  # the dashboard shows the error instead of dying
        assert app.finished.reason == "error"
        messages = [n.message for n in app._notifications]
        assert any("boom in the step" in m and "error.log" in m for m in messages)
        assert "ERROR" in str(app.status_line.render())
        await pilot.press("q")
    assert app.return_code == 1
    assert (Path(config.out) / "error.log").exists()


def test_out_of_memory_names_the_batch_size(tiny_config, monkeypatch):
    fail_at(monkeypatch, 2, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    finished = Trainer(tiny_config(batch_size=48)).run()
    assert finished.reason == "error"
    assert finished.error == "out of CPU memory at batch size 48; try --batch-size 24"


# A gantui whose checkpoint saves after the first hang: the first signal's save never ends. It
# touches the file named by $SLOW_SAVE_BEGAN as it starts to hang, the condition the tests wait on.
SLOW_SAVE = textwrap.dedent("""
    import os, sys, time
    import gantui.engine.artifacts as artifacts
    real_save = artifacts.save_checkpoint
    def slow_save(state, path):
        if state["step"] > 0:
            open(os.environ["SLOW_SAVE_BEGAN"], "w").close()
            time.sleep(120)
        real_save(state, path)
    artifacts.save_checkpoint = slow_save
    from gantui.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_second_signal_exits_at_once_headless(tmp_path):
    out, saving = tmp_path / "run", tmp_path / "saving"
    proc = popen([sys.executable, "-c", SLOW_SAVE, "--no-ui", "--out", str(out), *FAST,
                  "--steps", NEVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env={**os.environ, "SLOW_SAVE_BEGAN": str(saving)})
    wait_for_step(out, 2)
    proc.send_signal(signal.SIGTERM)
    wait_until(saving.exists, what="the final save")  # the trainer is now in its (hanging) final save
    assert proc.poll() is None
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - sent < 3
    assert "Traceback" not in err
    assert load_checkpoint(out)["step"] == 0  # the save in flight was atomic: the old checkpoint is whole


def test_second_signal_exits_at_once_dashboard(tmp_path):
    out, saving = tmp_path / "run", tmp_path / "saving"
    proc, main = dashboard_in_a_pty(out, entry=("-c", SLOW_SAVE), start_new_session=True,
                                    env={"SLOW_SAVE_BEGAN": str(saving)})
    try:
        proc.send_signal(signal.SIGTERM)
        read_until(main, lambda _: saving.exists())
        assert proc.poll() is None  # still saving
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        tail = read_until(main, lambda shown: b"\x1b[?1049l" in shown, timeout=10)
        assert proc.wait(timeout=5) == 128 + signal.SIGTERM
        assert time.monotonic() - sent < 4
        assert b"\x1b[?1049l" in tail  # the alternate screen was left: the terminal is restored
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)


async def test_resume_after_q_is_bit_exact(tiny_config, tmp_path):
    """Stop by q (while paused, which saves and exits at once), resume 4 steps further, and match a
    straight run to that step. The run's budget is one it cannot reach, however fast the machine."""
    config = tiny_config(steps=int(NEVER))
    app = make_app(config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.trainer.step >= 6)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.link.hub.state == "paused")  # the trainer's Paused event
        pressed = time.monotonic()
        await pilot.press("q")
        await wait_for(pilot, lambda: app.finished is not None)
        assert time.monotonic() - pressed < 3
    assert app.return_code == 0
    state = load_checkpoint(config.out)
    assert state["step"] >= 6
    end = state["step"] + 4
    straight = Trainer(tiny_config(steps=end, out=str(tmp_path / "straight")))
    straight.run()
    resumed = Trainer(Config.from_dict({**state["config"], "steps": end, "resume": config.out}), resume_state=state)
    assert resumed.run().reason == "done"
    for key in ("generator", "discriminator"):
        a, b = straight.state_dict()["gan"][key], resumed.state_dict()["gan"][key]
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(os.getuid() != 0, reason="mounting a size-limited tmpfs needs root")
def test_a_really_full_disk_is_reported_and_training_goes_on(tmp_path):
    """A real full filesystem (a 128 MB tmpfs filled up) while grids and metrics are written."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("no tmpfs can be mounted here")
    try:
        out = disk / "run"
        proc = popen([sys.executable, "-m", "gantui", "--no-ui", "--out", str(out), *FAST, "--steps",
                     "1000000", "--sample-every", "4", "--save-every", "1000000", "--eval-every", "0"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_step(out, 4)
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * (1 << 20))
                filler.flush()
        seen, deadline = "", time.monotonic() + 120  # until the run says a write failed (a line every 2 steps)
        while "not written (No space left on device)" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen[-2000:]
            seen += proc.stdout.readline()
        assert proc.poll() is None
        (disk / "filler").unlink()
        step = max(r["step"] for r in RunDir(out).read_metrics() if "loss_d" in r)
        wait_for_step(out, step + 6)  # training went on, and writes again
        proc.send_signal(signal.SIGTERM)
        printed, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "Traceback" not in err
        assert load_checkpoint(out)["step"] > step
    finally:
        subprocess.run(["umount", "-l", str(disk)])
