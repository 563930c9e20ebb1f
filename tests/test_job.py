"""A torchrun job past its happy path: a rollback under rank 0's clock, a run directory whose socket
path is too long, the launcher's dashboard leaving (q stops, d detaches). Fresh processes, but for
the launcher's exit status when its job ends as it detaches (in this process, the job stubbed)."""
from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

from gantui.engine.checkpoint import load_checkpoint
from support import NEVER, TERM, drain, gantui, gantui_traceback, metrics_rows, popen, torchrun, wait_for_step

QUICK = ["--batch-size", "16", "--device", "cpu", "--log-every", "5", "--eval-every", "0"]


def status(out: Path) -> dict:
    return json.loads((out / "status.json").read_text())


def until(condition, timeout: float, what: str):
    """`condition()`'s first truthy value, polled until the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_rollback_restarts_the_shared_intervals_from_the_step_rolled_back_to():
    """Rank 0's clock named the next row past the diverged step; rolled back, every rank's next row
    falls as the job's first did, by steps from the step rolled back to (a fake clock)."""
    from gantui.engine.intervals import Intervals

    now = [0.0]
    steps = {"log_every": 10, "sample_every": 0, "save_every": 1000, "eval_every": 0}
    ranks = [Intervals(steps, ("log_every", "save_every"), clock=lambda: now[0], ranks=2) for _ in range(2)]
    now[0] = 700.0
    lead = ranks[0].lead(steps_per_s=2000.0)  # 0.5 s at 2,000 steps/s; a checkpoint is due
    for r in ranks:
        r.follow(40, lead)  # the row at step 40 diverged: the next named at 1,040
        r.restart(20)  # rolled back to last.pt's step 20
    assert [r.due("log_every", 29) for r in ranks] == [False, False] and all(r.due("log_every", 30) for r in ranks)
    assert not any(r.due("save_every", 21) for r in ranks)  # the checkpoint of the diverged row is dropped


