"""A training loop of the user's own, published through `gantui.init`: the API's promises, each
where a user would meet it (the loop in a process of its own, watched and steered from others)."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gantui
from gantui.run import events as ev
from gantui.run.history import History
from gantui.run.replay import replay_snapshot
from gantui.run.rundir import RunDir
from gantui.run.runs import run_state, summary
from support import Peer, gantui as gantui_cli, popen, run_process, wait_until

LOOP = textwrap.dedent("""
    import sys, time, torch, gantui
    out, steps = sys.argv[1], int(sys.argv[2])
    run = gantui.init(name="loop", config={"lr": 0.1}, out=out, tunable={"lr": 0.1})
    run.on_save(lambda: open(out + "/saved.txt", "w").write("saved") and out + "/saved.txt")
    w = torch.ones(4, requires_grad=True)
    step = 0
    while step < steps:
        step += 1
        loss = (w * step).sum()
        run.log({"loss/G": loss, "loss/D": 1.0 / step, "D_x": torch.tensor(0.25)}, step=step)
        if step % 5 == 0:
            run.log_images(torch.rand(8, 1, 28, 28) * 2 - 1, step=step)
        if run.should_stop:
            break
        time.sleep(0.002)
    run.finish()
    print("ended", step, run.tunable["lr"])
