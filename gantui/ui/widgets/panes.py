"""The dashboard's panes as one widget: the metric panes (as many as the run announces), Quality,
Samples and the devices; what a run's snapshot, its rows and its live changes put in them."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from gantui.common import Pane
from gantui.datasets import describe_config, evaluation_off_reason
from gantui.run import events as ev
from gantui.run.rundir import RunDir
from gantui.ui.widgets.device_pane import DevicePane
from gantui.ui.widgets.metric_pane import HealthPane, LossPane, MetricPane
from gantui.ui.widgets.preview_pane import PreviewPane
from gantui.ui.widgets.quality_pane import QualityPane


class Panes(Horizontal):
    def __init__(self) -> None:
        super().__init__(id="main")
        self.loss_pane = LossPane()
        self.health_pane = HealthPane()
        self.metric_panes: list[MetricPane] = [self.loss_pane, self.health_pane]  # as many as the run announces
        self.quality_pane = QualityPane()
        self.preview_pane = PreviewPane()
        self.device_pane = DevicePane()

    def compose(self) -> ComposeResult:
        with Vertical(id="left"):
            yield self.loss_pane
            yield self.health_pane
            yield self.quality_pane
        with Vertical(id="right"):
            yield self.preview_pane
            yield self.device_pane

    def show_run(self, event: ev.Started) -> None:
        """A run as it stands (a fresh run, a resumed one, a late joiner's snapshot): its panes, its
        past curves and live changes, its evaluations or why there are none, its images' shape."""
        self.configure(event.schema, event.capabilities.panes, started=True)
        for pane in self.metric_panes:
            if event.history:  # a resumed run's past curves, or a late joiner's
                pane.add(event.history)
            for change in event.sets:
                pane.mark(change["step"])
        if event.history:
            self.device_pane.show(event.history[-1])
        self.quality_pane.add(event.quality)
        self.quality_pane.display = event.capabilities.evaluates  # a loop of the user's is not evaluated here
        if event.image_shape is None:  # a run from before runs announced it
            off = evaluation_off_reason(event.config.get("dataset", "mnist")) or (
                "" if event.config.get("eval_every") == 0 else None)
        else:
            off = event.evaluation
        if off is not None:
            self.quality_pane.off(off or "--eval-every 0")
        shape = event.image_shape or describe_config(event.config).shape
        self.preview_pane.channels, self.preview_pane.image_size = shape[0], shape[1]
        self.preview_pane.run_dir = RunDir(event.run_dir)  # over ssh, a path this machine may not have
        if event.preview is not None:
            self.preview_pane.show(event.preview)

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        for pane in self.metric_panes:
            pane.add(rows)
        self.device_pane.show(rows[-1])

    def mark(self, step: int) -> None:
        """A live change of settings: a marker on every curve."""
        for pane in self.metric_panes:
            pane.mark(step)

    def configure(self, schema: list[Pane], shown: int, started: bool) -> None:
        """A pane for each group of figures the run announced (a loop's grow as it logs new keys);
        `shown`: how many the run's capabilities allow (0: all)."""
        if not schema and started and not shown:
            schema = [Pane("metrics")]  # a loop that has logged nothing yet
        if shown:
            schema = schema[:shown]  # the trainer's third pane (gradients, when the second is full) is the log's only
        left = self.query_one("#left")
        while len(self.metric_panes) < len(schema):
            pane = MetricPane(len(self.metric_panes))
            self.metric_panes.append(pane)
            left.mount(pane, before=self.quality_pane)
        for pane in self.metric_panes:
            pane.configure(schema)
