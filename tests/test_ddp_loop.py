"""A user's loop under torch.distributed (2 gloo processes through torchrun, fresh each test): every
rank stops and pauses together, and a save or a setting reaches every rank at one step."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from gantui.engine.checkpoint import load_checkpoint
from support import NEVER, Peer, gantui, gantui_traceback, popen, torchrun, wait_for_step, wait_until

# The README's loop, under DDP, with a process group whose timeout (5 s) a pause outlasts.
LOOP = textwrap.dedent("""
    import datetime, json, sys, torch, torch.distributed as dist, gantui
    from torch.nn.parallel import DistributedDataParallel as DDP

    out, report = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=5))
    rank = dist.get_rank()
    torch.manual_seed(rank)
    model = DDP(torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    run = gantui.init(name="ddp", out=out, tunable={"lr": 0.01}, quiet=True)
    done = {"saved": [], "set": []}
    def save():
        done["saved"].append(step)
        json.dump(done, open(f"{report}/rank{rank}.json", "w"))
        return f"{out}/model.pt"
    def changed(values):
        done["set"].append([step, values["lr"]])
        json.dump(done, open(f"{report}/rank{rank}.json", "w"))
    run.on_save(save)
    run.on_set(changed)
    step = 0
    while step < 10**9:
        step += 1
        loss = model(torch.randn(16, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"loss": loss}, step=step)
        if run.should_stop:
            break
    run.finish()
    done["last"] = step
    json.dump(done, open(f"{report}/rank{rank}.json", "w"))
    dist.destroy_process_group()
""")


def launch(*program: str | Path) -> subprocess.Popen:
    """A 2-process gloo job of `program` (a script and its arguments, or `-m gantui ...`)."""
    return popen(torchrun(*map(str, program), program=()), stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True, start_new_session=True)


def started(job: subprocess.Popen, out: Path) -> None:
    """Until the job serves its run (its socket), or fails."""
    deadline = time.monotonic() + 300
    while not (out / "gantui.sock").exists():
        assert job.poll() is None, job.communicate()
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)


def start_job(tmp_path: Path, script_text: str = LOOP) -> tuple[Path, Path, subprocess.Popen]:
    """`script_text` under torchrun, writing its run into RUN and each rank's report into REPORT,
    once it serves its run (killed when it does not)."""
    script, out, report = tmp_path / "script.py", tmp_path / "run", tmp_path / "report"
    script.write_text(script_text)
    report.mkdir()
    job = launch(script, out, report)
    try:
        started(job, out)
    except BaseException:
        kill(job)
        raise
    return out, report, job


def ranks(report: Path) -> list[dict]:
    return [json.loads((report / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def reports(report: Path) -> list[dict]:
    """The ranks' reports as far as written: a rank's own at the agreed step may come a moment
    after rank 0 tells the watchers (an empty one while it is being written)."""
    try:
        return ranks(report)
    except (OSError, ValueError):
        return [{}]


def kill(job: subprocess.Popen) -> None:
    """A job the test gave up on, ended with its ranks: SIGTERM (torchrun passes it on), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 60)):
        if job.poll() is None:
            os.killpg(job.pid, sig)
            try:
                job.communicate(timeout=wait)
            except subprocess.TimeoutExpired:
                pass


def ended(job: subprocess.Popen, timeout: float = 300) -> str:
    """The job's stderr once it ends by itself: exit 0, no traceback of gantui's (killed at `timeout`)."""
    try:
        _, err = job.communicate(timeout=timeout)
    except BaseException:
        kill(job)
        raise
    assert job.returncode == 0, err[-3000:]
    assert not gantui_traceback(err), err[-3000:]
    return err


def test_gantui_stop_ends_every_rank_of_a_ddp_loop_at_one_step(tmp_path):
    out, report, job = start_job(tmp_path)
    try:
        wait_for_step(out, 20)
        stopped = gantui("stop", str(out))
        assert stopped.returncode == 0, stopped.stderr
    except BaseException:
        kill(job)
        raise
    ended(job)
    first, second = ranks(report)
    assert first["last"] == second["last"] >= 20  # every rank left its loop at the same step
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"


def test_a_pause_outlasting_the_groups_timeout_holds_every_rank_and_a_save_or_setting_reaches_them_paused(tmp_path):
    out, report, job = start_job(tmp_path)
    try:
        wait_for_step(out, 20)
        peer = Peer(out)
        peer.until(lambda m: m["type"] == "snapshot")
        peer.cmd("pause")
        paused = peer.until(lambda m: m["type"] == "paused" and m["paused"])
        held = time.monotonic()
        peer.cmd("save")
        peer.until(lambda m: m["type"] == "saved")
        peer.cmd("set", values={"lr": 0.5})
        peer.until(lambda m: m["type"] == "settings")
        wait_until(lambda: all(d.get("set") for d in reports(report)), what="every rank to do the setting")
        done = ranks(report)  # both ranks did them, at the step they paused at, while paused
        assert [d["saved"] for d in done] == [[paused["step"]]] * 2
        assert [d["set"] for d in done] == [[[paused["step"], 0.5]]] * 2
        while time.monotonic() - held < 7:  # longer than the process group's 5 s timeout
            assert job.poll() is None, job.communicate()
            time.sleep(0.1)
        assert json.loads((out / "status.json").read_text())["state"] == "paused"
        peer.cmd("resume")
        peer.until(lambda m: m["type"] == "paused" and not m["paused"])
        wait_for_step(out, paused["step"] + 20)  # every rank trains again (DDP steps them together)
        assert gantui("stop", str(out)).returncode == 0
    except BaseException:
        kill(job)
        raise
    ended(job)
    first, second = ranks(report)
    assert first["last"] == second["last"] > paused["step"]