""")


def start_loop(tmp_path: Path, steps: int = 10**7) -> tuple[Path, subprocess.Popen]:
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    out = tmp_path / "run"
    proc = popen([sys.executable, str(script), str(out), str(steps)], stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "gantui.sock").exists() or not (out / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the loop did not start"
        time.sleep(0.05)
    return out, proc


def rows(out: Path) -> list[dict]:
    return [r for r in RunDir(out).read_metrics() if "event" not in r]


def test_a_loop_is_listed_watched_paused_set_saved_stopped_and_replayed(tmp_path):
    out, proc = start_loop(tmp_path)
    try:
        listed = gantui_cli("runs", "--root", str(tmp_path), "--json")
        assert json.loads(listed.stdout)["status"] == "training"
        peer = Peer(out)
        snapshot = peer.until(lambda m: m["type"] == "snapshot")
        assert snapshot["producer"] == "loop" and snapshot["tunable"] == {"lr": 0.1}
        panes = snapshot["schema"] or peer.until(lambda m: m["type"] == "schema")["panes"]
        assert [[key for key, _, _ in pane["lines"]] for pane in panes] == [["loss/G", "loss/D"], ["D_x"]]  # by prefix
        peer.cmd("preview", count=4)
        preview = peer.until(lambda m: m["type"] == "preview")
        assert preview["shape"] == [4, 28, 28] and preview["source"] == "your loop"

        peer.cmd("pause")  # the loop waits inside its next log()
        paused = peer.until(lambda m: m["type"] == "paused")
        wait_until(lambda: RunDir(out).read_status()["state"] == "paused", what="status.json to say paused")
        still = rows(out)[-1]["step"]
        assert still == paused["step"]
        peer.cmd("set", values={"lr": 0.5})
        peer.cmd("save")
        peer.until(lambda m: m["type"] == "saved")
        assert (out / "saved.txt").read_text() == "saved"
        peer.cmd("set", values={"batch_size": 2})
        refused = peer.until(lambda m: m["type"] == "error")
        assert "not a live setting of this run" in refused["error"]
        time.sleep(0.3)  # a window, not a wait: nothing may train in it
        assert rows(out)[-1]["step"] == still  # nothing trained while paused
        peer.cmd("resume")
        peer.until(lambda m: m["type"] == "metrics" and m["rows"][-1]["step"] > still)
        peer.close()

        stopped = gantui_cli("stop", str(out))  # returns once the loop has finished the run
        assert stopped.returncode == 0, stopped.stderr
        assert RunDir(out).read_status()["state"] == "stopped" and not RunDir(out).is_locked()
        stdout = proc.communicate(timeout=30)[0]
        assert stdout.split()[0] == "ended" and float(stdout.split()[2]) == 0.5  # run.tunable followed the set
    finally:
        proc.kill()
    assert run_state(RunDir(out)) == "stopped"
    set_rows = [r for r in RunDir(out).read_metrics() if r.get("event") == "set"]
    assert set_rows and set_rows[0]["values"] == {"lr": 0.5}

    replay = replay_snapshot(RunDir(out))  # after it finished: the curves, its shape, the newest grid
    assert not replay.live and replay.capabilities == ev.LOOP and replay.image_shape == [1, 28, 28]
    assert replay.history[0]["step"] == 1 and replay.history[-1]["step"] == rows(out)[-1]["step"]
    assert replay.preview is not None and replay.preview.images.shape[1:] == (28, 28)
    assert {key for pane in replay.schema for key, _, _ in pane.lines} == {"loss/G", "loss/D", "D_x"}


def test_a_killed_loop_is_listed_as_killed(tmp_path):
    out, proc = start_loop(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    listed = gantui_cli("runs", "--root", str(tmp_path), "--json")
    assert json.loads(listed.stdout)["status"] == "killed"


@pytest.mark.parametrize("ending, state, error", [
    ("with gantui.init(out=OUT) as run:\n    run.log({'a': 1.0})\n    raise RuntimeError('boom')", "error",
     "RuntimeError: boom"),
    ("run = gantui.init(out=OUT)\nrun.log({'a': 1.0})\nraise RuntimeError('bang')", "error", "RuntimeError: bang"),
    ("run = gantui.init(out=OUT)\nrun.log({'a': 1.0})", "done", None),  # finish() forgotten: atexit
])
def test_a_run_the_loop_did_not_finish_is_finished_for_it(tmp_path, ending, state, error):
    out = tmp_path / "run"
    script = f"import gantui\nOUT = {str(out)!r}\n{ending}\n"
    run_process([sys.executable, "-c", script], capture_output=True, timeout=60)
    status = RunDir(out).read_status()
    assert status["state"] == state and status.get("error") == error
    assert not RunDir(out).is_locked() and not (out / "gantui.sock").exists()


def test_other_ranks_get_a_run_that_does_nothing(tmp_path):
    script = ("import gantui\nrun = gantui.init(out=%r)\nrun.log({'a': 'not even checked'})\n"
              "print(type(run).__name__, run.should_stop)\nrun.finish()" % str(tmp_path / "run"))
    done = run_process([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "RANK": "1"})
    assert done.stdout.split() == ["NullRun", "False"] and not (tmp_path / "run").exists()


def test_bad_input_is_raised_in_the_caller_at_once(tmp_path):
    run = gantui.init(out=tmp_path / "run", serve=False, quiet=True)
    for value, what in (("high", "a str"), ([1.0, 2.0], "a list"), (torch.ones(3), "a Tensor of 3 elements"),
                        (np.ones(2), "a ndarray of 2 elements")):
        with pytest.raises(TypeError, match=f"'loss' is {what}, not a number"):
            run.log({"ok": 1.0, "loss": value})
    with pytest.raises(ValueError, match="'step' is a name gantui gives its rows"):
        run.log({"step": 1})
    for shape in ((64,), (64, 3), (2, 3, 4, 4, 4)):
        with pytest.raises(ValueError, match=f"shape {re.escape(str(shape))} is not images"):
            run.log_images(np.zeros(shape))
    with pytest.raises(ValueError, match=r"shape \(2, 5, 28, 28\) is not images"):
        run.log_images(torch.zeros(2, 5, 28, 28))
    w = torch.ones(3, requires_grad=True)
    run.log({"grad": (w * 2).sum(), "np": np.float32(0.5), "zero_d": np.array(2.0), "nan": float("nan"),
             "flag": True}, step=7)
    run.finish()
    (row,) = rows(tmp_path / "run")  # the rejected calls left nothing behind
    assert row["step"] == 7 and row["grad"] == 6.0 and row["np"] == 0.5 and row["zero_d"] == 2.0 and row["flag"] == 1.0
    assert row["nan"] is None and row["nonfinite"] == ["nan"]


@pytest.mark.parametrize("device_path", [True, False])
def test_rows_of_a_fast_loop_are_combined_and_read_in_one_sync(tmp_path, monkeypatch, device_path):
    """A GPU's tensors are summed where they are and read once a row; a CPU's are read at once
    (`device_path`: CPU tensors made to take the GPU's path, as no GPU is here)."""
    from gantui.run import combine

    monkeypatch.setattr(combine, "READ_CPU_AT_ONCE", not device_path)
    reads = []
    real_tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(self.shape) or real_tolist(self))
    run = gantui.init(out=tmp_path / "run", serve=False, quiet=True)
    for step in range(1, 2001):
        run.log({"a": torch.tensor(float(step)), "b": float(step)}, step=step)
    run.finish()
    got = rows(tmp_path / "run")
    assert got[0]["step"] == 1 and got[-1]["step"] == 2000  # the first call is a row of its own
    assert len(got) < 200 and sum(r["steps"] for r in got) == 2000
    # a device's sums: one .tolist() per row, whatever the calls it combines; a CPU's: each value as logged
    assert len(reads) == (len(got) if device_path else 2000)
    for r in got:  # each key the mean of the steps the row combines
        first = r["step"] - r["steps"] + 1
        assert math.isclose(r["a"], (first + r["step"]) / 2) and math.isclose(r["b"], r["a"])


