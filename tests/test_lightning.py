"""The Lightning logger as Lightning calls it: every stage of a script in one run, a stop through
Lightning's own flag, DDP on 2 CPU processes. Each test is a fresh process (importing Lightning
takes seconds), run with each of the two packages the logger supports where both are installed."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from gantui.run.rundir import RunDir
from gantui.run.runs import run_state
from support import gantui as gantui_cli, popen, run_process, wait_until

PACKAGES = [name for name in ("lightning", "pytorch_lightning") if importlib.util.find_spec(name) is not None]
MODULES = {"lightning": "lightning.pytorch", "pytorch_lightning": "pytorch_lightning"}
needs_lightning = pytest.mark.skipif(not PACKAGES, reason="needs lightning or pytorch-lightning")

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from torch import nn
    import {module} as pl
    from gantui.lightning import GantuiLogger

    class GAN(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.save_hyperparameters({{"lr": 2e-4, "z": 8}})
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
            self.log_dict({{"loss/D": loss_d, "loss/G": loss_g}})
            if index % 5 == 0:
                self.logger.log_images(fake.view(-1, 1, 8, 8), step=self.global_step)

        def validation_step(self, batch, index):
            self.log("val/D", self.D(batch[0]).mean())

        def test_step(self, batch, index):
            self.log("test/D", self.D(batch[0]).mean())

        def configure_optimizers(self):
            return [torch.optim.Adam(self.G.parameters(), 2e-4), torch.optim.Adam(self.D.parameters(), 2e-4)]

        def loader(self):
            data = torch.utils.data.TensorDataset(torch.rand(64, 64) * 2 - 1)
            return torch.utils.data.DataLoader(data, batch_size=16)

        train_dataloader = val_dataloader = test_dataloader = loader

    class Line(pl.LightningModule):  # every parameter in the one loss: DDP's defaults hold
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(64, 1)

        def training_step(self, batch, index):
            loss = self.net(batch[0]).pow(2).mean()
            self.log("loss/fit", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.01)

        train_dataloader = GAN.loader

    if __name__ == "__main__":  # Lightning's DDP launcher runs this file again for rank 1
        mode, steps = sys.argv[1], int(sys.argv[2])
        quiet = dict(enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", log_every_n_steps=1)
        if mode == "ddp":
            logger = GantuiLogger()
            trainer = pl.Trainer(max_steps=steps, strategy="ddp", devices=2, logger=logger, limit_val_batches=0, **quiet)
            trainer.fit(Line())
            said = f"rank {{trainer.global_rank}} save_dir {{logger.save_dir}} version {{logger.version}}\\n"
            os.write(1, said.encode())  # one write: the two ranks share the pipe, and print's two can interleave
        else:
            logger = GantuiLogger(name="lit", out=sys.argv[3])
            trainer = pl.Trainer(max_steps=steps, logger=logger, callbacks=[logger.callback()],
                                 enable_checkpointing=False, num_sanity_val_steps=0, **quiet)
            model = GAN()
            if mode == "stages":
                trainer.validate(model)
            trainer.fit(model)
            print("fit ended at", trainer.global_step, flush=True)
            if mode == "stages":
                trainer.test(model)
""")


def write_script(tmp_path, package: str):
    script = tmp_path / "lit.py"
    script.write_text(SCRIPT.format(module=MODULES[package]))
    return script