# A GAN in Lightning, trained by 2 CPU processes (DDP), steered through GantuiLogger's callback.
LIGHTNING_GAN = textwrap.dedent("""
    import json, sys, torch
    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl
    from gantui.lightning import GantuiLogger

    class GAN(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.G, self.D = torch.nn.Linear(4, 8), torch.nn.Linear(8, 1)

        def training_step(self, batch, index):
            opt_g, opt_d = self.optimizers()
            noise = torch.randn(len(batch), 4)  # every parameter in each backward (DDP's rule)
            loss_d = self.D(self.G(noise)).mean() - self.D(batch).mean()
            opt_d.zero_grad(); self.manual_backward(loss_d); opt_d.step()
            loss_g = -self.D(self.G(noise)).mean()
            opt_g.zero_grad(); self.manual_backward(loss_g); opt_g.step()
            self.log_dict({"loss/D": loss_d, "loss/G": loss_g})

        def configure_optimizers(self):
            return torch.optim.SGD(self.G.parameters(), lr=0.01), torch.optim.SGD(self.D.parameters(), lr=0.01)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.randn(64, 8), batch_size=8)

        def on_fit_end(self):
            json.dump({"last": self.global_step}, open(f"{sys.argv[2]}/rank{self.global_rank}.json", "w"))

    def trainer(logger, **kwargs):
        return pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=10**9, logger=logger,
                          callbacks=[logger.callback()], log_every_n_steps=1, enable_progress_bar=False,
                          enable_checkpointing=False, enable_model_summary=False, **kwargs)
""")
LIGHTNING = LIGHTNING_GAN + textwrap.dedent("""
    if __name__ == "__main__":
        logger = GantuiLogger(name="gan", out=sys.argv[1], quiet=True)
        trainer(logger).fit(GAN())
""")
# As many scripts do: hyperparameters logged before the process group is up, a validation before fit
# (rank 0's logger logs while rank 1 has not come to its first batch).
LIGHTNING_ORDINARY = LIGHTNING_GAN + textwrap.dedent("""
    class Validated(GAN):
        def validation_step(self, batch, index):
            self.log("val/D", self.D(batch).mean())

        val_dataloader = GAN.train_dataloader

    if __name__ == "__main__":
        logger = GantuiLogger(name="gan", out=sys.argv[1], quiet=True)
        logger.log_hyperparams({"lr": 0.01})
        model = Validated()
        run = trainer(logger, limit_val_batches=2, check_val_every_n_epoch=10**6)
        run.validate(model)
        run.fit(model)
""")


def test_a_lightning_gan_under_ddp_saves_through_lightning_and_every_rank_stops_at_one_step(tmp_path):
    out, report, job = start_job(tmp_path, LIGHTNING)
    try:
        wait_for_step(out, 10)
        peer = Peer(out)
        peer.until(lambda m: m["type"] == "snapshot")
        peer.cmd("save")
        saved = peer.until(lambda m: m["type"] == "saved")
        assert Path(saved["checkpoint"]).is_file() and Path(saved["checkpoint"]).parent == out / "checkpoints"
        assert gantui("stop", str(out)).returncode == 0
    except BaseException:
        kill(job)
        raise
    ended(job)
    first, second = ranks(report)
    assert first["last"] == second["last"]


def test_a_lightning_script_that_logs_hyperparameters_and_validates_before_fit_is_stopped_on_every_rank_at_one_step(
        tmp_path):
    out, report, job = start_job(tmp_path, LIGHTNING_ORDINARY)
    try:
        wait_for_step(out, 10)
        assert gantui("stop", str(out), timeout=120).returncode == 0
    except BaseException:
        kill(job)
        raise
    err = ended(job, timeout=120)  # before: rank 0 steered alone, its stop met rank 1's all-reduce and hung
    first, second = ranks(report)
    assert first["last"] == second["last"], err[-3000:]
    assert "did not call gantui.init" not in err and "alone" not in err, err[-3000:]
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"


# A tiny DDP model on 2 gloo processes; the scripts below add their loops.
DDP_SETUP = textwrap.dedent("""
    import json, sys, time, torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    out, report = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = DDP(torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_step():
        loss = model(torch.randn(16, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
""")