def test_images_in_every_layout_and_range(tmp_path):
    from gantui.run import images as img

    grey = np.linspace(-1, 1, 4 * 28 * 28, dtype=np.float32).reshape(4, 1, 28, 28)
    assert img.tiles(grey, 2).shape == (2, 28, 28)
    assert img.tiles(grey, 2)[0, 0, 0] == 0 and img.tiles(grey, 4)[-1, -1, -1] == 255  # [-1, 1]
    rgb = torch.rand(3, 32, 32, 3)  # NHWC in [0, 1]
    tiles = img.tiles(rgb, 8)
    assert tiles.shape == (3, 32, 32, 3) and np.array_equal(tiles, (rgb.numpy() * 255 + 0.5).astype(np.uint8))
    assert img.tiles(np.full((28, 28), 7, np.uint8), 4).shape == (1, 28, 28)  # one image, uint8 as it is
    assert img.grid(img.tiles(grey, 4), nrow=2).shape == (2 + 2 * 30, 2 + 2 * 30)


def test_the_history_of_a_long_run_covers_it_in_bounded_memory():
    history = History(size=2000)
    for step in range(1, 200_001):
        history.append({"step": step})
    steps = [row["step"] for row in history]
    assert len(steps) <= 2000 and steps[0] == 1 and steps[-1] == 200_000
    assert steps == sorted(steps) and steps[-1000:] == list(range(199_001, 200_001))  # the recent past in full
    older = [row["step"] for row in history.older]
    assert {b - a for a, b in zip(older, older[1:])} == {history.stride}  # the older part evenly thinned


def parsing_all(path: Path, rows: int, sample: int = 30_000) -> float:
    """Seconds to parse every row of metrics.jsonl, extrapolated from `sample` rows: what reading
    the whole file would cost on this machine, now (so the test holds on a slow or busy one)."""
    began = time.perf_counter()
    with open(path) as f:
        for _, line in zip(range(sample), f):
            json.loads(line)
    return (time.perf_counter() - began) * rows / sample