def test_under_rank_0s_clock_a_job_rolled_back_logs_again_at_once_and_a_stop_then_ends_it(tmp_path):
    """A NaN at step 30 under clock intervals: rolled back to the start's checkpoint (step 0), the
    next row is at step 10, not past step 30; `gantui stop` then ends every rank at one row, saved."""
    out = tmp_path / "run"
    job = popen(torchrun("--clock-intervals", "--steps", NEVER, "--fault-nan-step", "30", "--out", str(out),
                         "--batch-size", "16", "--device", "cpu", "--eval-every", "0"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def after_rollback() -> list[dict]:
            got = metrics_rows(out)
            marks = [i for i, row in enumerate(got) if row.get("event") == "rollback"]
            later = [row for row in got[marks[0] + 1:] if "event" not in row] if marks else []
            return [got[marks[0]], later[0]] if later else []

        rollback, first = until(after_rollback, 300, "a metrics row after the rollback")
        assert rollback["step"] >= 30 and rollback["to_step"] == 0
        assert first["step"] == 10, (rollback, first)  # by steps from step 0, as at the job's start
        stop = gantui("stop", str(out), timeout=120)
        assert stop.returncode == 0, stop.stderr
        _, err = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, err[-2000:]
    final = status(out)
    assert final["state"] == "stopped" and load_checkpoint(out)["step"] == final["step"]
    assert final["step"] in [row["step"] for row in metrics_rows(out) if "event" not in row]  # at a row, every rank
    assert not gantui_traceback(err)


def long_run_dir(tmp_path: Path) -> Path:
    """A run directory whose RUN/gantui.sock is too long for a socket address (over 107 bytes), as
    on cluster scratch disks: the run is served from the runtime directory instead."""
    out = tmp_path / "scratch-disk-of-a-cluster-with-a-long-name" / ("a-run-with-a-long-name-" * 3 + "run")
    assert len(os.fsencode(out / "gantui.sock")) > 107
    return out


def launcher_in_a_pty(out: Path) -> tuple[subprocess.Popen, int]:
    """`gantui --nproc 2` in a fresh pseudo-terminal."""
    main, child = pty.openpty()
    launcher = popen([sys.executable, "-m", "gantui", "--nproc", "2", "--steps", NEVER, "--out", str(out),
                     *QUICK], stdin=child, stdout=child, stderr=child, env={**os.environ, **TERM},
                     start_new_session=True)
    os.close(child)
    return launcher, main


def until_its_dashboard(launcher: subprocess.Popen, main: int, out: Path) -> None:
    """Until the launcher's dashboard shows the job training, d in its footer, past step 10."""
    screen, deadline = b"", time.monotonic() + 300
    while not (b"TRAINING" in screen and b"Detach" in screen):
        assert launcher.poll() is None and time.monotonic() < deadline, screen[-2000:]
        screen += drain(main, 0.2)
    wait_for_step(out, 10, timeout=300)


def shown_until_exit(launcher: subprocess.Popen, main: int, timeout: float = 300) -> bytes:
    screen, deadline = b"", time.monotonic() + timeout
    while launcher.poll() is None and time.monotonic() < deadline:
        screen += drain(main, 0.2)
    return screen + drain(main, 0.2)


def end(launcher: subprocess.Popen, main: int, out: Path) -> None:
    """After the test, however it went: the job the launcher started runs in a session of its own;
    its torchrun (the launcher's child) passes a SIGTERM to every rank and waits for them. A job
    left detached is stopped as its line says."""
    if launcher.poll() is None:
        for pid in children(launcher.pid):
            os.kill(pid, signal.SIGTERM)
            until(lambda: pid not in children(launcher.pid), 120, "the job to end")
        os.killpg(launcher.pid, signal.SIGKILL)
    os.close(main)
    if (out / "status.json").exists() and status(out)["state"] in ("training", "paused"):
        gantui("stop", str(out), timeout=300)


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_the_launchers_q_stops_every_rank_saved_where_the_socket_path_is_too_long(tmp_path):
    """`gantui --nproc 2` finds rank 0's socket as `gantui watch` does (here in the runtime directory)
    and its dashboard is the job's: q stops every rank at one step, saved, as q does in one process."""
    out = long_run_dir(tmp_path)
    launcher, main = launcher_in_a_pty(out)
    try:
        until_its_dashboard(launcher, main, out)
        os.write(main, b"q")
        screen = shown_until_exit(launcher, main)
        assert launcher.wait(timeout=5) == 0, screen[-3000:]
        final = status(out)
        assert final["state"] == "stopped" and load_checkpoint(out)["step"] == final["step"]
        assert load_checkpoint(out)["world_size"] == 2
    finally:
        end(launcher, main, out)


def test_the_launchers_d_detaches_and_says_how_to_attach_again_and_how_to_stop_the_job(tmp_path):
    """d (tmux's detach) leaves the job training without its dashboard; the line printed on leaving
    names `gantui watch RUN` and `gantui stop RUN`, and the latter ends every rank, saved."""
    out = tmp_path / "run"
    launcher, main = launcher_in_a_pty(out)
    try:
        until_its_dashboard(launcher, main, out)
        os.write(main, b"d")
        screen = shown_until_exit(launcher, main).decode(errors="replace")
        assert launcher.wait(timeout=5) == 0, screen[-3000:]
        assert f"gantui watch {out}" in screen and f"gantui stop {out}" in screen, screen[-3000:]
        step = max(row["step"] for row in metrics_rows(out) if "event" not in row)
        wait_for_step(out, step + 1, timeout=300)  # the job trains on without its dashboard
        assert status(out)["state"] == "training"
        stopped = gantui("stop", str(out), timeout=300)
        assert stopped.returncode == 0, stopped.stderr
        until(lambda: status(out)["state"] == "stopped", 300, "the job to stop")
        assert load_checkpoint(out)["step"] == status(out)["step"]
    finally:
        end(launcher, main, out)


def test_the_launchers_wait_for_its_job_stops_it_at_a_ctrl_c_and_ends_it_at_a_second():
    """After q the launcher waits for the job to save and stop; a Ctrl-C there passes a stop on
    (SIGTERM), a second ends the job's processes at once: no traceback, no job left behind. The
    job here ignores SIGTERM, as a rank stuck in a save would."""
    import threading

    from gantui.cli.ranks import ended

    job = popen([sys.executable, "-c", "import signal, time\n"
                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(flush=True)\ntime.sleep(600)"],
                stdout=subprocess.PIPE, start_new_session=True)
    job.stdout.readline()  # its SIGTERM handler is in place

    def interrupt() -> None:
        for _ in range(2):
            time.sleep(0.3)  # the pace of a person's two Ctrl-Cs; the wait is the function's
            os.kill(os.getpid(), signal.SIGINT)

    pressing = threading.Thread(target=interrupt)
    pressing.start()
    try:
        code = ended(job)
    finally:
        pressing.join()
        if job.poll() is None:
            job.kill()
    assert code == 130 and job.returncode == -signal.SIGKILL


def test_a_job_that_ends_while_its_dashboard_detaches_leaves_with_its_own_exit_status(tmp_path, monkeypatch):
    """The launcher in this process, the job a process that ends at once: `d` pressed as it ends is
    the job's status (0), not the dashboard's DETACHED."""
    from gantui.cli import ranks
    from gantui.cli.train import train_parser

    jobs: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def job(cmd, **kwargs):
        jobs.append(popen([sys.executable, "-c", "pass"], **kwargs))
        return jobs[-1]

    def dashboard(path, out, images):
        jobs[-1].wait()  # the job has ended before the detach is looked at
        return ranks.DETACHED

    monkeypatch.setattr(ranks.subprocess, "Popen", job)
    monkeypatch.setattr(ranks, "served", lambda out, job: out / "gantui.sock")
    monkeypatch.setattr(ranks, "dashboard", dashboard)
    argv = ["--nproc", "2", "--out", str(tmp_path / "run")]
    assert ranks.launch(argv, train_parser().parse_args(argv), ui=True) == 0
