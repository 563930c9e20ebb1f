"""Panes of labelled sparklines: the losses, and the discriminator's health."""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from statistics import fmean
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from gantui.common import HISTORY
from gantui.ui.widgets.sparkline import FastSparkline


class MetricLine(Vertical):
    """One metric: its current, min and max value over a sparkline of its history."""

    def __init__(self, key: str, label: str, fmt: str = ".3f", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key, self.label, self.fmt = key, label, fmt
        self.values: deque[float] = deque(maxlen=HISTORY)
        self.header = Static(self._header([]), classes="metric-header")
        self.spark = FastSparkline([], summary_function=fmean)

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.spark

    def _header(self, values: Sequence[float]) -> str:
        if not values:
            return f"[b]{self.label}[/b]  waiting for the first interval"
        f = self.fmt
        return f"[b]{self.label}[/b] {values[-1]:{f}} [dim]min[/dim] {min(values):{f}} [dim]max[/dim] {max(values):{f}}"

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append new metric rows (only the new ones: the history is kept here)."""
        self.values.extend(v for row in rows if isinstance(v := row.get(self.key), float | int) and math.isfinite(v))
        values = list(self.values)
        self.header.update(self._header(values), layout=False)  # height 1: no relayout
        self.spark.data = values


class MetricPane(Vertical):
    """A bordered group of MetricLines fed with the same metric rows."""

    LINES: tuple[tuple[str, str], ...] = ()
    TITLE = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = self.TITLE
        self.lines = [MetricLine(key, label) for key, label in self.LINES]

    def compose(self) -> ComposeResult:
        yield from self.lines

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        for line in self.lines:
            line.add(rows)


class LossPane(MetricPane):
    TITLE = "Losses"
    LINES = (("loss_g", "G loss"), ("loss_d", "D loss"))


class HealthPane(MetricPane):
    TITLE = "Discriminator"
    LINES = (("d_real", "D(x)    "), ("d_fake", "D(G(z)) "), ("acc_real", "acc real"), ("acc_fake", "acc fake"))
