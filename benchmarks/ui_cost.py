"""The UI thread's CPU time per dashboard update, by kind and terminal size.

    python benchmarks/ui_cost.py [--rgb] [--pictures]

Each update the trainer sends (a metrics row, a preview, a status repaint) costs the UI thread
CPU time while it holds the GIL the trainer needs; this prints that cost per update, after the
time the same loop costs with nothing to draw. A scripted engine drives the real dashboard
under Textual's test driver, so every layout is rendered as in a terminal. `--rgb`: a run of
64x64 RGB images (16 per preview, truecolour) in place of MNIST's digits. `--pictures`: a
preview's cost drawn at full resolution (sixel, Kitty graphics, iTerm2; 10x20-pixel cells, the
escapes written to /dev/null) beside half blocks, twice (the A/A pair: the noise between runs).
"""
from __future__ import annotations

import asyncio
import math
import os
import sys
import time

from gantui.engine.data import load_mnist_arrays
from gantui.run import events as ev
from gantui.ui.demo import FolderEngine, ScriptedEngine, disc_images, scripted_app
from gantui.ui.messages import message_for
from gantui.ui.pictures.terminal import Terminal

UPDATES = 30


def metrics_row(i: int) -> dict[str, float]:
    return {"step": 10 * i, "epoch": 1, "loss_d": 1.2 + 0.2 * math.sin(i / 5), "loss_g": 0.9 + 0.3 * math.cos(i / 7),
            "d_real": 0.6 + 0.1 * math.sin(i / 3), "d_fake": 0.4 + 0.1 * math.cos(i / 4),
            "acc_real": 0.7 + 0.2 * math.sin(i / 6), "acc_fake": 0.65 + 0.2 * math.cos(i / 5),
            "images_per_s": 5120.0, "time": 0.0}


async def costs(size: tuple[int, int], rgb: bool, pictures: str | None = None) -> dict[str, float]:
    """Milliseconds of UI-thread CPU per update of each kind (`pictures`: previews only, drawn so)."""
    app = scripted_app(FolderEngine if rgb else ScriptedEngine)
    images, per = (disc_images(16 * UPDATES, 64, seed=1), 16) if rgb else (load_mnist_arrays("test")[0], 64)
    if pictures is not None:
        app.pictures = Terminal(protocol=pictures, found=pictures, cell=(10, 20))
    kinds = {
        "idle": lambda i: None,
        "metrics": lambda i: app.post_message(message_for(ev.Metrics(metrics_row(200 + i)))),
        "preview": lambda i: app.post_message(message_for(ev.Preview(1200 + i, images[per * i:per * (i + 1)]))),
        "status": lambda i: app.show_status(),
    }
    if pictures is not None:
        kinds = {"idle": kinds["idle"], "preview": kinds["preview"]}
    result = {}
    async with app.run_test(size=size) as pilot:
        null = os.open(os.devnull, os.O_WRONLY)
        app.preview_pane.picture_layer.write = lambda data: os.write(null, data.encode())
        await pilot.pause(1.0)
        app.clear_notifications()
        await pilot.pause(0.3)
        for name, update in kinds.items():
            start = time.thread_time()
            for i in range(UPDATES):
                update(i)
                await pilot.pause(0.1)  # the screen refreshes in this pause
            result[name] = (time.thread_time() - start) / UPDATES * 1000
    idle = result.pop("idle")
    return {name: ms - idle for name, ms in result.items()}


def main() -> None:
    rgb = "--rgb" in sys.argv[1:]
    print(f"{'64x64 RGB' if rgb else 'MNIST'} previews")
    if "--pictures" in sys.argv[1:]:
        modes = ("blocks", "sixel", "kitty", "iterm", "blocks")
        print("| terminal | " + " | ".join(modes[:-1]) + " | blocks (A/A) |\n|---|" + "---:|" * len(modes))
        for size in ((80, 24), (200, 60)):
            ms = [asyncio.run(costs(size, rgb, mode))["preview"] for mode in modes]
            print(f"| {size[0]}x{size[1]} | " + " | ".join(f"{m:.1f} ms" for m in ms) + " |")
        return
    print("| terminal | metrics row | preview | status line |\n|---|---:|---:|---:|")
    for size in ((80, 24), (120, 40), (200, 60)):
        c = asyncio.run(costs(size, rgb))
        print(f"| {size[0]}x{size[1]} | {c['metrics']:.1f} ms | {c['preview']:.1f} ms | {c['status']:.1f} ms |")


if __name__ == "__main__":
    main()
