"""Panes of labelled sparklines, their lines given by the run's metric schema (`Started.schema`):
the losses, and what D (or a critic) reports. Live changes of settings show as markers."""
from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence
from statistics import fmean
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from gantui.common import DEFAULT_SCHEMA, HISTORY, Pane
from gantui.ui.widgets.sparkline import FastSparkline

LABEL_WIDTH = 9  # labels padded to this, so the values line up


class MetricLine(Vertical):
    """One metric: its current, min and max value over a sparkline of its history."""

    def __init__(self, key: str, label: str, fmt: str = ".3f", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key, self.label, self.fmt = key, label.ljust(LABEL_WIDTH - 1), fmt
        self.values: deque[float] = deque(maxlen=HISTORY)
        self.steps: deque[int] = deque(maxlen=HISTORY)
        self.marks: list[int] = []  # steps at which settings changed
        self.header = Static(self._header([]), classes="metric-header")
        self.spark = FastSparkline([], summary_function=fmean)

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.spark

    def on_mount(self) -> None:
        if self.values:  # a line rebuilt with the curve it had
            self.add([])

    def _header(self, values: Sequence[float]) -> str:
        if not values:
            return f"[b]{self.label}[/b]  waiting for the first interval"
        f = self.fmt
        return f"[b]{self.label}[/b] {values[-1]:{f}} [dim]min[/dim] {min(values):{f}} [dim]max[/dim] {max(values):{f}}"

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append new metric rows (only the new ones: the history is kept here)."""
        for row in rows:
            value = row.get(self.key)
            if isinstance(value, float | int) and math.isfinite(value):
                self.values.append(value)
                self.steps.append(row["step"])
        values = list(self.values)
        self.header.update(self._header(values), layout=False)  # height 1: no relayout
        self._place_marks()
        self.spark.data = values

    def mark(self, step: int) -> None:
        self.marks.append(step)
        self._place_marks()
        self.spark.refresh()

    def _place_marks(self) -> None:
        steps = list(self.steps)
        self.spark.marks = [bisect.bisect_left(steps, m) for m in self.marks if steps and steps[0] <= m <= steps[-1]]


class MetricPane(Vertical):
    """A bordered group of MetricLines fed with the same metric rows; `configure` sets its lines.
    A run announces as many panes as it has groups of figures; a pane past them is hidden."""

    PANE = 0  # which pane of the schema it shows

    def __init__(self, index: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = self.PANE if index is None else index
        pane = DEFAULT_SCHEMA[self.index] if self.index < len(DEFAULT_SCHEMA) else Pane("")
        self.border_title = pane.title
        self.lines = [MetricLine(*line) for line in pane.lines]
        self.marks: list[int] = []

    def compose(self) -> ComposeResult:
        yield from self.lines

    def configure(self, schema: list[Pane]) -> None:
        """The lines the run announced, when they are not the ones shown."""
        if not schema:
            return
        self.display = len(schema) > self.index
        if not self.display:
            return
        pane = schema[self.index]
        self.border_title = pane.title
        if [(line.key, line.label.strip(), line.fmt) for line in self.lines] == [tuple(x) for x in pane.lines]:
            return
        kept = {line.key: line for line in self.lines}  # a new key joins: the others keep their curves
        for line in self.lines:
            line.remove()
        self.lines = []
        for key, label, fmt in pane.lines:
            line = MetricLine(key, label, fmt)
            if key in kept:
                line.values.extend(kept[key].values)
                line.steps.extend(kept[key].steps)
            line.marks = list(self.marks)
            self.lines.append(line)
        self.mount_all(self.lines)

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        for line in self.lines:
            line.add(rows)

    def mark(self, step: int) -> None:
        self.marks.append(step)
        for line in self.lines:
            line.mark(step)


class LossPane(MetricPane):
    PANE = 0


class HealthPane(MetricPane):
    PANE = 1