def test_runs_and_replay_read_a_run_of_millions_of_rows_quickly(tmp_path):
    """`gantui runs` and a replay read the last MiB and 2,000 sampled lines, not the file: each
    takes under a tenth of what parsing all 3 million rows takes on the same machine."""
    out = tmp_path / "run"
    RunDir(out).create().write_config({"producer": "loop", "schema": [{"title": "loss", "lines": [["a", "a", ".4g"]]}]})
    with open(out / "metrics.jsonl", "w") as f:
        block = 100_000
        for start in range(0, 3_000_000, block):
            f.write("".join(f'{{"step": {s}, "a": 0.5}}\n' for s in range(start + 1, start + block + 1)))
    whole = parsing_all(out / "metrics.jsonl", 3_000_000)
    began = time.perf_counter()
    row = summary(RunDir(out))
    took = time.perf_counter() - began
    assert row["step"] == 3_000_000 and took < whole / 10, (took, whole)
    began = time.perf_counter()
    replay = replay_snapshot(RunDir(out))
    took = time.perf_counter() - began
    assert replay.history[0]["step"] == 1 and replay.history[-1]["step"] == 3_000_000 and took < whole / 10, (took, whole)
    assert len(replay.history) <= 2000


def test_a_repeated_notice_is_sent_once_with_a_count(tmp_path):
    from gantui.run.publisher import Publisher

    run = Publisher.for_trainer(tmp_path / "run", serve=False)
    seen = []
    run.hub.subscribe(seen.append)
    for _ in range(200):
        run.warn("metrics.jsonl not written: No space left on device")
    assert [e.text for e in seen if isinstance(e, ev.Notice)] == ["metrics.jsonl not written: No space left on device"]
    run._repeats["metrics.jsonl not written: No space left on device"][0] -= 60  # the window has passed
    run.warn("metrics.jsonl not written: No space left on device")
    assert seen[-1].text.endswith("(199 more like it before this)")
    run.close()


def test_the_trainers_intervals_follow_the_clock_where_asked_and_steps_where_given(tiny_config, monkeypatch):
    """On CUDA the intervals whose flag was not given follow the clock (Config.timed, set by the
    CLI); here the same on the CPU, with short periods."""
    import argparse

    from gantui.cli.resolve import timed_intervals
    from gantui.engine import intervals
    from gantui.engine.trainer import Trainer

    args = argparse.Namespace(resume=None, log_every=None, sample_every=7, save_every=None, eval_every=None)
    config = tiny_config()
    assert timed_intervals(config, args, "cuda") == ("log_every", "save_every", "eval_every")
    assert timed_intervals(config, args, "cpu") == ()
    monkeypatch.setitem(intervals.PERIODS, "log_every", 0.05)
    events = []
    trainer = Trainer(tiny_config(steps=40, log_every=1000, sample_every=1000, timed=("log_every",)), events.append)
    trainer.run()
    steps = [e.row["step"] for e in events if isinstance(e, ev.Metrics)]
    assert len(steps) >= 3 and steps[-1] == 40 and all(s < 1000 for s in steps)  # by the clock, not every 1000
    assert any("by the clock: log every 0.05 s" in e.text for e in events if isinstance(e, ev.Notice))


async def test_the_dashboard_on_a_loop_shows_its_panes_and_only_the_keys_it_takes(tmp_path):
    """A loop's run in the dashboard: a pane per prefix, no Quality pane, no resample, and no tune
    for a loop that declares no settings; its replay has no made-up total."""
    from gantui.run.client import LocalLink
    from gantui.ui.app import GanApp
    from support import wait_for

    run = gantui.init(out=tmp_path / "run", serve=False, quiet=True)
    app = GanApp(LocalLink(run._pub.hub))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.started is not None)
        for step in range(1, 4):
            run.log({"loss/G": 1.0 / step, "loss/D": 0.5, "D_x": torch.tensor(0.25)}, step=step)
            time.sleep(0.3)  # a loop's pace, not a wait: a row each (logs closer than the run's interval are one row)
        run.log_images(torch.rand(4, 3, 32, 32), step=3)
        await wait_for(pilot, lambda: [p.border_title for p in app.metric_panes if p.display] == ["loss", "D"])
        await wait_for(pilot, lambda: len(app.metric_panes[0].lines[0].values) == 3)
        assert not app.quality_pane.display
        assert app.check_action("resample", ()) is False and app.check_action("tune", ()) is False
        assert app.check_action("save", ()) is True
        await wait_for(pilot, lambda: app.preview_pane.channels == 3)  # the images' shape, announced
        run.finish()
        await wait_for(pilot, lambda: app.finished is not None)
        assert app.check_action("resample", ()) is False and app.check_action("tune", ()) is False  # still hidden
        await pilot.press("q")
    replay = replay_snapshot(RunDir(tmp_path / "run"))
    assert replay.total_steps == 0 and replay.step == 3


