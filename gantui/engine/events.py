"""What the trainer tells its consumers: small frozen dataclasses holding plain data.

No live tensors cross the thread boundary: floats, strings and CPU uint8 arrays only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Started:
    run_dir: str
    device: str
    step: int
    total_steps: int
    steps_per_epoch: int
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)  # rows from before a resume
    quality: list[dict[str, Any]] = field(default_factory=list)  # evaluations from before a resume


@dataclass(frozen=True)
class Metrics:
    """One logging interval: a row of metrics.jsonl."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Quality:
    """One evaluation of the fixed latents: a row of metrics.jsonl (fid, classes, kl, hist...)."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Preview:
    step: int
    images: np.ndarray  # uint8 (N, 28, 28), generated from the fixed noise


@dataclass(frozen=True)
class Paused:
    paused: bool
    step: int


@dataclass(frozen=True)
class Saved:
    step: int
    checkpoint: str
    grid: str | None
    reason: str  # "manual", "periodic", "final"


@dataclass(frozen=True)
class Notice:
    """Something the user should read: a resample, a failed save, a rollback."""

    text: str
    level: str = "information"  # or "warning", "error"


@dataclass(frozen=True)
class Finished:
    reason: str  # "done", "stopped", "error"
    step: int
    checkpoint: str | None = None
    error: str | None = None


Event = Started | Metrics | Quality | Preview | Paused | Saved | Notice | Finished