@needs_lightning
@pytest.mark.parametrize("package", PACKAGES)
def test_validate_fit_and_test_in_one_script_are_one_run_done_at_exit(tmp_path, package):
    """Lightning calls finalize("success") at the end of every stage: the run goes on to the next
    stage and ends at the script's exit."""
    out = tmp_path / "lit"
    proc = run_process([sys.executable, str(write_script(tmp_path, package)), "stages", "12", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = RunDir(out)
    rows = [r for r in run.read_metrics() if "event" not in r]
    keys = [key for r in rows for key in r]
    for key in ("val/D", "loss/D", "loss/G", "test/D"):  # the three stages, in order
        assert key in keys, (key, rows)
    assert keys.index("val/D") < keys.index("loss/D") < keys.index("test/D")
    assert max(r["step"] for r in rows if "loss/D" in r) == 5  # 12 optimizer steps: 6 batches, G's and D's
    assert run_state(run) == "done"
    # no callback: nothing on rank 1 to agree with, so rank 0's run is steered alone, without a
    # wait for rank 1 and without a warning that it never came
    assert not [line for line in proc.stderr.splitlines() if line.startswith("gantui") and "warning" in line], proc.stderr
    assert run.read_config()["config"] == {"lr": 2e-4, "z": 8}  # the hyperparameters, through run.config
    assert run.grids()  # log_images


def fitting(tmp_path, out):
    """A Lightning GAN fitting towards a step it cannot reach, once it has logged step 20."""
    proc = popen([sys.executable, str(write_script(tmp_path, PACKAGES[-1])), "fit", "100000", str(out)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not [r for r in RunDir(out).read_metrics() if r.get("step", 0) >= 20]:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(proc.communicate())
        time.sleep(0.1)
    return proc


@needs_lightning
def test_a_lightning_gan_publishes_and_is_stopped_through_lightnings_flag(tmp_path):
    out = tmp_path / "lit"
    proc = fitting(tmp_path, out)
    try:
        stopped = gantui_cli("stop", str(out))
        assert stopped.returncode == 0, stopped.stderr
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "fit ended at" in stdout
    run = RunDir(out)
    assert run_state(run) == "stopped"
    # the last batch Lightning trained reached the file (its G and D steps are two of Lightning's
    # global steps; rows count batches from 0), whether a validation row came after it or not
    trained = int(stdout.split("fit ended at")[1].split()[0]) // 2
    rows = [r for r in run.read_metrics() if "loss/D" in r and "loss/G" in r]
    assert rows[-1]["step"] == trained - 1, (trained, rows[-3:])


@needs_lightning
def test_ddp_on_two_cpu_processes_sets_up_and_fits_with_rank_zeros_run_directory_on_both(tmp_path):
    """ModelCheckpoint reads save_dir and version on every rank: rank 1 gets rank 0's run
    directory (shared when torch.distributed is up), not a dummy experiment's method."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}  # the default runs directory
    proc = run_process([sys.executable, str(write_script(tmp_path, PACKAGES[0])), "ddp", "4"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "data" / "gantui" / "runs").iterdir())
    assert len(runs) == 1, runs
    run = RunDir(runs[0])
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank "))
    assert lines == [f"rank {rank} save_dir {run.path} version {run.path.name}" for rank in (0, 1)], proc.stdout
    assert list(run.path.glob("**/checkpoints/*.ckpt")), "ModelCheckpoint saved into the run directory"
    rows = [r for r in run.read_metrics() if "event" not in r]
    assert rows and rows[-1]["step"] == 3 and "loss/fit" in rows[-1]
    assert run_state(run) == "done"
    # no callback: nothing on rank 1 to agree with, so rank 0's run is steered alone, without a
    # wait for rank 1 and without a warning that it never came
    assert not [line for line in proc.stderr.splitlines() if line.startswith("gantui") and "warning" in line], proc.stderr


@needs_lightning
def test_ctrl_c_in_a_lightning_fit_records_the_run_as_stopped(tmp_path):
    """Lightning catches the KeyboardInterrupt and calls finalize("failed") while handling it: the
    run ends stopped, as Lightning records an interrupted fit, not as an error."""
    out = tmp_path / "lit"
    proc = fitting(tmp_path, out)
    try:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert run_state(RunDir(out)) == "stopped"


def returns(call, timeout: float = 30) -> bool:
    """`call()` came back within `timeout` (a pause would hold it)."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def test_under_steer_poll_a_pause_holds_poll_not_log_and_poll_after_finish_does_nothing(tmp_path):
    """The callback's mode (init(steer='poll')): what the logger logs is no step boundary."""
    import gantui

    run = gantui.init(out=tmp_path / "run", quiet=True, serve=False, steer="poll")
    run._pub.controls.pause()
    assert returns(lambda: run.log({"loss": 1.0}))
    held = threading.Thread(target=run.poll, daemon=True)
    held.start()
    wait_until(lambda: RunDir(tmp_path / "run").read_status()["state"] == "paused", what="poll to hold the pause")
    run._pub.controls.resume()
    held.join(30)
    assert not held.is_alive()
    with pytest.raises(ValueError, match="steer"):
        gantui.init(out=tmp_path / "other", quiet=True, serve=False, steer="every")


def test_poll_after_finish_does_nothing_as_log(tmp_path):
    import gantui

    run = gantui.init(out=tmp_path / "run", quiet=True, serve=False)
    run.finish()
    run._pub.controls.pause()
    assert returns(run.poll)  # before: a pause pressed after the end held poll() for ever
