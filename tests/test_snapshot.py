"""The dashboard's look, with a scripted engine so every frame is the same."""
from __future__ import annotations

from gantui.ui.demo import CollapsingEngine, FolderEngine, ScriptedEngine, WassersteinEngine, scripted_app
from support import wait_for


async def settle(pilot) -> None:
    """Once the scripted run's history and preview are in, without the start-up notices."""
    app = pilot.app
    await wait_for(pilot, lambda: app.started is not None and app.preview_pane.images is not None)
    app.clear_notifications()
    await pilot.pause()


def test_dashboard_120x40(snap_compare):
    assert snap_compare(scripted_app(ScriptedEngine), terminal_size=(120, 40), run_before=settle)


def test_dashboard_80x24(snap_compare):
    assert snap_compare(scripted_app(ScriptedEngine), terminal_size=(80, 24), run_before=settle)


def test_dashboard_200x60(snap_compare):
    assert snap_compare(scripted_app(ScriptedEngine), terminal_size=(200, 60), run_before=settle)


def test_dashboard_mode_collapse(snap_compare):
    assert snap_compare(scripted_app(CollapsingEngine), terminal_size=(120, 40), run_before=settle)


def test_dashboard_of_a_wgan_run_follows_its_metric_schema(snap_compare):
    """The panes are the ones the run announced: critic loss, W estimate, penalty, gradient norms
    (no D(x)), the Samples pane says it shows the EMA G, and the live change is a marker."""
    assert snap_compare(scripted_app(WassersteinEngine), terminal_size=(120, 40), run_before=settle)


def test_dashboard_of_a_64x64_rgb_run_at_80x24_shows_colour_previews(snap_compare):
    """At least four 64x64 samples, downsampled, in colour; the Quality pane says why it is off."""
    assert snap_compare(scripted_app(FolderEngine), terminal_size=(80, 24), run_before=settle)


async def test_at_80x24_at_least_4_samples_of_a_64x64_rgb_run_show():
    from gantui.ui.render import layout_for

    app = scripted_app(FolderEngine)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.preview_pane.images is not None)
        await pilot.pause()  # and drawn at its size
        pane = app.preview_pane
        cols, rows, scale = layout_for(pane.content_size.width, pane.content_size.height, 64)
        assert cols * rows >= 4 and scale > 1 and pane.images.shape == (16, 64, 64, 3)
        rendered = pane.render()
        styles = {s.style for s in rendered._segments.segments if s.style}
        assert any(len({st.color.triplet.red, st.color.triplet.green, st.color.triplet.blue}) > 1 for st in styles)
        app.trainer.stop()
