"""The drop-ins: TensorBoard's SummaryWriter by changing one import, and a Lightning logger."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import torch

from gantui.run.rundir import RunDir
from gantui.run.runs import run_state
from test_watch import gantui as gantui_cli


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


LIGHTNING = textwrap.dedent("""
    import sys, torch
    from torch import nn
    import pytorch_lightning as pl
    from gantui.lightning import GantuiLogger

    class GAN(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.save_hyperparameters({"lr": 2e-4, "z": 8})
            self.G = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 64), nn.Tanh())
            self.D = nn.Sequential(nn.Linear(64, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))

        def training_step(self, batch, index):
            opt_g, opt_d = self.optimizers()
            real = batch[0]
            fake = self.G(torch.randn(len(real), 8))
            bce = nn.functional.binary_cross_entropy_with_logits
            loss_d = bce(self.D(real), torch.ones(len(real), 1)) + bce(self.D(fake.detach()), torch.zeros(len(real), 1))
            opt_d.zero_grad(); self.manual_backward(loss_d); opt_d.step()
            loss_g = bce(self.D(fake), torch.ones(len(real), 1))
            opt_g.zero_grad(); self.manual_backward(loss_g); opt_g.step()
            self.log_dict({"loss/D": loss_d, "loss/G": loss_g})
            if index % 5 == 0:
                self.logger.log_images(fake.view(-1, 1, 8, 8), step=self.global_step)

        def configure_optimizers(self):
            return [torch.optim.Adam(self.G.parameters(), 2e-4), torch.optim.Adam(self.D.parameters(), 2e-4)]

        def train_dataloader(self):
            data = torch.utils.data.TensorDataset(torch.rand(512, 64) * 2 - 1)
            return torch.utils.data.DataLoader(data, batch_size=16, shuffle=True)

    logger = GantuiLogger(name="lit", out=sys.argv[1])
    trainer = pl.Trainer(max_steps=int(sys.argv[2]), logger=logger, callbacks=[logger.callback()],
                         log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(GAN())
    print("fit ended at", trainer.global_step)
""")


def test_a_lightning_gan_publishes_and_is_stopped_through_lightnings_flag(tmp_path):
    pytest.importorskip("pytorch_lightning")
    script, out = tmp_path / "lit.py", tmp_path / "lit"
    script.write_text(LIGHTNING)
    proc = subprocess.Popen([sys.executable, str(script), str(out), "100000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not [r for r in RunDir(out).read_metrics() if r.get("step", 0) >= 20]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        stopped = gantui_cli("stop", str(out))
        assert stopped.returncode == 0, stopped.stderr
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "fit ended at" in stdout
    run = RunDir(out)
    assert run_state(run) == "stopped"
    rows = [r for r in run.read_metrics() if "event" not in r]
    assert {"loss/D", "loss/G"} <= set(rows[-1])
    assert run.read_config()["config"] == {"lr": 2e-4, "z": 8}  # the hyperparameters
    assert run.grids()  # log_images
