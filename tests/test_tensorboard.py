"""The TensorBoard drop-in: SummaryWriter code runs in gantui by changing one import, written as
people write it (no global_step, no close(), histograms, hyperparameters, figures)."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from gantui.run.rundir import RunDir
from gantui.run.runs import run_state
from support import run_process


def curves(run: RunDir) -> list[dict]:
    return [r for r in run.read_metrics() if "event" not in r]


def test_summary_writer_code_runs_in_gantui_by_changing_its_import(tmp_path, capsys):
    from gantui.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path / "tb")
    assert writer.log_dir == str(tmp_path / "tb")
    for step in range(1, 31):
        writer.add_scalar("Loss/D", torch.tensor(1.0 / step), step)
        writer.add_scalar("Loss/G", 2.0 * step, step)
        writer.add_scalars("D", {"x": 0.75, "G_z": torch.tensor(0.25)}, step)
        if step % 10 == 0:
            writer.add_image("fake", torch.rand(3, 40, 40), step)  # a make_grid of the batch: CHW
            writer.add_images("batch", torch.rand(4, 32, 32, 3), step, dataformats="NHWC")
    writer.add_text("note", "lr halved", 30)
    writer.add_graph(torch.nn.Linear(2, 2), torch.zeros(1, 2))  # not shown: ignored with a warning
    writer.add_graph(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="'Loss/D' is a str"):
        writer.add_scalar("Loss/D", "high", 31)
    writer.close()
    assert capsys.readouterr().err.count("add_graph is not shown") == 1
    run = RunDir(tmp_path / "tb")
    rows = run.read_metrics()
    points = curves(run)
    assert [r["step"] for r in points][0] == 1 and points[-1]["step"] == 30
    last = points[-1]  # the steps of a fast loop are combined: each figure their mean
    assert set(last) >= {"Loss/D", "Loss/G", "D/x", "D/G_z"} and last["D/x"] == 0.75
    assert last["Loss/G"] == sum(2.0 * s for s in range(31 - last["steps"], 31)) / last["steps"]
    assert any(r.get("event") == "text" and r["text"] == "lr halved" for r in rows)
    assert [step for step, _ in run.grids()] == [10]  # one grid per interval (10 s)
    assert run_state(run) == "done"
    assert [p["title"] for p in run.read_config()["schema"]] == ["Loss", "D"]


def test_add_text_is_a_text_row_and_a_notice_to_the_watchers(tmp_path):
    from gantui.run import events as ev
    from gantui.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path / "tb")
    seen: list = []
    writer.run._pub.hub.subscribe(seen.append)
    writer.add_scalar("loss", 1.0, 3)
    writer.add_text("note", "lr halved", 3)
    writer.close()
    writer.add_text("note", "after close", 4)  # ignored, as every call after close()
    assert [e.text for e in seen if isinstance(e, ev.Notice)] == ["note: lr halved"]
    texts = [r for r in RunDir(tmp_path / "tb").read_metrics() if r.get("event") == "text"]
    assert [(r["step"], r["tag"], r["text"]) for r in texts] == [(3, "note", "lr halved")]


NO_STEPS = textwrap.dedent("""
    import sys
    from gantui.tensorboard import SummaryWriter

    writer = SummaryWriter(sys.argv[1])
    for i in range(50):  # as many scripts write it: no global_step, and no close() at the end
        writer.add_scalar("loss/D", float(i))
        writer.add_scalar("loss/G", 100.0 + i)
    writer.add_scalar("accuracy", 0.5)  # once, at the last iteration's step
""")


TRAIN_AND_VAL = textwrap.dedent("""
    import sys
    from gantui.tensorboard import SummaryWriter

    train = SummaryWriter(sys.argv[1] + "/train")  # the usual pair: one writer per split
    val = SummaryWriter(sys.argv[1] + "/val")
    for step in range(1, 6):
        train.add_scalar("loss", 1.0 / step, step)
        val.add_scalar("acc", step / 10, step)
    train.close()  # val is left to the script's exit
