"""The GPU pane screenshot (screenshots/gpus.svg): the dashboard on a scripted run whose rows carry
four GPUs' figures, as a fake NVML gives them (no GPU has run gantui yet).

    python scripts/screenshot_gpus.py screenshots/gpus.svg
"""
from __future__ import annotations

import asyncio
import math
import sys

from gantui.run import events as ev
from gantui.ui.demo import ScriptedEngine, scripted_app

class FourGPUs(ScriptedEngine):
    def run(self):
        self.emit(ev.Started(run_dir="/srv/runs/2026-12-02-dcgan", device="cuda:0", step=0, total_steps=28110,
                             steps_per_epoch=937, config={"batch_size": 64}))
        for i in range(1, 400):
            gpus = [{"kind": "GPU", "util": u, "mem": 41200.0 + 300 * k, "mem_total": 81559.0, "power": 540.0 + 20 * k,
                     "temp": 61.0 + k} for k, u in enumerate((97.0, 96.0, 98.0, 71.0))]
            self.emit(ev.Metrics({"step": 10 * i, "epoch": 1, "loss_g": 1.5 + math.sin(i / 20) / 3 + 1 / (1 + i / 30),
                                  "loss_d": 0.9 - math.sin(i / 20) / 5, "d_real": 0.7 + math.sin(i / 15) / 10,
                                  "d_fake": 0.3 - math.sin(i / 15) / 10, "acc_real": 0.8, "acc_fake": 0.75,
                                  "images_per_s": 41000.0, "rank_images_per_s": [10500.0, 10400.0, 10600.0, 9500.0],
                                  "devices": gpus}))
        self._stop.wait(60)
        return ev.Finished("stopped", self.step)

async def main():
    app = scripted_app(FourGPUs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(3)
        app.clear_notifications()
        await pilot.pause(0.5)
        app.save_screenshot(sys.argv[1])
        app.trainer.stop()
        await pilot.press("q")

asyncio.run(main())
