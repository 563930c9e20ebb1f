from __future__ import annotations

import os

import pytest

# Every process of the suite, this one and the runs it starts, trains on one thread: the tests run
# side by side (pytest-xdist), and processes of two threads each on two cores wait on each other's
# threads (gantui.engine.device.cpu_threads reads this, as torch does).
os.environ["OMP_NUM_THREADS"] = "1"

from gantui.config import Config


@pytest.fixture
def tiny_config(tmp_path):
    """A few fast CPU steps on real MNIST."""

    def make(**overrides) -> Config:
        base = dict(batch_size=16, steps=12, log_every=3, sample_every=6, save_every=6,
                    preview_count=16, device="cpu", seed=7, eval_n=100, out=str(tmp_path / "run"))
        return Config.of(**{**base, **overrides}).validate()

    return make


@pytest.fixture(autouse=True)
def no_trainer_left_running():
    """A dashboard test that fails leaves its trainer thread training, and a test that fails before
    it ends the run it started leaves that process training; stopped here, neither can disturb the
    tests after it (their random streams, their CPU)."""
    yield
    from support import SESSIONS, STARTED

    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)

    while SESSIONS:
        session = SESSIONS.pop()
        session.trainer.controls.stop()
        session.thread.join(60)
        session.run.close()
