"""`gantui.init` and `run.log` at their edges, as people call them: arguments of every kind, Ctrl-C
and sys.exit, rows thousands of keys wide, several threads, a device without float64, forked
DataLoader workers, a cut metrics.jsonl, a loop gone quiet, a cell run twice. Exits, signals and
forks are shown in fresh processes."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gantui
from gantui.run import events as ev
from gantui.run.history import History
from gantui.run.rundir import RunDir
from gantui.run.runs import all_runs, run_state
from support import Peer, popen, run_process, wait_until


def rows(out: Path) -> list[dict]:
    return [r for r in RunDir(out).read_metrics() if "event" not in r]


def released(out: Path) -> bool:
    return not RunDir(out).is_locked() and not (out / "gantui.sock").exists()


def script(tmp_path: Path, body: str, **kwargs) -> subprocess.CompletedProcess:
    """`body` in a fresh process, with OUT the run's directory."""
    code = f"import gantui, os, sys\nOUT = {str(tmp_path / 'run')!r}\n" + textwrap.dedent(body)
    return run_process([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kwargs)


# -- arguments, and nothing killing a background thread ------------------------------------
def test_a_torch_device_is_taken_and_the_run_goes_on(tmp_path):
    out = tmp_path / "run"
    run = gantui.init(out=out, device=torch.device("cuda"), quiet=True)  # the natural call (no GPU needed)
    try:
        peer = Peer(out)
        assert peer.read()["type"] == "hello"
        assert peer.until(lambda m: m["type"] == "snapshot")["device"] == "cuda"
        run.log({"loss": 1.0}, step=1)
        assert peer.until(lambda m: m["type"] == "metrics")["rows"][0]["step"] == 1
        peer.close()
    finally:
        began = time.monotonic()
        run.finish()
    assert time.monotonic() - began < 5  # not two 10 s waits on a dead writer
    assert json.loads((out / "config.json").read_text())["resolved_device"] == "cuda"
    assert [r["step"] for r in rows(out)] == [1]
    assert [r.path for r in all_runs(tmp_path)] == [out] and run_state(RunDir(out)) == "done"


def test_init_takes_a_namespace_and_numpy_numbers(tmp_path):
    out = tmp_path / "run"
    opts = argparse.Namespace(lr=np.float32(0.5), layers=np.int64(3), device=torch.device("cpu"))
    run = gantui.init(out=out, config=opts, total_steps=np.int64(100), tunable={"lr": np.float32(0.5)}, quiet=True)
    run.log({"loss": 1.0}, step=1)
    run.finish()
    config = json.loads((out / "config.json").read_text())
    assert config["config"] == {"lr": 0.5, "layers": 3, "device": "cpu"} and config["tunable"] == {"lr": 0.5}
    assert RunDir(out).read_status()["total_steps"] == 100 and released(out)


def test_what_init_cannot_read_is_refused_before_anything_is_held(tmp_path):
    out = tmp_path / "run"
    for bad, what in (({"config": 42}, "config must be a dict"), ({"total_steps": 2.5}, "total_steps"),
                      ({"tunable": {"lr": "fast"}}, "live setting 'lr'")):
        with pytest.raises(TypeError, match=what):
            gantui.init(out=out, quiet=True, **bad)
        assert released(out)


def test_init_failing_after_the_lock_releases_it(tmp_path, monkeypatch):
    from gantui.run.loop import Run

    def broken(self):
        raise RuntimeError("no status for you")

    monkeypatch.setattr(Run, "_announced", broken)
    with pytest.raises(RuntimeError, match="no status"):
        gantui.init(out=tmp_path / "run", quiet=True)
    assert released(tmp_path / "run")


def test_no_failure_kills_the_writer_or_raises_out_of_log(tmp_path, capfd):
    out = tmp_path / "run"
    run = gantui.init(out=out, serve=False, quiet=True)
    run._pub.writer.put({"step": 1, "odd": object()})  # a row that cannot be encoded
    run._pub.writer.task(lambda: 1 / 0)  # a task that raises
    got = []
    run._pub.hub.subscribe(lambda e: 1 / 0 if isinstance(e, ev.Metrics) else None, name="broken")  # a consumer that raises
    run._pub.hub.subscribe(got.append, name="fine")
    run.log({"loss": 1.0}, step=2)
    run.finish()
    assert [r["step"] for r in rows(out)] == [2] and any(isinstance(e, ev.Metrics) for e in got)
    err = capfd.readouterr().err
    assert "ZeroDivisionError" in err and "Traceback" not in err
    assert err.count("a watcher (broken) failed") == 1


class GonePipe:
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("gone", ["closed", "broken pipe"])
def test_a_loop_whose_stderr_is_gone_is_never_raised_into(tmp_path, monkeypatch, gone):
    """A closed stderr, or a pipe into `head` that has ended: gantui's lines are lost, the loop goes on."""
    import io

    stderr = GonePipe() if gone == "broken pipe" else io.StringIO()
    if gone == "closed":
        stderr.close()
    monkeypatch.setattr(sys, "stderr", stderr)
    out = tmp_path / "run"
    run = gantui.init(out=out, serve=False)  # says where it publishes
    run._pub.hub.subscribe(lambda e: 1 / 0 if isinstance(e, ev.Metrics) else None, name="broken")  # warns once
    run.log({"loss": 1.0}, step=1)
    run._pub.publish(ev.Notice("the loop's stderr is gone", "warning"))  # echoed to stderr
    run.finish()
    assert [r["step"] for r in rows(out)] == [1]


# -- text ------------------------------------------------------------------------------------
def test_run_notice_is_a_text_row_and_a_notice_to_the_watchers(tmp_path):
    from gantui.run.nullrun import NullRun

    run = gantui.init(out=tmp_path / "run", serve=False, quiet=True)
    seen: list = []
    run._pub.hub.subscribe(seen.append)
    run.log({"loss": 1.0}, step=7)
    run.notice("lr halved")  # at the last logged step
    run.notice(42, step=9)
    run.finish()
    run.notice("after finish")  # ignored, as log() after finish()
    assert [e.text for e in seen if isinstance(e, ev.Notice)] == ["lr halved", "42"]
    texts = [r for r in RunDir(tmp_path / "run").read_metrics() if r.get("event") == "text"]
    assert [(r["step"], r["text"]) for r in texts] == [(7, "lr halved"), (9, "42")]
    NullRun().notice("on another rank: nothing")


# -- how the loop ended ----------------------------------------------------------------------
@pytest.mark.parametrize("ending, state, error", [
    ("run = gantui.init(out=OUT)\nrun.log({'a': 1.0})\nraise KeyboardInterrupt", "stopped", None),
    ("with gantui.init(out=OUT) as run:\n    run.log({'a': 1.0})\n    raise KeyboardInterrupt", "stopped", None),
    ("run = gantui.init(out=OUT)\nrun.log({'a': 1.0})\nsys.exit(1)", "error", "SystemExit: 1"),
    ("with gantui.init(out=OUT) as run:\n    sys.exit('bad data')", "error", "SystemExit: bad data"),
    ("run = gantui.init(out=OUT)\nrun.log({'a': 1.0})\nsys.exit(0)", "done", None),
    # a sys.exit caught, and the loop went on: not how the script ended
    ("run = gantui.init(out=OUT)\ntry:\n    sys.exit(2)\nexcept SystemExit:\n    pass\nrun.log({'a': 1.0})", "done", None),
    ("run = gantui.init(out=OUT)\ntry:\n    sys.exit(2)\nexcept SystemExit:\n    pass\nrun.log({'a': 1.0})\nsys.exit(3)",
     "error", "SystemExit: 3"),
])
def test_ctrl_c_is_stopped_and_a_failing_exit_an_error(tmp_path, ending, state, error):
    script(tmp_path, ending)
    status = RunDir(tmp_path / "run").read_status()
    assert (status["state"], status.get("error")) == (state, error)


def test_a_real_ctrl_c_in_a_loop_records_the_run_as_stopped(tmp_path):
    code = f"import gantui\nrun = gantui.init(out={str(tmp_path / 'run')!r})\n" + textwrap.dedent("""
        step = 0
        while step < 10**9:
            step += 1
            run.log({"a": 1.0}, step=step)
            if step == 1:
                print("ready", flush=True)
    """)
    proc = popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in err
    assert RunDir(tmp_path / "run").read_status()["state"] == "stopped" and released(tmp_path / "run")


# -- wide rows ---------------------------------------------------------------------------
def test_the_first_log_of_an_interval_is_linear_in_its_keys(tmp_path, monkeypatch):
    """Per-layer norms of a large model: 20,000 keys, each new to the interval. Timed against a plain
    Python pass over the same row (as wide, as cold in the caches), not against the clock."""
    keys = 20_000
    row = {f"layer{i}/grad_norm": 0.5 for i in range(keys)}

    def plain_pass() -> None:
        counts: dict[str, int] = {}
        for key, value in row.items():
            if key not in counts:
                counts[key] = 1
            counts[key] += value > 0

    from gantui.run import combine

    monkeypatch.setattr(combine, "COMBINE_INTERVAL", 3600.0)  # no row falls due: rows go out at flush() alone
    run = gantui.init(out=tmp_path / "run", serve=False, quiet=True)
    ratios = []
    for step in range(1, 7, 2):
        run.log(row, step=step)
        run.flush()  # that row out and written (its encoding would hold the GIL through the timing):
        began = time.perf_counter()  # the next call starts an interval, every key new to it
        run.log(row, step=step + 1)
        took = time.perf_counter() - began
        began = time.perf_counter()
        plain_pass()
        ratios.append(took / (time.perf_counter() - began))
    run.finish()
    assert min(ratios) < 50, ratios  # quadratic: about 1,000 times a plain pass


def test_history_of_wide_rows_is_bounded_by_its_values():
    history = History()
    for step in range(1, 3001):
        history.append({"step": step, **{f"k{i}": 0.5 for i in range(1000)}})
    kept = list(history)
    assert sum(len(r) for r in kept) <= 200_000 and kept[0]["step"] == 1  # 3 million values held before and kept[-1]["step"] == 3000
    assert [r["step"] for r in kept] == sorted(r["step"] for r in kept)
    narrow = History(({"step": s, "loss": 0.5} for s in range(1, 3001)))
    assert len(narrow) == 2000  # a narrow run keeps its rows as before


# -- threads, devices, forks -------------------------------------------------------------
def test_log_from_several_threads_counts_every_call(tmp_path, monkeypatch):
    from gantui.run import combine

    monkeypatch.setattr(combine, "COMBINE_INTERVAL", 0.0)  # a row at every call: the most room for a race
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between any two bytecodes: a race shows at once
    errors, calls, counted = [], 1500, []

    def work(run, name: str) -> None:
        try:
            for _ in range(calls):
                run.log({"shared": 1.0, f"only_{name}": 1.0, f"also_{name}": 2.0})
        except Exception as err:  # noqa: BLE001 (what the thread met is the finding)
            errors.append(repr(err))

    try:
        for round in range(3):
            out = tmp_path / f"run{round}"
            run = gantui.init(out=out, serve=False, quiet=True)
            threads = [threading.Thread(target=work, args=(run, str(i))) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            run.finish()
            got = rows(out)
            counted.append((sum(r["steps"] for r in got), max(r["step"] for r in got)))
    finally:
        sys.setswitchinterval(old)
    assert errors == [] and counted == [(4 * calls, 4 * calls)] * 3


def test_a_device_without_float64_sums_in_float32(tmp_path, monkeypatch):
    """Apple's MPS has no float64 (pytorch#122602); no MPS here, so the CPU is made to refuse it
    as MPS does and its tensors take the device path."""
    from gantui.run import combine

    real_zeros = torch.zeros

    def zeros(*args, dtype=None, device=None, **kwargs):
        if dtype == torch.float64:
            raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64")
        return real_zeros(*args, dtype=dtype, device=device, **kwargs)

    monkeypatch.setattr(torch, "zeros", zeros)
    monkeypatch.setattr(combine, "READ_CPU_AT_ONCE", False)
    monkeypatch.setattr(combine, "NO_FLOAT64", ("cpu", "mps"), raising=False)
    run = gantui.init(out=tmp_path / "run", serve=False, quiet=True)
    for step in range(1, 5):
        run.log({"loss": torch.tensor(float(step), dtype=torch.float16)}, step=step)
    run.finish()
    got = rows(tmp_path / "run")
    assert sum(r["steps"] for r in got) == 4 and got[-1]["step"] == 4
    assert sum(r["loss"] * r["steps"] for r in got) == 10.0
    assert combine.sum_dtype("mps") == torch.float32 and combine.sum_dtype("cuda") == torch.float64


def test_a_forked_worker_that_outlives_the_run_does_not_hold_it(tmp_path):
    done = script(tmp_path, """
        from gantui.run.rundir import RunDir
        from gantui.run.runs import run_state
        run = gantui.init(out=OUT, quiet=True)
        run.log({"a": 1.0})
        r, w = os.pipe()
        child = os.fork()  # a DataLoader worker, started by fork
        if child == 0:
            os.close(w)
            os.read(r, 1)  # lives until the parent lets it go
            os._exit(0)
        os.close(r)
        run.finish()
        print(run_state(RunDir(OUT)), RunDir(OUT).is_locked(), os.waitpid(child, os.WNOHANG)[0] == 0)
        os.write(w, b"x")
        os.waitpid(child, 0)
    """)
    assert done.stdout.split() == ["done", "False", "True"], done.stderr


# -- the file and the watchers -------------------------------------------------------------
def test_a_cut_last_line_does_not_swallow_the_next_row(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')  # a killed process
    run = gantui.init(out=out, serve=False, quiet=True)
    run.log({"loss": 0.25}, step=3)
    run.finish()
    assert [r["step"] for r in rows(out)] == [1, 3]


@pytest.mark.parametrize("device_path", [False, True])
def test_a_loop_gone_quiet_has_its_last_row_written_and_sent(tmp_path, monkeypatch, device_path):
    """A burst of steps, then the loop does something else: its last row reaches the file and the
    watchers without another log() (`device_path`: tensors summed as on a GPU, read by the run's thread)."""
    from gantui.run import combine

    monkeypatch.setattr(combine, "READ_CPU_AT_ONCE", not device_path)
    out, steps = tmp_path / "run", 20_000
    run = gantui.init(out=out, serve=False, quiet=True)
    seen = []
    run._pub.hub.subscribe(lambda e: seen.append(e.row["step"]) if isinstance(e, ev.Metrics) else None)
    value = torch.tensor(0.5) if device_path else 0.5
    for step in range(1, steps + 1):
        run.log({"loss": value}, step=step)
    last_log = time.monotonic()
    try:
        wait_until(lambda: seen and seen[-1] == steps, timeout=20, what="the last row sent")
        wait_until(lambda: os.path.getsize(out / "metrics.jsonl") and rows(out)[-1]["step"] == steps, timeout=20,
                   what="the last row in metrics.jsonl")
        # the "within a second" of quiet: 3 s leaves a loaded machine room, and a row that
        # waited for the next log() (or finish) would never come
        assert time.monotonic() - last_log < 3, time.monotonic() - last_log
        assert sum(r["steps"] for r in rows(out)) == steps
    finally:
        run.finish()


def test_a_second_init_finishes_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    first = gantui.init(out=out, quiet=True)
    first.log({"loss": 1.0}, step=1)
    second = gantui.init(out=out, quiet=True)  # the same cell run again
    try:
        err = capsys.readouterr().err
        assert err.count("gantui: ") == 1 and f"the previous run is finished ({out})" in err
        assert type(second).__name__ == "Run" and RunDir(out).is_locked()
        assert RunDir(out).read_status()["state"] == "training"
    finally:
        second.finish()
    assert first._pub.closed and RunDir(out).read_status()["state"] == "done"
