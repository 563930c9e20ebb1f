"""`gantui compare` in a terminal: its look at 80x24 and 160x48 (runs written by hand, the same
every time), its keys (figure, smoothing, axis, baseline, sort, scrubbing every run's samples
together), and steering a live run from it: paused, then stopped with y."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from gantui.run.rundir import RunDir
from gantui.ui.compare.app import CompareApp
from support import NEVER, start, wait_for, wait_until, write_run


def three_runs(root) -> list[RunDir]:
    return [write_run(root / "ns", {"loss": "ns", "lr": 2e-4}, fid=300.0, seed=0),
            write_run(root / "hinge", {"loss": "hinge", "lr": 2e-4, "spectral_norm": True}, fid=200.0, seed=1,
                      grids=(10, 20)),
            write_run(root / "lsgan", {"loss": "lsgan", "lr": 1e-4, "batch_size": 32}, fid=250.0, seed=2,
                      grids=(20, 40))]


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.pause()


def test_compare_view_80x24(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert snap_compare(CompareApp(three_runs(tmp_path)), terminal_size=(80, 24), run_before=settle)


def test_compare_view_160x48(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert snap_compare(CompareApp(three_runs(tmp_path)), terminal_size=(160, 48), run_before=settle)


def cells(app: CompareApp) -> list[list[str]]:
    table = app.query_one("#board")
    return [[str(c) for c in table.get_row_at(r)] for r in range(table.row_count)]


async def test_keys_change_the_figure_the_axis_the_baseline_the_order_and_the_samples(tmp_path):
    app = CompareApp(three_runs(tmp_path))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        board = cells(app)
        assert [row[1] for row in board] == ["ns", "hinge *", "lsgan"]  # the lowest FID marked
        header = [str(c.label) for c in app.query_one("#board").columns.values()]
        assert header[7:] == ["batch_size", "loss", "lr", "spectral_norm"]  # only what differs
        chart = app.query_one("#curve")
        assert chart.key == "loss_g"
        await pilot.press("m")
        assert chart.key == "loss_d"
        await pilot.press("z")
        assert chart.weight == 0.9
        xs, _ = app.tracks[2].series("loss_d", "steps")
        await pilot.press("a")
        assert chart.axis == "images"
        assert app.tracks[2].series("loss_d", "images")[0] == [x * 32 for x in xs]  # its batch is 32
        await pilot.press("a")
        assert app.tracks[2].series("loss_d", "time")[0][:2] == [0.0, 6.0]  # seconds since its first row
        await pilot.press("b")  # the selected run (ns) pinned: the others' figures as differences
        board = cells(app)
        assert board[0][1] == "ns (base)" and board[1][4] == f"{200 * 0.8 ** 4 - 300 * 0.8 ** 4:+.2f}"
        await pilot.press("o")  # sorted by best FID
        assert [row[1].split()[0] for row in cells(app)] == ["hinge", "lsgan", "ns"]
        samples = lambda: [box.border_subtitle for box in app.query(".sample")]  # noqa: E731
        assert samples() == ["step 40", "step 20", "step 40"]
        await pilot.press("left")  # every run together, to the grid at or before step 30
        assert samples() == ["step 30", "step 20", "step 20"]
        await pilot.press("left", "left", "left")
        assert samples() == ["step 10", "step 10", ""]  # lsgan saved none that early
        await pilot.press("end")
        assert samples() == ["step 40", "step 20", "step 40"]


async def test_a_live_run_is_followed_here_and_through_the_relay_paused_and_stopped(tmp_path, monkeypatch):
    """The same live run twice: from its directory, and as HOST:RUN through `ssh HOST gantui relay
    RUN` (a local stand-in for ssh that runs the command as sshd does). Paused through the relay,
    stopped (y) from its directory; both rows follow."""
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text('#!/bin/sh\nshift\nexec sh -c "$*"\n')
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("GANTUI_SSH", str(fake_ssh))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # where `gantui` is
    finished = write_run(tmp_path / "done", {"loss": "ns"})
    out = tmp_path / "live"
    live = start(out, "--steps", NEVER, "--eval-every", "0", "--sample-every", "4")
    try:
        wait_until(lambda: RunDir(out).read_status().get("state") == "training", 120, "the live run")
        app = CompareApp([finished, RunDir(out), f"somehost:{out}"], poll=0.1)
        async with app.run_test(size=(120, 40)) as pilot:
            here, relayed = app.tracks[1], app.tracks[2]
            await wait_for(pilot, lambda: relayed.state == "training" and relayed.rows and relayed.grids)
            assert relayed.config["loss"] == "ns" and relayed.name == "live"
            await pilot.press("down", "down")  # the relayed run selected
            assert app.selected() == 2
            await pilot.press("space")
            await wait_for(pilot, lambda: here.state == "paused" and relayed.state == "paused")
            await pilot.press("space")
            await wait_for(pilot, lambda: here.state == "training" and relayed.state == "training")
            await pilot.press("up")  # the same run, from its directory
            await pilot.press("x")
            await pilot.press("y")
            await wait_for(pilot, lambda: here.state == "stopped" and relayed.state == "stopped")
            assert [row[2] for row in cells(app)] == ["done", "stopped", "stopped"]
            box = list(app.query(".sample"))[2]
            assert box.border_subtitle.startswith("step ")  # its preview, sent through the relay
        assert live.wait(60) == 0
        assert RunDir(out).last.exists()  # it saved first
    finally:
        if live.poll() is None:
            live.kill()