def test_a_jobs_shared_intervals_fall_where_rank_0s_clock_leads():
    """Many ranks: the metrics row and the checkpoint by rank 0's clock, at the steps it names; the
    grid by its own clock; a kind whose flag was given by steps on every rank."""
    from gantui.engine.intervals import Intervals

    now = [0.0]
    steps = {"log_every": 10, "sample_every": 7, "save_every": 1000, "eval_every": 0}
    ranks = [Intervals(steps, ("log_every", "save_every", "sample_every"), clock=lambda: now[0], ranks=2)
             for _ in range(2)]
    assert [r.due("log_every", 9) for r in ranks] == [False, False] and all(r.due("log_every", 10) for r in ranks)
    now[0] = 1.0
    lead = ranks[0].lead(steps_per_s=30.0)  # 0.5 s at 30 steps/s: 15 steps; no checkpoint yet
    assert lead == {"row_in": 15.0, "checkpoint": 0.0}
    for r in ranks:
        r.follow(10, lead)
    assert [r.due("log_every", 24) for r in ranks] == [False, False] and all(r.due("log_every", 25) for r in ranks)
    assert not any(r.due("save_every", 25) for r in ranks)
    now[0] = 601.0
    lead = ranks[0].lead(steps_per_s=0.5)  # a slow step: a row every step; the checkpoint is due
    assert lead == {"row_in": 1.0, "checkpoint": 1.0}
    for r in ranks:
        r.follow(25, lead)
    assert all(r.due("save_every", 26) for r in ranks) and not any(r.due("save_every", 27) for r in ranks)  # once
    assert ranks[0].due("sample_every", 26)  # rank 0's own clock (only rank 0 asks)
    by_steps = Intervals(steps, ("sample_every",), clock=lambda: now[0], ranks=2)
    assert by_steps.due("log_every", 20) and not by_steps.due("log_every", 25)
    assert by_steps.lead(30.0) == {}


def test_a_row_with_non_finite_values_is_the_same_row_in_metrics_jsonl_and_on_the_socket(tmp_path):
    """One rule for NaN and infinities in a row (common.finite_row): null at any depth, the row's own
    keys named in `nonfinite`."""
    from gantui.common import finite_row

    out = tmp_path / "run"
    run = gantui.init(out=out, quiet=True)
    peer = Peer(out)
    try:
        peer.until(lambda m: m["type"] == "snapshot")  # joined: the row comes as a row, not in its history
        run.log({"a": 1.0, "b": float("nan"), "c": float("-inf")}, step=1)
        sent = peer.until(lambda m: m["type"] == "metrics" and m["rows"][-1]["step"] == 1)["rows"][-1]
    finally:
        peer.close()
        run.finish()
    (written,) = rows(out)
    assert sent == written, (sent, written)
    assert written["b"] is None and written["c"] is None and written["nonfinite"] == ["b", "c"]
    nested = {"devices": [{"power": float("nan"), "util": 5.0}], "loss": float("inf")}
    assert finite_row(nested) == {"devices": [{"power": None, "util": 5.0}], "loss": None, "nonfinite": ["loss"]}
    wide = {f"k{i}": 0.5 for i in range(1000)}
    assert finite_row(wide) is wide  # nothing to clean: not copied
