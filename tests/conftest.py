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
