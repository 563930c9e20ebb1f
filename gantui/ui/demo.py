"""Scripted runs: the dashboard on a fixed history, training nothing. The snapshot tests, the
dashboard's cost benchmark and the screenshots draw these; nothing of gantui's own uses them.

    from gantui.ui.demo import ScriptedEngine, scripted_app
    scripted_app(ScriptedEngine).run()   # the dashboard on a demo run, in this terminal
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache
from importlib import resources

import numpy as np

from gantui.common import Line, Pane
from gantui.run import events as ev
from gantui.run.client import LocalLink
from gantui.run.hub import RunHub
from gantui.ui.app import GanApp


def disc_images(n: int, size: int = 64, seed: int = 0):
    """(n, size, size, 3) uint8: a coloured disc on a dark blue ground in each, deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, 3), np.uint8)
    images[..., 2] = 40
    for image in images:
        r, (cx, cy) = rng.integers(size // 8, size // 3), rng.integers(size // 4, 3 * size // 4, 2)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(60, 256, 3)
    return images


@lru_cache(maxsize=1)
def mnist_test_images() -> np.ndarray:
    """MNIST's test images as the package holds them (numpy alone: the dashboard imports no torch)."""
    with resources.files("gantui.data").joinpath("mnist.npz").open("rb") as f, np.load(f) as archive:
        return archive["test_images"]


def mnist_digits(n: int) -> np.ndarray:
    """The first `n` digits of MNIST's test set, as a preview shows them."""
    return mnist_test_images()[:n]


def quality_rows(collapse: bool) -> list[dict]:
    """Twelve evaluations, FID falling; with `collapse`, digits 3 and 7 vanish in the last two."""
    rows = []
    for i in range(1, 13):
        hist = [0.1 + 0.01 * math.sin(i + d) for d in range(10)]
        if collapse and i > 10:
            hist[3] = hist[7] = 0.004
        rows.append({"event": "quality", "step": 100 * i, "epoch": 1, "fid": 300 * 0.7 ** i, "fid_n": 2000,
                     "classes": 8 if collapse and i > 10 else 10, "kl": 0.17 if collapse and i > 10 else 0.004,
                     "confidence": 0.91, "score": 8.4, "hist": hist, "collapse": collapse and i > 11, "eval_s": 0.9})
    return rows


class ScriptedEngine:
    """Emits a fixed history and preview, then waits to be stopped."""

    collapse = False

    def __init__(self, emit) -> None:
        self.emit = emit
        self.step = 1200
        self._stop = threading.Event()

    def run(self) -> ev.Finished:
        rows = [{"step": 10 * i, "epoch": 1, "loss_d": 1.2 + 0.2 * math.sin(i / 5), "loss_g": 0.9 + 0.3 * math.cos(i / 7),
                 "d_real": 0.6 + 0.1 * math.sin(i / 3), "d_fake": 0.4 + 0.1 * math.cos(i / 4),
                 "acc_real": 0.7 + 0.2 * math.sin(i / 6), "acc_fake": 0.65 + 0.2 * math.cos(i / 5),
                 "images_per_s": 5120.0, "time": 0.0} for i in range(1, 121)]
        self.emit(ev.Started(run_dir="~/.local/share/gantui/runs/demo", device="cpu", step=1200, total_steps=18740,
                             steps_per_epoch=937, config={}, history=rows, epoch=1,
                             quality=quality_rows(self.collapse)))
        self.emit(ev.Preview(1200, mnist_digits(64)))
        self._stop.wait(60)
        finished = ev.Finished("stopped", self.step, checkpoint="last.pt")
        self.emit(finished)
        return finished

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def save(self) -> None: ...
    def resample(self) -> None: ...

    def stop(self) -> None:
        self._stop.set()


class CollapsingEngine(ScriptedEngine):
    collapse = True


WGAN_SCHEMA = [
    Pane("Losses", (Line("loss_g", "G loss", ".3f"), Line("loss_d", "critic loss", ".3f"), Line("gp", "penalty", ".3f"))),
    Pane("Critic", (Line("wdist", "W estimate", ".3f"), Line("grad_g", "|grad G|", ".3g"), Line("grad_d", "|grad D|", ".3g"))),
]


class WassersteinEngine(ScriptedEngine):
    """A WGAN-GP run: a critic's figures (no probabilities), EMA previews, and a live change of
    the learning rates at step 800 (a marker on every curve)."""

    def run(self) -> ev.Finished:
        rows = [{"step": 10 * i, "epoch": 1, "loss_d": -2.0 + math.sin(i / 5), "loss_g": 1.5 + math.cos(i / 7),
                 "wdist": 2.5 + 0.5 * math.sin(i / 3), "gp": 0.05 + 0.02 * math.cos(i / 4),
                 "grad_g": 3.0 + math.sin(i / 6), "grad_d": 12.0 + 2 * math.cos(i / 5),
                 "images_per_s": 1280.0, "steps_per_s": 4.0, "time": 0.0} for i in range(1, 121)]
        config = {"loss": "wgan-gp", "gp": 10.0, "lr_g": 1e-4, "lr_d": 1e-4, "d_steps": 5, "ema": 0.999,
                  "r1": 0.0, "batch_size": 64}
        self.emit(ev.Started(run_dir="~/.local/share/gantui/runs/wgan", device="cpu", step=1200, total_steps=5620,
                             steps_per_epoch=187, config=config, history=rows, epoch=6,
                             quality=quality_rows(False), schema=WGAN_SCHEMA,
                             sets=[{"step": 800, "values": {"lr_g": 1e-4, "lr_d": 1e-4}}]))
        self.emit(ev.Preview(1200, mnist_digits(64), source="EMA G"))
        self._stop.wait(60)
        finished = ev.Finished("stopped", self.step, checkpoint="last.pt")
        self.emit(finished)
        return finished


class FolderEngine(ScriptedEngine):
    """A 64x64 RGB run on a folder of images: colour previews, the Quality pane off."""

    def run(self) -> ev.Finished:
        rows = [{"step": 10 * i, "epoch": 1, "loss_d": 1.2 + 0.2 * math.sin(i / 5), "loss_g": 0.9 + 0.3 * math.cos(i / 7),
                 "d_real": 0.6, "d_fake": 0.4, "acc_real": 0.7, "acc_fake": 0.65, "images_per_s": 120.0,
                 "time": 0.0} for i in range(1, 61)]
        config = {"dataset": "folder", "data": "~/pictures", "image_size": 64, "channels": 3, "batch_size": 64}
        self.emit(ev.Started(run_dir="~/.local/share/gantui/runs/pictures", device="cpu", step=600, total_steps=4000,
                             steps_per_epoch=40, config=config, history=rows, epoch=15))
        self.emit(ev.Preview(600, disc_images(16)))
        self._stop.wait(60)
        finished = ev.Finished("stopped", self.step, checkpoint="last.pt")
        self.emit(finished)
        return finished


def scripted_app(engine=ScriptedEngine, clock=lambda: 0.0) -> GanApp:
    """The dashboard on a scripted run in this process, through the same hub as a real one."""
    hub = RunHub(clock=clock)  # the elapsed time on screen, whatever the machine's load
    scripted = engine(hub.publish)
    hub.attach(scripted)
    threading.Thread(target=scripted.run, daemon=True).start()
    app = GanApp(LocalLink(hub), clock=clock)
    app.trainer = scripted
    return app
