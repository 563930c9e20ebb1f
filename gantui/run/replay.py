"""A run that nobody serves, read back from its directory: curves, quality, the newest grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gantui.common import panes
from gantui.run import events as ev
from gantui.datasets import describe_config, evaluation_off_reason
from gantui.run.history import History
from gantui.run.rundir import RunDir
from gantui.run.runs import run_state

GRID_PADDING = 2  # torchvision's make_grid default, which the trainer's sample grids use


def grid_tiles(path: Path, tile: int = 28, channels: int = 1) -> np.ndarray:
    """The tiles of a saved sample grid as uint8 (N, tile, tile), or (N, tile, tile, 3) in colour."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    step = tile + GRID_PADDING
    cols, rows = (pixels.shape[1] - GRID_PADDING) // step, (pixels.shape[0] - GRID_PADDING) // step
    return np.stack([pixels[GRID_PADDING + r * step:][:tile, GRID_PADDING + c * step:][:, :tile]
                     for r in range(rows) for c in range(cols)])


def replay_snapshot(run_dir: RunDir) -> ev.Started:
    config, status = run_dir.read_config(), run_dir.read_status()
    rows = run_dir.read_metrics_bounded()  # a run of millions of rows: its shape and its recent past
    history = list(History(r for r in rows if is_metrics(r)))
    quality = list(History(r for r in rows if r.get("event") == "quality"))
    sets = [r for r in rows if r.get("event") == "set"]
    step = max([r["step"] for r in history] + [status.get("step", 0)])
    shape = config.get("image_shape") or describe_config(config).shape
    preview = None
    for grid_step, grid in reversed(run_dir.grids()):  # the newest readable one
        try:
            preview = ev.Preview(grid_step, grid_tiles(grid, shape[1], shape[0]))
            break
        except (OSError, ValueError):
            continue
    can = ev.Capabilities.read(config.get("capabilities"), config.get("producer"))
    state = run_state(run_dir)
    finished = ev.Finished(state, step, checkpoint=str(run_dir.last) if run_dir.last.exists() else None,
                           error=status.get("error"))
    return ev.Started(
        run_dir=str(run_dir.path), device=config.get("resolved_device", "?"), step=step,
        total_steps=status.get("total_steps") or (step if can.epochs else 0), steps_per_epoch=0, config=config, history=history,
        quality=quality, state=state, epoch=(history[-1].get("epoch", 1) - 1) if history else 0,
        images_per_s=history[-1].get("images_per_s") or 0.0 if history else 0.0, preview=preview,
        finished=finished, live=False, schema=panes(config.get("schema")), sets=sets,
        elapsed=max((status.get("updated") or 0) - (status.get("started") or 0), 0), image_shape=list(shape),
        evaluation=config["evaluation"] if "evaluation" in config else evaluation_off_reason(config.get("dataset", "mnist")),
        class_names=config.get("class_names"), tunable=config.get("tunable"),
        settings=config.get("settings"), locked=config.get("locked") or [],
        capabilities=can, producer=config.get("producer", "gantui"))


def is_metrics(row: dict) -> bool:
    """A row of the curves (not a resume, a rollback, a set, an evaluation)."""
    return "event" not in row and isinstance(row.get("step"), int)
