"""One line: device, epoch, step, images/s, elapsed, ETA, run directory."""
from __future__ import annotations

from textual.widgets import Static

from gantui.common import eta_seconds, format_duration


class StatusLine(Static):
    def show(self, *, device: str, state: str, epoch: int, step: int, total: int, images_per_s: float,
             steps_per_s: float, elapsed: float, run_dir: str) -> None:
        eta = eta_seconds(step, total, steps_per_s)
        self.update(
            f"[b]{state}[/b] │ step {step}/{total} │ {images_per_s:,.0f} img/s"
            f" │ ETA {'?' if eta is None else format_duration(eta)} │ epoch {epoch} │ {format_duration(elapsed)} elapsed"
            f" │ {device} │ [dim]{run_dir}[/dim]",
            layout=False,  # one line, always: no layout pass for the whole screen each second
        )
