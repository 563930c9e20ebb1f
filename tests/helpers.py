"""Helpers shared by the test modules."""
from __future__ import annotations

import json
import time
from pathlib import Path

from gantui.engine.trainer import Trainer
from gantui.ui.app import GanApp

FAST = ["--batch-size", "16", "--device", "cpu", "--log-every", "2"]  # CLI flags for quick subprocess runs


def wait_for_step(out: Path, step: int, timeout: float = 120) -> None:
    """Wait until the run in `out` has logged metrics at `step` or later."""
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and any(json.loads(line).get("step", 0) >= step
                                    for line in metrics.read_text().splitlines() if line.strip()):
            return
        time.sleep(0.05)
    raise AssertionError(f"training did not reach step {step}")


def make_app(config) -> GanApp:
    return GanApp(lambda emit: Trainer(config, emit, preview_interval=0.1), config.batch_size)


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)
