from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from gantui.engine.checkpoint import load_checkpoint
from support import make_app, wait_for


def long_run(tiny_config):
    return tiny_config(steps=1_000_000, save_every=1_000_000, sample_every=1_000_000)


async def test_space_pauses_and_resumes(tiny_config):
    app = make_app(long_run(tiny_config))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.trainer.step >= 3)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.link.hub.state == "paused")  # the trainer's Paused event
        stopped_at = app.trainer.step
        await pilot.pause(0.5)  # a window, not a wait: nothing may train in it (a CPU step takes a few ms)
        assert app.trainer.step == stopped_at
        assert "PAUSED" in str(app.status_line.render())
        await pilot.press("space")
        await wait_for(pilot, lambda: app.trainer.step >= stopped_at + 3)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.link.hub.state == "paused")
        await pilot.press("q")
        await wait_for(pilot, lambda: app.finished is not None)  # the save, then the exit
    assert app.return_code == 0


async def test_s_writes_a_checkpoint_and_r_changes_the_preview(tiny_config):
    config = long_run(tiny_config)
    app = make_app(config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.preview_pane.images is not None)
        await pilot.press("space")  # paused, so the preview changes only through r
        await wait_for(pilot, lambda: app.link.hub.state == "paused")
        before = app.preview_pane.images
        await pilot.press("r")
        await wait_for(pilot, lambda: app.preview_pane.images is not before)
        assert not np.array_equal(before, app.preview_pane.images)
        await pilot.press("s")
        # The checkpoint is written in the background, the grid by the run's writer: wait for last.pt
        # to be the step's checkpoint (it exists from the start-up checkpoint on), and for the grid.
        run_dir, step = app.trainer.run_dir, app.trainer.step
        saved = run_dir.checkpoint_path(step)
        await wait_for(pilot, lambda: saved.exists() and os.path.samefile(saved, run_dir.last))
        await wait_for(pilot, run_dir.sample_path(step).exists)
        assert load_checkpoint(app.trainer.run_dir.last)["step"] == app.trainer.step
        assert list(app.trainer.run_dir.samples.glob("*.png"))
        await pilot.press("q")


async def test_q_saves_then_exits(tiny_config):
    app = make_app(long_run(tiny_config))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.trainer.step >= 2)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_code == 0
    state = load_checkpoint(app.trainer.run_dir.last)
    assert state["step"] == app.trainer.step >= 2


async def test_help_screen_and_too_small_terminal(tiny_config):
    app = make_app(long_run(tiny_config))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ != "HelpScreen")
        await pilot.resize_terminal(60, 20)
        await wait_for(pilot, lambda: app.screen.has_class("too-small"))
        assert "Terminal too small" in str(app.query_one("#too-small").render())
        await pilot.resize_terminal(200, 60)
        await wait_for(pilot, lambda: not app.screen.has_class("too-small"))
        await wait_for(pilot, lambda: app.link.hub.wanted >= 9)  # a big pane asks for more digits
        await pilot.press("q")


async def test_a_flood_of_metrics_rows_is_painted_at_most_once_a_second():
    """At GPU speed rows come every few milliseconds: the panes get them all, in a few repaints."""
    from gantui.ui.demo import ScriptedEngine, scripted_app

    from gantui.run import events as ev
    from gantui.common import HISTORY
    from gantui.ui.app import METRICS_INTERVAL

    rows = 3 * HISTORY

    class Flood(ScriptedEngine):
        go = threading.Event()  # set once the test counts the repaints

        def run(self) -> ev.Finished:
            self.go.wait(60)
            self.emit(ev.Started(run_dir="run", device="cuda", step=0, total_steps=10**6, steps_per_epoch=937,
                                 config={}))
            for i in range(1, rows + 1):
                self.emit(ev.Metrics({"step": 10 * i, "epoch": 1, "loss_g": float(i), "loss_d": 1.0, "d_real": 0.5,
                                      "d_fake": 0.5, "acc_real": 0.5, "acc_fake": 0.5, "images_per_s": 1e5}))
            self._stop.wait(60)
            return ev.Finished("stopped", self.step)

    app = scripted_app(Flood, clock=time.monotonic)
    async with app.run_test(size=(120, 40)) as pilot:
        paints = 0
        add = app.loss_pane.add

        def counting_add(batch):
            nonlocal paints
            paints += 1
            add(batch)

        app.loss_pane.add = counting_add
        start = pilot.app.clock()
        Flood.go.set()
        g_loss = app.loss_pane.lines[0]
        await wait_for(pilot, lambda: g_loss.values and g_loss.values[-1] == rows)
        elapsed = pilot.app.clock() - start
        assert len(g_loss.values) == HISTORY and list(g_loss.values)[:2] == [rows - HISTORY + 1, rows - HISTORY + 2]
        assert paints <= elapsed / METRICS_INTERVAL + 2, (paints, elapsed)
        await pilot.press("q")


