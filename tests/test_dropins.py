"""The TensorBoard drop-in: SummaryWriter code runs in gantui by changing one import."""
from __future__ import annotations

import pytest
import torch

from gantui.run.rundir import RunDir
from gantui.run.runs import run_state


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
    writer.add_histogram("weights", torch.randn(100), 30)  # not shown: ignored with a warning
    writer.add_histogram("weights", torch.randn(100), 31)
    with pytest.raises(TypeError, match="'Loss/D' is a str"):
        writer.add_scalar("Loss/D", "high", 31)
    writer.close()
    assert capsys.readouterr().err.count("add_histogram is not shown") == 1
    run = RunDir(tmp_path / "tb")
    rows = run.read_metrics()
    curves = [r for r in rows if "event" not in r]
    assert [r["step"] for r in curves][0] == 1 and curves[-1]["step"] == 30
    last = curves[-1]  # the steps of a fast loop are combined: each figure their mean
    assert set(last) >= {"Loss/D", "Loss/G", "D/x", "D/G_z"} and last["D/x"] == 0.75
    assert last["Loss/G"] == sum(2.0 * s for s in range(31 - last["steps"], 31)) / last["steps"]
    assert any(r.get("event") == "text" and r["text"] == "lr halved" for r in rows)
    assert [step for step, _ in run.grids()] == [10]  # one grid per interval (10 s)
    assert run_state(run) == "done"
    assert [p["title"] for p in run.read_config()["schema"]] == ["Loss", "D"]
