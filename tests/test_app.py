from __future__ import annotations

import numpy as np

from gantui.engine.checkpoint import load_checkpoint
from helpers import make_app, wait_for


def long_run(tiny_config):
    return tiny_config(steps=1_000_000, save_every=1_000_000, sample_every=1_000_000)


async def test_space_pauses_and_resumes(tiny_config):
    app = make_app(long_run(tiny_config))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.engine.step >= 3)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.engine.paused)
        await pilot.pause(0.5)  # the step in flight finishes
        stopped_at = app.engine.step
        await pilot.pause(1.0)
        assert app.engine.step == stopped_at
        assert "PAUSED" in str(app.status_line.render())
        await pilot.press("space")
        await wait_for(pilot, lambda: app.engine.step >= stopped_at + 3)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.paused)
        await pilot.press("q")
    assert app.return_code == 0


async def test_s_writes_a_checkpoint_and_r_changes_the_preview(tiny_config):
    config = long_run(tiny_config)
    app = make_app(config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.preview_pane.images is not None)
        await pilot.press("space")  # paused, so the preview changes only through r
        await wait_for(pilot, lambda: app.engine.paused)
        await pilot.pause(0.5)
        before = app.preview_pane.images
        await pilot.press("r")
        await wait_for(pilot, lambda: app.preview_pane.images is not before)
        assert not np.array_equal(before, app.preview_pane.images)
        await pilot.press("s")
        # The save writes the checkpoint, links last.pt to it, then writes the step's grid: wait for
        # the grid (last.pt itself exists from the start-up checkpoint on, so it cannot be waited for).
        grid = app.engine.run_dir.sample_path(app.engine.step)
        await wait_for(pilot, grid.exists)
        assert load_checkpoint(app.engine.run_dir.last)["step"] == app.engine.step
        assert list(app.engine.run_dir.samples.glob("*.png"))
        await pilot.press("q")


async def test_q_saves_then_exits(tiny_config):
    app = make_app(long_run(tiny_config))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.engine.step >= 2)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_code == 0
    state = load_checkpoint(app.engine.run_dir.last)
    assert state["step"] == app.engine.step >= 2


async def test_help_screen_and_too_small_terminal(tiny_config):
    app = make_app(long_run(tiny_config))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause(0.2)
        await pilot.resize_terminal(60, 20)
        await pilot.pause(0.3)
        assert app.screen.has_class("too-small")
        assert "Terminal too small" in str(app.query_one("#too-small").render())
        await pilot.resize_terminal(200, 60)
        await pilot.pause(0.3)
        assert not app.screen.has_class("too-small")
        await wait_for(pilot, lambda: app.engine.preview_visible >= 9)  # a big pane shows more digits
        await pilot.press("q")