def test_previews_are_spaced_out_while_they_cost_more_than_the_budget():
    """One pacer: the trainer's time generating previews plus the in-process UI's CPU count
    against the budget; the interval widens while they exceed it and comes back when they do not."""
    from gantui.run.hub import Pacer

    now = [0.0]
    pacer = Pacer(floor=1.0, budget=0.02, ceiling=8.0, clock=lambda: now[0])
    assert pacer.due()
    now[0] += 1.0
    pacer.spent(4 * 0.02 * 1.0)  # previews and the UI took four times the budget over that second
    pacer.adapt()
    assert pacer.interval == 1.5 and not pacer.due()
    now[0] += 1.4
    assert not pacer.due()
    now[0] += 0.2
    assert pacer.due()
    for _ in range(10):  # costly for a while: capped at the ceiling
        now[0] += pacer.interval
        pacer.spent(pacer.interval)
        pacer.adapt()
    assert pacer.interval == 8.0
    for _ in range(10):  # then free: back to the floor
        now[0] += pacer.interval
        pacer.adapt()
    assert pacer.interval == 1.0


def test_a_headless_run_nobody_watches_generates_no_previews(tiny_config):
    from gantui.session import Session

    session = Session(tiny_config(steps=12), serve=False)
    previews = []
    session.hub.subscribe(lambda e: previews.append(e) if type(e).__name__ == "Preview" else None)  # shows none
    session.start()
    assert session.wait().reason == "done"
    assert previews == []


async def test_what_another_terminal_does_this_one_is_told():
    from gantui.ui.demo import ScriptedEngine, scripted_app

    from gantui.run import events as ev

    class Pausable(ScriptedEngine):
        def pause(self) -> None:
            self.emit(ev.Paused(True, self.step))

    app = scripted_app(Pausable, clock=time.monotonic)
    hub = app.link.hub
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.started is not None)
        other = hub.subscribe(lambda event: None)  # a watcher elsewhere
        hub.command(other, {"cmd": "pause"})
        await wait_for(pilot, lambda: app.paused)
        assert any("paused from another terminal" in n.message for n in app._notifications)
        assert "PAUSED" in str(app.status_line.render())
        await pilot.press("q")


async def test_an_event_arriving_while_the_dashboard_closes_is_dropped():
    """The run goes on after a detach or a quit: its last events can reach a dashboard whose screens
    are already gone, and must not raise there."""
    from gantui.ui.demo import scripted_app

    from gantui.run import events as ev
    from gantui.ui.messages import message_for

    app = scripted_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.started is not None)
    assert app.screen_stack == []  # what the closing app looks like when the event lands
    app.on_engine_event(message_for(ev.Finished("stopped", 5, checkpoint="last.pt")))
    assert app.finished is None


async def test_t_opens_the_settings_form_which_checks_and_applies_at_a_step_boundary(tiny_config):
    from gantui.ui.widgets.settings_screen import SettingsScreen
    from textual.widgets import Input

    app = make_app(long_run(tiny_config))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.started is not None and app.trainer.step >= 3)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        field = app.screen.query_one("#lr_g", Input)
        assert field.value == "0.0002"  # the run's current value
        field.value = "2"
        await pilot.press("enter")
        refusal = "--lr-g must be between 0 and 1, got 2.0"
        await wait_for(pilot, lambda: refusal in str(app.screen.query_one("#settings-error").render()))
        assert isinstance(app.screen, SettingsScreen)  # refused, with the flag's own message
        field.value = "0.0001"
        app.screen.query_one("#d_steps", Input).value = "2"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        await wait_for(pilot, lambda: app.trainer.gan.live.lr_g == 1e-4)
        assert app.trainer.gan.opt_g.param_groups[0]["lr"] == 1e-4 and app.trainer.gan.live.d_steps == 2
        assert app.trainer.gan.opt_d.param_groups[0]["lr"] == 2e-4  # untouched
        sets = [r for r in app.trainer.run_dir.read_metrics() if r.get("event") == "set"]
        assert len(sets) == 1 and sets[0]["values"] == {"lr_g": 1e-4, "d_steps": 2}
        await wait_for(pilot, lambda: app.loss_pane.lines[0].marks == [sets[0]["step"]])
        await wait_for(pilot, lambda: app.loss_pane.lines[0].spark.marks != [])  # drawn once rows pass it
        await pilot.press("q")
        await wait_for(pilot, lambda: app.finished is not None)  # the save, then the exit
    assert app.return_code == 0
    assert load_checkpoint(app.trainer.run_dir.last)["config"]["lr_g"] == 1e-4


