"""The run directory: config.json, metrics.jsonl, samples/, checkpoints/."""
from __future__ import annotations

import fcntl
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from gantui.engine.checkpoint import atomic_write


def default_run_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path("gantui") / "runs" / time.strftime("%Y%m%d-%H%M%S")


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats become null plus a `nonfinite` list naming them: strict JSON lines."""
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bad:
        return row
    return {**{k: (None if k in bad else v) for k, v in row.items()}, "nonfinite": bad}


class RunDirBusy(RuntimeError):
    """Another process holds the run directory."""


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.metrics = self.path / "metrics.jsonl"
        self.last = self.checkpoints / "last.pt"

    def lock(self) -> int:
        """Hold the run directory for this process; a second gantui on it gets RunDirBusy.

        The lock lives as long as the returned file descriptor (the kernel drops it when the
        process dies, so a crash leaves no stale lock).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirBusy(f"{self.path} is in use by another gantui process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    def create(self) -> RunDir:
        for folder in (self.path, self.checkpoints, self.samples):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self.checkpoints.glob(".*.tmp"):  # left by a process killed mid-save
            stale.unlink(missing_ok=True)
        return self

    def write_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path / "config.json", lambda f: f.write(text.encode()))

    def append_metrics(self, row: dict[str, Any]) -> None:
        line = json.dumps(json_safe(row), allow_nan=False) + "\n"
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(line)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        with open(self.metrics, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.pt"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step-{step:08d}.png"

    def prune_checkpoints(self, keep: int) -> None:
        for old in sorted(self.checkpoints.glob("step-*.pt"))[:-keep]:
            old.unlink(missing_ok=True)
