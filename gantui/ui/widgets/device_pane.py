"""The GPU pane: a line per rank's device, from the newest metrics row (utilisation, memory,
power, temperature of a GPU; CPU use and memory of a CPU process; or why NVML gave none)."""
from __future__ import annotations

from typing import Any

from textual.widgets import Static

from gantui.common import device_lines


class DevicePane(Static):
    def on_mount(self) -> None:
        self.display = False  # until a row says what the devices do

    def show(self, row: dict[str, Any]) -> None:
        lines = device_lines(row)
        if not lines:
            return
        kinds = {d.get("kind") for d in row.get("devices") or []}
        self.border_title = "GPUs" if "GPU" in kinds or row.get("devices_note") else "CPU"
        self.styles.height = len(lines) + 2  # one line each, and the border
        self.display = True
        self.update("\n".join(lines))
