"""`gantui gif` and `gantui interpolate`, in fresh processes; the files read back."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from gantui.engine.sample import slerp
from gantui.cli.film import LABEL_HEIGHT
from support import gantui, wait_for


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("film") / "run"
    done = gantui("--no-ui", "--device", "cpu", "--steps", "40", "--batch-size", "16", "--sample-every", "10",
                  "--eval-every", "0", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def frames(path) -> list[np.ndarray]:
    with Image.open(path) as image:
        found = []
        for i in range(image.n_frames):
            image.seek(i)
            found.append(np.asarray(image.convert("RGB")))
        return found


def test_gif_has_a_labelled_frame_per_grid(run, tmp_path):
    done = gantui("gif", str(run), "--out", str(tmp_path / "progress.gif"), "--fps", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote 4 frames (10 to 40) to {tmp_path / 'progress.gif'}"
    got = frames(tmp_path / "progress.gif")
    grid = Image.open(run / "samples" / "step-00000010.png")
    assert len(got) == 4 and got[0].shape == (grid.height + LABEL_HEIGHT, grid.width, 3)
    with Image.open(tmp_path / "progress.gif") as image:
        assert image.info["duration"] == 200 and image.info["loop"] == 0
    strips = [f[:LABEL_HEIGHT] for f in got]
    assert all((s > 200).sum() > 30 for s in strips)  # the label's ink
    assert all(not np.array_equal(strips[0][:, :80], s[:, :80]) for s in strips[1:])  # "step 10", "step 20", ...
    assert np.abs(got[0][LABEL_HEIGHT:].astype(int) - np.asarray(grid.convert("RGB"))).max() <= 16  # the grid (palette)


def test_gif_every_k_keeps_the_last_and_webp_by_extension(run, tmp_path):
    done = gantui("gif", str(run), "--out", str(tmp_path / "progress.webp"), "--every", "3")
    assert done.returncode == 0, done.stderr
    assert "wrote 2 frames (10 to 40)" in done.stdout
    with Image.open(tmp_path / "progress.webp") as image:
        assert image.format == "WEBP" and image.n_frames == 2


@pytest.mark.parametrize("args, message", [
    (["--out", "x.mp4"], "--out x.mp4: use a .gif or .webp file name"),
    (["--out", "x.gif", "--fps", "0"], "--fps must be above 0 and at most 50, got 0"),
    (["--out", "x.gif", "--every", "0"], "--every must be a positive integer, got 0"),
])
def test_gif_refuses_bad_arguments_in_one_line(run, tmp_path, args, message):
    done = gantui("gif", str(run), *args, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == f"gantui: error: {message}"


def test_gif_of_a_run_without_grids_is_one_line(tmp_path):
    (tmp_path / "run" / "samples").mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text("{}")
    done = gantui("gif", str(tmp_path / "run"), "--out", str(tmp_path / "x.gif"), timeout=60)
    assert done.returncode == 2 and "no sample grids in samples/ yet" in done.stderr and "Traceback" not in done.stderr


def test_interpolate_writes_a_looping_walk(run, tmp_path):
    done = gantui("interpolate", str(run), "--out", str(tmp_path / "walk.gif"), "--n", "4", "--points", "3",
                  "--frames", "5")
    assert done.returncode == 0, done.stderr
    got = frames(tmp_path / "walk.gif")
    assert len(got) == 15 and got[0].shape == (2 * 30 + 2, 2 * 30 + 2, 3)  # 2x2 tiles of 28 px, 2 px apart
    assert len({f.tobytes() for f in got}) > 10  # it moves
    with Image.open(tmp_path / "walk.gif") as image:
        assert image.info["loop"] == 0
    bad = gantui("interpolate", str(tmp_path / "none.pt"), "--out", str(tmp_path / "w.gif"), timeout=60)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_slerp_goes_from_a_to_b_along_the_sphere():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    half = slerp(a, b, 0.5)
    assert torch.allclose(half.norm(), torch.tensor(3.0)) and torch.allclose(half, torch.tensor([[2.1213, 2.1213]]), atol=1e-4)


async def test_the_samples_pane_scrubs_through_a_finished_runs_grids(run):
    """`gantui watch` of a finished run: left steps back through the saved grids, right forward
    and past the newest to live, end to live; the pane's edge says which step it shows."""
    from gantui.run.rundir import RunDir
    from gantui.run.client import ReplayLink
    from gantui.run.replay import grid_tiles
    from gantui.ui.app import GanApp

    app = GanApp(ReplayLink(RunDir(run)))
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.preview_pane
        await wait_for(pilot, lambda: pane.step == 40)  # the replay's last grid is on screen
        assert pane.scrub is None
        seen = []
        for _ in range(5):
            await pilot.press("left")
            seen.append((pane.step, pane.border_subtitle))
        assert [s for s, _ in seen] == [40, 30, 20, 10, 10]  # the oldest holds
        assert seen[1][1] == "step 30 · grid 3/4, end: live"
        assert np.array_equal(pane.images, grid_tiles(run / "samples" / "step-00000010.png"))
        await pilot.press("right")
        assert pane.step == 20
        await pilot.press("end")
        assert pane.scrub is None and pane.border_subtitle == "step 40"
        await pilot.press("left", "right")
        assert pane.scrub is None  # past the newest: live


async def test_scrubbing_without_saved_grids_says_why():
    from gantui.ui.demo import scripted_app

    app = scripted_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.preview_pane.step == 1200)  # the scripted run's preview is on screen
        await pilot.press("left")
        await wait_for(pilot, lambda: any("no saved grids on this machine" in n.message for n in app._notifications))
        assert app.preview_pane.scrub is None and app.preview_pane.step == 1200
        app.trainer.stop()
