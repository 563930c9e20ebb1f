"""What the tests share: subprocess helpers, scripted engines, waits on conditions. No test module imports another; they import this."""
from __future__ import annotations

import time
from pathlib import Path

from gantui.run.rundir import RunDir
from gantui.run.client import LocalLink
from gantui.session import Session
from gantui.ui.app import GanApp

FAST = ["--batch-size", "16", "--device", "cpu", "--log-every", "2"]  # CLI flags for quick subprocess runs


def wait_for_step(out: Path, step: int, timeout: float = 120) -> None:
    """Wait until the run in `out` has logged metrics at `step` or later."""
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and any(row.get("step", 0) >= step for row in RunDir(out).read_metrics()):
            return
        time.sleep(0.05)
    raise AssertionError(f"training did not reach step {step}")


class AlwaysPreview:
    """A preview source that asks for `count` previews at every step (tests of the engine alone)."""

    def __init__(self, count: int = 16) -> None:
        self.count = count

    def previews_due(self) -> int:
        return self.count

    def preview_cost(self, seconds: float) -> None:
        pass


SESSIONS: list[Session] = []


def make_app(config) -> GanApp:
    """The dashboard on a run in this process (no socket), as `gantui` builds it; the test may read
    the trainer as `app.trainer` (the app itself never does)."""
    session = Session(config, serve=False)
    session.hub.pacer.floor = session.hub.pacer.interval = 0.1
    session.start()
    SESSIONS.append(session)  # stopped after the test, however it ended (conftest.py)
    app = GanApp(LocalLink(session.hub))
    app.trainer = session.trainer
    return app


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def disc_images(n: int, size: int = 64, seed: int = 0):
    """(n, size, size, 3) uint8: a coloured disc on a dark blue ground in each, deterministic."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, 3), np.uint8)
    images[..., 2] = 40
    for image in images:
        r, (cx, cy) = rng.integers(size // 8, size // 3), rng.integers(size // 4, 3 * size // 4, 2)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(60, 256, 3)
    return images