# `if rank == 0: run = gantui.init(...)`: a DDP loop whose rank 0 alone publishes, then rank 0 alone
# goes on until stopped while rank 1 waits for it at the end (a barrier of the job's own group).
RANK_ZERO = DDP_SETUP + textwrap.dedent("""
    import gantui
    if rank == 0:
        run = gantui.init(name="rank0", out=out, quiet=True)
    first = None
    for step in range(1, 31):  # every rank: a short DDP loop
        loss = train_step()
        if rank == 0:
            began = time.monotonic()
            run.log({"loss": loss}, step=step)
            first = time.monotonic() - began if first is None else first
    if rank == 0:  # then rank 0 alone, until someone stops it
        while not run.should_stop and step < 10**9:
            step += 1
            run.log({"loss": model.module(torch.randn(16, 8)).pow(2).mean()}, step=step)
        run.finish()
        json.dump({"first": first, "last": step}, open(f"{report}/rank0.json", "w"))
    dist.barrier()
    dist.destroy_process_group()
""")


def test_a_script_that_logs_on_rank_0_alone_is_steered_there_at_once_with_one_warning(tmp_path):
    out, report, job = start_job(tmp_path, RANK_ZERO)
    try:
        wait_for_step(out, 40, timeout=300)  # past the DDP loop: rank 0 alone
        stopped = gantui("stop", str(out))
        assert stopped.returncode == 0, stopped.stderr
    except BaseException:
        kill(job)
        raise
    err = ended(job)
    done = json.loads((report / "rank0.json").read_text())
    assert done["first"] < 10, done  # not a join timeout: rank 0 saw rank 1 never called gantui.init
    assert done["last"] >= 40
    warnings = [line for line in err.splitlines() if line.startswith("gantui") and "warning" in line]
    assert len(warnings) == 1 and "rank 1 did not call gantui.init" in warnings[0], err[-3000:]
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"


QUICK = ["--batch-size", "16", "--device", "cpu", "--log-every", "5", "--eval-every", "0"]


def test_the_trainers_save_and_setting_pressed_while_paused_are_done_at_once_on_every_rank(tmp_path):
    out = tmp_path / "run"
    job = launch("-m", "gantui", "--no-ui", "--out", out, "--steps", NEVER, "--save-every", NEVER, *QUICK)
    try:
        started(job, out)
        wait_for_step(out, 10, timeout=300)
        peer = Peer(out)
        peer.until(lambda m: m["type"] == "snapshot")
        peer.cmd("pause")
        paused = peer.until(lambda m: m["type"] == "paused" and m["paused"], timeout=120)
        peer.cmd("save")  # a gather of every rank's random streams: rank 1 takes part, paused
        saved = peer.until(lambda m: m["type"] == "saved", timeout=60)
        state = load_checkpoint(out)
        assert saved["step"] == state["step"] == paused["step"] and len(state["ranks"]) == 2
        assert json.loads((out / "status.json").read_text())["state"] == "paused"
        assert json.loads((out / "status.json").read_text())["step"] == paused["step"]
        peer.cmd("set", values={"d_steps": 2})  # on rank 0 alone, D's collectives would no longer match
        settings = peer.until(lambda m: m["type"] == "settings", timeout=60)
        assert settings["step"] == paused["step"]
        assert json.loads((out / "status.json").read_text())["state"] == "paused"
        peer.cmd("resume")
        peer.until(lambda m: m["type"] == "paused" and not m["paused"], timeout=60)
        wait_for_step(out, paused["step"] + 5, timeout=300)  # both ranks train on, two D steps each
        assert gantui("stop", str(out)).returncode == 0
    except BaseException:
        kill(job)
        raise
    err = ended(job)
    final = load_checkpoint(out)
    assert final["gan"]["d_updates"] - state["gan"]["d_updates"] == 2 * (final["step"] - paused["step"]), err[-3000:]
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"


# TensorBoard code under DDP: the drop-in on every rank, a scalar a step.
TENSORBOARD = DDP_SETUP + textwrap.dedent("""
    from gantui.tensorboard import SummaryWriter
    writer = SummaryWriter(out)
    step = 0
    while step < 10**9:
        step += 1
        loss = train_step()
        writer.add_scalar("loss", loss.item(), step)
        if writer.should_stop:
            break
    writer.close()
    json.dump({"last": step}, open(f"{report}/rank{rank}.json", "w"))
    dist.destroy_process_group()
""")


def test_gantui_stop_ends_every_rank_of_a_tensorboard_script_under_ddp_at_one_step(tmp_path):
    out, report, job = start_job(tmp_path, TENSORBOARD)
    try:
        wait_for_step(out, 20, timeout=300)
        assert gantui("stop", str(out)).returncode == 0
    except BaseException:
        kill(job)
        raise
    err = ended(job)
    first, second = ranks(report)
    assert first["last"] == second["last"] >= 20, err[-3000:]
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"
