"""A torchrun job past its happy path: a rollback under rank 0's clock, a run directory whose socket
path is too long, the launcher's dashboard leaving (q stops, d detaches). Fresh processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from gantui.engine.checkpoint import load_checkpoint
from support import NEVER, gantui, gantui_traceback, torchrun


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


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
    job = subprocess.Popen(torchrun("--clock-intervals", "--steps", NEVER, "--fault-nan-step", "30", "--out", str(out),
                                    "--batch-size", "16", "--device", "cpu", "--eval-every", "0"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def after_rollback() -> list[dict]:
            got = lines(out) if (out / "metrics.jsonl").exists() else []
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
    assert final["step"] in [row["step"] for row in lines(out) if "event" not in row]  # at a row, every rank
    assert not gantui_traceback(err)
