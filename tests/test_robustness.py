"""No run is lost: signals, a second process, corrupt checkpoints, full disks, divergence."""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from gantui.run import events as ev
from gantui.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gantui.config import Config
from gantui.engine.trainer import Trainer
from support import (FAST, NEVER, controlling_terminal, dashboard_in_a_pty, gantui, refused, run_process, start,
                     wait_for_step)

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_saves_and_exits_128_plus_signal(tmp_path, signum):
    out = tmp_path / "run"
    proc = start(out, "--steps", NEVER)
    wait_for_step(out, 4)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    state = load_checkpoint(out)
    assert state["step"] >= 4
    assert "Traceback" not in err


def test_second_process_on_the_same_run_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    first = start(out, "--steps", NEVER)
    try:
        wait_for_step(out, 2)
        second = run_process([sys.executable, "-m", "gantui", "--no-ui", "--out", str(out), *FAST],
                             capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "in use by another gantui process" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.terminate()
        first.communicate(timeout=30)


def test_resume_after_sigterm_is_bit_exact(tmp_path):
    """SIGTERM wherever the run got to (its step budget out of reach, however fast the machine), a
    resume to 4 steps past that, and a straight run to the same step: the same weights, bit for bit."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    proc = start(split, "--steps", NEVER)
    wait_for_step(split, 6)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    stopped_at = load_checkpoint(split)["step"]
    assert stopped_at >= 6
    end = str(stopped_at + 4)
    assert gantui("--no-ui", "--out", str(straight), *FAST, "--steps", end).returncode == 0
    resumed = gantui("--no-ui", "--resume", str(split), "--steps", end, fresh=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(straight), load_checkpoint(split)
    assert a["step"] == b["step"] == stopped_at + 4
    for key in ("generator", "discriminator"):
        assert all(torch.equal(a["gan"][key][k], b["gan"][key][k]) for k in a["gan"][key])
    events = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "resume" and e["step"] == stopped_at for e in events)


def corrupt_files(tmp_path: Path, good: Path) -> dict[str, Path]:
    files = {"empty": tmp_path / "empty.pt", "truncated": tmp_path / "truncated.pt",
             "foreign": tmp_path / "foreign.pt", "code": tmp_path / "code.pt", "text": tmp_path / "text.pt"}
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save({"weights": torch.zeros(3)}, files["foreign"])
    torch.save({"format": "gantui-checkpoint", "payload": Path("/")}, files["code"])  # an object, not data
    files["text"].write_text("hello")
    return files


def test_bad_checkpoints_get_one_line_errors(tmp_path, tiny_config, capsys):
    Trainer(tiny_config(steps=2)).run()
    good = tmp_path / "run" / "checkpoints" / "last.pt"
    reasons = {"empty": "empty file", "truncated": "truncated", "foreign": "not a gantui checkpoint",
               "code": "refused", "text": "truncated or not a PyTorch file"}
    for name, path in corrupt_files(tmp_path, good).items():
        with pytest.raises(CheckpointError, match=reasons[name]):
            load_checkpoint(path)
        err = refused(capsys, "--no-ui", "--resume", str(path))
        assert str(path) in err and len(err.strip().splitlines()) == 1
    assert "does not match" in refused(capsys, "--no-ui", "--resume", str(good), "--z-dim", "64")


def test_killed_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between the write and the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_full_disk_is_reported_and_training_goes_on(tiny_config, monkeypatch):
    import gantui.engine.artifacts as artifacts_module

    events: list = []
    trainer = Trainer(tiny_config(steps=12, save_every=4), events.append)
    real_save = artifacts_module.save_checkpoint

    def full_disk(state, path):
        if state["step"] == 8:
            raise OSError(28, "No space left on device")
        real_save(state, path)

    monkeypatch.setattr(artifacts_module, "save_checkpoint", full_disk)
    finished = trainer.run()
    assert finished.reason == "done" and finished.step == 12
    notices = [e.text for e in events if isinstance(e, ev.Notice)]
    assert any("step 8 not saved (No space left on device)" in n for n in notices)
    assert load_checkpoint(finished.checkpoint)["step"] == 12


def test_divergence_rolls_back_with_halved_lr_then_stops(tiny_config):
    events: list = []
    trainer = Trainer(tiny_config(steps=40, save_every=4, fault_nan_step=6), events.append)
    trainer.run()
    rows = trainer.run_dir.read_metrics()
    rollback = [r for r in rows if r.get("event") == "rollback"]
    assert rollback and rollback[0]["step"] == 6 and rollback[0]["to_step"] == 4
    assert rollback[0]["lr"] == pytest.approx(tiny_config().lr / 2)
    assert trainer.gan.opt_g.param_groups[0]["lr"] == pytest.approx(tiny_config().lr / 2)
    nan_rows = [r for r in rows if r.get("nonfinite")]
    assert nan_rows and nan_rows[0]["loss_d"] is None  # strict JSON: null plus a flag
    assert any(isinstance(e, ev.Notice) and "rolled back" in e.text for e in events)
    assert trainer.step == 40  # then training went on


def test_repeated_divergence_stops_as_diverged(tmp_path, tiny_config, monkeypatch):
    import gantui.engine.guard as guard_module

    monkeypatch.setattr(guard_module, "GRAD_NORM_LIMIT", 0.0)  # every interval looks explosive
    result = Trainer(tiny_config(steps=40)).run()
    assert result.reason == "diverged" and "gradient norm" in result.error
    rows = Trainer(tiny_config(steps=1)).run_dir.read_metrics()
    assert sum(r.get("event") == "rollback" for r in rows) == 3
    assert rows[-1]["event"] == "diverged"


def test_metrics_jsonl_is_strict_json(tiny_config):
    trainer = Trainer(tiny_config(steps=8, fault_nan_step=4, log_every=2))
    trainer.run()
    text = trainer.run_dir.metrics.read_text()
    assert "NaN" not in text and "Infinity" not in text
    for line in text.splitlines():
        json.loads(line)


def test_dashboard_in_a_terminal_saves_on_sighup(tmp_path):
    """With --on-hangup stop, an SSH drop as before: the dashboard gets SIGHUP, saves, exits 129."""
    out = tmp_path / "run"
    proc, main = dashboard_in_a_pty(out, "--on-hangup", "stop", start_new_session=True)
    try:
        proc.send_signal(signal.SIGHUP)
        start_time = time.monotonic()
        while proc.poll() is None and time.monotonic() - start_time < 20:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    os.read(main, 65536)
                except OSError:
                    break
        assert proc.wait(timeout=20) == 128 + signal.SIGHUP
        assert time.monotonic() - start_time < 15
        assert load_checkpoint(out)["step"] >= 2
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)


def test_dashboard_whose_terminal_is_gone_saves_and_exits(tmp_path):
    """An SSH drop as sshd or `tmux kill-session` does it: the terminal closes and the kernel sends
    SIGHUP. The dashboard saves, exits 129 although it cannot restore the terminal (Textual's writer
    blocks on it), and frees the run directory for a resume."""
    out = tmp_path / "run"
    proc, main = dashboard_in_a_pty(out, "--on-hangup", "stop", preexec_fn=controlling_terminal)
    try:
        os.close(main)  # the terminal goes away; the kernel hangs up its session
        main = None
        start_time = time.monotonic()
        assert proc.wait(timeout=30) == 128 + signal.SIGHUP
        assert time.monotonic() - start_time < 15
        saved = load_checkpoint(out)["step"]
        assert saved >= 2
    finally:
        if proc.poll() is None:
            proc.kill()
        if main is not None:
            os.close(main)
    resumed = run_process([sys.executable, "-m", "gantui", "--no-ui", "--resume", str(out), "--steps", str(saved + 1)],
                          capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr  # the lock went with the process


def test_the_guard_counts_carry_over_a_resume(tiny_config, monkeypatch):
    """The rollback count is in the checkpoint: after a resume the limit does not start over, and
    each rollback halves the learning rate the optimisers have, never raising it."""
    import gantui.engine.guard as guard_module

    lr = tiny_config().lr
    Trainer(tiny_config(steps=12, save_every=4, fault_nan_step=6)).run()
    state = load_checkpoint(tiny_config().out)
    assert state["guard"]["rollbacks"] == 1 and state["gan"]["opt_g"]["param_groups"][0]["lr"] == pytest.approx(lr / 2)
    assert state["config"]["lr_g"] == state["config"]["lr_d"] == pytest.approx(lr / 2)  # what a resume starts from
    monkeypatch.setattr(guard_module, "GRAD_NORM_LIMIT", 0.0)  # from now on every interval looks explosive
    config = Config.from_dict({**state["config"], "steps": 40}).validate()  # as `--resume` builds it
    resumed = Trainer(config, resume_state=state)
    assert resumed.run().reason == "diverged"
    rollbacks = [r for r in resumed.run_dir.read_metrics() if r.get("event") == "rollback"]
    assert [r["lr"] for r in rollbacks] == pytest.approx([lr / 2, lr / 4, lr / 8])  # 3 in all, then diverged
