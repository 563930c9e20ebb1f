from __future__ import annotations

import pytest

from gantui.config import Config


@pytest.fixture
def tiny_config(tmp_path):
    """A few fast CPU steps on real MNIST."""

    def make(**overrides) -> Config:
        base = dict(batch_size=16, steps=12, log_every=3, sample_every=6, save_every=6,
                    preview_count=16, device="cpu", seed=7, eval_n=100, out=str(tmp_path / "run"))
        return Config(**{**base, **overrides}).validate()

    return make


@pytest.fixture(autouse=True)
def no_trainer_left_running():
    """A dashboard test that fails leaves its trainer thread training; stopped here, it cannot
    disturb the tests after it in this process (their random streams, their CPU)."""
    yield
    from support import SESSIONS

    while SESSIONS:
        session = SESSIONS.pop()
        session.trainer.stop()
        session.thread.join(60)
        session.run.close()
