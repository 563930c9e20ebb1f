"""One line: device, epoch, step, images/s, elapsed, ETA, run directory."""
from __future__ import annotations

from textual.widgets import Static

from gantui.common import eta_seconds, format_duration


class StatusLine(Static):
    def show(self, *, device: str, state: str, epoch: int | None, step: int, total: int, images_per_s: float | None,
             steps_per_s: float, elapsed: float, run_dir: str, batch: tuple[int, int] | None = None) -> None:
        """`epoch` and `images_per_s` None: a loop of the user's (steps/s instead, no epoch);
        `total` 0: its length is not known (no ETA); `batch`: (processes, images per process) of a
        torchrun job, shown as its global batch."""
        eta = eta_seconds(step, total, steps_per_s)
        rate = f"{steps_per_s:,.1f} steps/s" if images_per_s is None else f"{images_per_s:,.0f} img/s"
        self.update(
            f"[b]{state}[/b] │ step {step}{f'/{total}' if total else ''} │ {rate}"
            + (f" │ ETA {'?' if eta is None else format_duration(eta)}" if total else "")
            + (f" │ epoch {epoch}" if epoch is not None else "")
            + (f" │ batch {batch[0] * batch[1]} ({batch[0]}×{batch[1]})" if batch else "")
            + f" │ {format_duration(elapsed)} elapsed │ {device} │ [dim]{run_dir}[/dim]",
            layout=False,  # one line, always: no layout pass for the whole screen each second
        )