""")


def test_a_train_and_a_val_writer_in_one_process_are_two_runs_that_each_keep_their_rows(tmp_path):
    script, out = tmp_path / "tb.py", tmp_path / "tb"
    script.write_text(TRAIN_AND_VAL)
    proc = run_process([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "init() again" not in proc.stderr  # the second writer finishes nothing
    for split, key in (("train", "loss"), ("val", "acc")):
        run = RunDir(out / split)
        points = curves(run)
        assert sum(r["steps"] for r in points) == 5 and points[-1]["step"] == 5 and key in points[-1], split
        assert run_state(run) == "done"
        assert run.read_status()["step"] == 5, split


def test_calls_without_a_step_are_each_a_point_and_reach_the_file_at_exit_without_close(tmp_path):
    script, out = tmp_path / "tb.py", tmp_path / "tb"
    script.write_text(NO_STEPS)
    proc = run_process([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run = RunDir(out)
    points = curves(run)
    # a fast loop's points are combined into rows (each key the mean of its calls, `steps` how many)
    assert sum(r["steps"] for r in points) == 50
    assert sum(r["loss/D"] * r["steps"] for r in points) == pytest.approx(sum(range(50)))
    assert sum(r["loss/G"] * r["steps"] for r in points) == pytest.approx(sum(100.0 + i for i in range(50)))
    assert points[0]["step"] == 0 and points[-1]["step"] == 49  # an iteration's D and G: one step
    assert points[-1]["accuracy"] == 0.5
    assert run_state(run) == "done"


class Canvas:
    """What a matplotlib figure's Agg canvas gives (matplotlib is not needed for the test)."""

    def draw(self) -> None:
        self.drawn = True

    def buffer_rgba(self) -> np.ndarray:
        pixels = np.zeros((30, 40, 4), np.uint8)
        pixels[..., 0], pixels[..., 3] = 200, 255
        return pixels


class Figure:
    def __init__(self) -> None:
        self.canvas = Canvas()


def test_histograms_hyperparameters_figures_and_the_log_dir_and_nothing_after_close(tmp_path, capsys):
    from gantui.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path / "tb")
    assert writer.get_logdir() == str(tmp_path / "tb")
    writer.add_figure("figure", Figure(), 1)
    writer.add_histogram("G/weight", torch.arange(10.0), 1)
    writer.add_histogram("D/weight", np.array([1.0, 3.0]), 1)
    writer.add_hparams({"lr": 2e-4, "batch": torch.tensor(64), "loss": "hinge"}, {"hparam/fid": 31.5}, global_step=1)
    writer.add_figure("figure", "a plot", 2)  # not a figure: one warning naming the call
    writer.add_figure("figure", object(), 2)
    writer.add_scalar("x", 1.0)  # no step: the current one (1)
    writer.add_scalar("x", 2.0)  # the next (2)
    writer.close()
    writer.add_scalar("after", 1.0, 3)  # after close(): ignored, as log() after finish()
    writer.add_histogram("after", torch.ones(3), 3)
    writer.add_hparams({"after": 1}, {"after": 1.0})
    writer.add_figure("after", Figure(), 3)
    writer.flush()
    writer.close()
    assert capsys.readouterr().err.count("add_figure") == 1
    run = RunDir(tmp_path / "tb")
    first, second = curves(run)
    assert first["step"] == 1 and second["step"] == 2 and second["x"] == 2.0
    assert [first[f"G/weight/{k}"] for k in ("mean", "min", "max")] == [4.5, 0.0, 9.0]
    assert first["G/weight/std"] == pytest.approx(float(np.arange(10.0).std()))
    assert [first[f"D/weight/{k}"] for k in ("mean", "std", "min", "max")] == [2.0, 1.0, 1.0, 3.0]
    assert first["hparam/fid"] == 31.5 and first["x"] == 1.0
    assert run.read_config()["config"] == {"lr": 2e-4, "batch": 64, "loss": "hinge"}
    assert [step for step, _ in run.grids()] == [1]  # the figure, as an image
    assert not any("after" in key for row in run.read_metrics() for key in row)
    assert run_state(run) == "done"