@pytest.mark.parametrize("announced, producer", [("loop", "gantui"), ("trainer", "loop")])
async def test_the_dashboard_reads_what_a_run_can_do_from_its_capabilities_not_its_producer(announced, producer):
    """A run announces its capabilities; the keys, the panes and the status line follow them
    whoever produced it (a producer named otherwise changes nothing)."""
    from gantui.ui.demo import ScriptedEngine, scripted_app

    from gantui.run import events as ev
    from gantui.run.protocol import decode, encode
    from gantui.common import Line, Pane

    can = ev.LOOP if announced == "loop" else ev.Capabilities()
    # a run from before runs announced them (a replay, an older server): its producer's
    assert ev.Capabilities.read(None, "loop") == ev.LOOP and ev.Capabilities.read(None, "gantui") == ev.Capabilities()

    class Announcing(ScriptedEngine):
        def run(self) -> ev.Finished:
            rows = [{"step": 10 * i, "epoch": 1, "a": 1.0 / i, "b": 2.0, "c": 3.0, "images_per_s": 640.0}
                    for i in range(1, 31)]
            schema = [Pane(name, (Line(name, name, ".3f"),)) for name in ("a", "b", "c")]
            started = ev.Started(run_dir="run", device="cpu", step=300, total_steps=900, steps_per_epoch=100,
                                 config={"batch_size": 64}, history=rows, epoch=2, schema=schema,
                                 tunable={"lr": 0.1}, capabilities=can, producer=producer)
            self.emit(decode(encode(started)))  # as a watcher gets it over the socket
            self._stop.wait(60)
            return ev.Finished("stopped", self.step)

    app = scripted_app(Announcing)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.started is not None)
        await pilot.pause()
        assert app.started.capabilities == can
        assert app.check_action("resample", ()) is can.resample
        assert app.quality_pane.display is can.evaluates
        assert len(app.metric_panes) == (3 if announced == "loop" else 2)  # a loop's every pane; the trainer's two
        assert ("epoch" in str(app.status_line.render())) is can.epochs
        app.link.hub.publish(ev.Settings(310, {"lr_g": 1e-4}))  # a change, once the dashboard follows the run
        await wait_for(pilot, lambda: any("set at step 310" in n.message for n in app._notifications))
        said = next(n.message for n in app._notifications if "set at step 310" in n.message)
        assert said == ("set at step 310: G learning rate 0.0001" if can.recipe else "set at step 310: lr_g 0.0001")
        await pilot.press("q")


async def test_the_form_shows_the_live_settings_the_run_announces_a_penalty_unknown_here_included():
    """A watcher in a process without the run's own penalty registered still shows and sends it
    (the run checks it by its own rule); a penalty off since the start is shown, locked."""
    from textual.widgets import Input

    from gantui.config import live_settings
    from gantui.run import events as ev
    from gantui.run.protocol import decode, encode
    from gantui.ui.demo import ScriptedEngine, scripted_app
    from gantui.ui.widgets.settings_screen import SettingsScreen

    sent = []

    class Announcing(ScriptedEngine):
        def run(self) -> ev.Finished:
            started = ev.Started(run_dir="run", device="cpu", step=300, total_steps=900, steps_per_epoch=100,
                                 config={"batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4, "d_steps": 1, "gp": 0.0,
                                         "r1": 0.0, "ema": 0.0, "drift": 0.001},
                                 settings={**live_settings(), "drift": "drift weight"}, locked=["r1"])
            self.emit(decode(encode(started)))  # as a watcher gets it over the socket
            self._stop.wait(60)
            return ev.Finished("stopped", self.step)

        def set(self, values):
            sent.append(values)

    app = scripted_app(Announcing)
    app.link.hub.check_set = dict  # the run's own rule: here, any
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.started is not None)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        drift, r1 = app.screen.query_one("#drift", Input), app.screen.query_one("#r1", Input)
        assert drift.value == "0.001" and not drift.disabled and r1.disabled
        drift.value = "0.002"
        await pilot.press("enter")
        await wait_for(pilot, lambda: sent == [{"drift": 0.002}])
        app.trainer.stop()
