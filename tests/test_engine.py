from __future__ import annotations

import math
import threading
import time

import numpy as np
import torch

from gantui.run import events as ev
from gantui.engine.checkpoint import load_checkpoint
from gantui.datasets import DATASETS
from gantui.engine.data import load_dataset, normalise
from gantui.engine.trainer import Trainer

METRIC_KEYS = ("loss_d", "loss_g", "d_real", "d_fake", "acc_real", "acc_fake", "grad_g", "grad_d")
from support import AlwaysPreview


def test_bundled_mnist_is_the_training_split():
    data, labels = load_dataset(DATASETS["mnist"], torch.device("cpu"))
    assert data.shape == (60000, 1, 28, 28) and data.dtype == torch.uint8
    assert labels.shape == (60000,) and set(labels.unique().tolist()) == set(range(10))
    batch = normalise(data[:64])
    assert batch.min() == -1.0 and batch.max() == 1.0


def test_trains_with_finite_moving_losses(tiny_config):
    events = []
    finished = Trainer(tiny_config(steps=30), events.append).run()
    assert finished.reason == "done" and finished.step == 30
    rows = [e.row for e in events if isinstance(e, ev.Metrics)]
    assert [r["step"] for r in rows] == list(range(3, 31, 3))
    for row in rows:
        assert set(METRIC_KEYS) <= row.keys()
        assert all(math.isfinite(row[k]) for k in METRIC_KEYS)
        assert 0 <= row["acc_real"] <= 1 and 0 <= row["d_fake"] <= 1
    assert len({round(r["loss_g"], 6) for r in rows}) == len(rows)  # the losses move
    assert rows[-1]["images_per_s"] > 0


def test_same_seed_same_losses(tiny_config, tmp_path):
    runs = []
    for name in ("a", "b"):
        events = []
        Trainer(tiny_config(out=str(tmp_path / name)), events.append).run()
        runs.append([(e.row["loss_d"], e.row["loss_g"]) for e in events if isinstance(e, ev.Metrics)])
    assert runs[0] == runs[1]
    events = []
    Trainer(tiny_config(out=str(tmp_path / "c"), seed=8), events.append).run()
    assert [(e.row["loss_d"], e.row["loss_g"]) for e in events if isinstance(e, ev.Metrics)] != runs[0]


def test_controls_from_another_thread(tiny_config):
    events: list = []
    trainer = Trainer(tiny_config(steps=100_000, save_every=100_000, sample_every=100_000), events.append,
                      previews=AlwaysPreview())
    thread = threading.Thread(target=trainer.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while trainer.step < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        trainer.controls.pause()
        deadline = time.monotonic() + 10
        while not any(isinstance(e, ev.Paused) and e.paused for e in events) and time.monotonic() < deadline:
            time.sleep(0.01)
        paused_at = trainer.step
        time.sleep(0.5)  # a window, not a wait: no step may come in it (a CPU step takes a few ms)
        assert trainer.step == paused_at  # no steps while paused

        noise = trainer.samples.fixed_noise.clone()
        before = [e for e in events if isinstance(e, ev.Preview)][-1]
        trainer.controls.resample()  # works while paused
        trainer.controls.save()
        deadline = time.monotonic() + 10
        while not any(isinstance(e, ev.Saved) and e.reason == "manual" for e in events) and time.monotonic() < deadline:
            time.sleep(0.01)
        saved = [e for e in events if isinstance(e, ev.Saved) and e.reason == "manual"]
        assert saved and saved[0].step == paused_at and saved[0].grid
        assert torch.equal(noise, trainer.samples.fixed_noise)  # the grids' noise is untouched...
        after = [e for e in events if isinstance(e, ev.Preview)][-1]
        assert after.step == before.step and not np.array_equal(after.images, before.images)  # ...the preview's not
        assert load_checkpoint(saved[0].checkpoint)["step"] == paused_at

        trainer.controls.resume()
        deadline = time.monotonic() + 30
        while trainer.step < paused_at + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trainer.step >= paused_at + 3
    finally:
        trainer.controls.stop()
        thread.join(30)
    assert not thread.is_alive()
    finished = events[-1]
    assert isinstance(finished, ev.Finished) and finished.reason == "stopped"
    assert load_checkpoint(finished.checkpoint)["step"] == finished.step
    previews = [e for e in events if isinstance(e, ev.Preview)]
    assert previews and previews[0].images.dtype == np.uint8 and previews[0].images.shape[1:] == (28, 28)


def test_resample_leaves_training_untouched(tiny_config, tmp_path):
    """Preview noise has its own generator: resampling does not change the weights."""
    plain = Trainer(tiny_config(out=str(tmp_path / "a"), steps=6))
    plain.run()
    resampled = Trainer(tiny_config(out=str(tmp_path / "b"), steps=6))
    resampled.controls.resample()
    resampled.controls.resample()
    resampled.run()
    for p, q in zip(plain.gan.G.parameters(), resampled.gan.G.parameters()):
        assert torch.equal(p, q)


def test_resume_is_bit_exact_on_cpu(tiny_config, tmp_path):
    """N steps, stop, resume for N more == 2N straight (same seed), weights and optimizer alike."""
    straight = Trainer(tiny_config(out=str(tmp_path / "straight"), steps=12))
    straight.run()
    first = Trainer(tiny_config(out=str(tmp_path / "split"), steps=6))
    first.run()
    state = load_checkpoint(tmp_path / "split")
    second = Trainer(tiny_config(out=str(tmp_path / "split"), steps=12), resume_state=state)
    second.run()
    assert second.step == 12
    for a, b in zip(straight.state_dict()["gan"]["generator"].values(), second.state_dict()["gan"]["generator"].values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.gan.D.parameters(), second.gan.D.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(straight.samples.fixed_noise, second.samples.fixed_noise)
    assert [r["loss_g"] for r in straight.history] == [r["loss_g"] for r in second.history]
