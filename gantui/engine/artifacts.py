"""What the built-in trainer leaves on disk beside what its run writes: checkpoints, sample grids,
error.log; written so that a failure (a full disk) is a notice and training goes on."""
from __future__ import annotations

import errno
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gantui.run import events as ev
from gantui.engine.checkpoint import link_latest, save_checkpoint
from gantui.run.images import write_png
from gantui.run.publisher import Publisher


def cpu_copy(value: Any) -> Any:
    """A state with every tensor copied to the CPU: the loop may change its weights (in place)
    while the copy is written. On CUDA this is the one device read of a checkpoint."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: cpu_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(cpu_copy(v) for v in value)
    return value


class Artifacts:
    """Grids and checkpoints written off the training thread: a grid is made on the device and
    encoded to PNG by the run's writer; a checkpoint is copied to the CPU, then written (atomically)
    by a thread of its own, one at a time (a second waits for the first: never two at once)."""

    def __init__(self, run: Publisher, keep: int) -> None:
        self.run_dir, self.keep, self.emit, self.writer = run.dir, keep, run.publish, run.writer
        self._saving: threading.Thread | None = None

    def save_grid(self, images: torch.Tensor, step: int, nrow: int = 8) -> Path:
        """Images in [-1, 1] as a PNG grid in samples/ (what torchvision's save_image writes); a
        failure is a notice."""
        from torchvision.utils import make_grid  # imported late: it costs a second at start-up

        grid = make_grid(images.float(), nrow=nrow, normalize=True, value_range=(-1, 1))
        pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
        path = self.run_dir.sample_path(step)

        def write() -> None:
            try:
                write_png(path, pixels)
            except OSError as err:
                self.emit(ev.Notice(f"sample grid at step {step} not written ({err.strerror or err})", "error"))
        self.writer.task(write)
        return path

    def save_checkpoint(self, state: dict[str, Any], step: int, saved: Callable[[Path], Any]) -> None:
        """last.pt and a numbered copy, pruned to `keep`, written in the background; `saved(path)`
        once it is on disk. A failure is reported, the previous checkpoint kept."""
        self.wait()
        state = cpu_copy(state)
        self._saving = threading.Thread(target=self._write, args=(state, step, saved), name="gantui-checkpoint",
                                        daemon=True)
        self._saving.start()

    def wait(self) -> None:
        """Until the checkpoint in flight is written (before a rollback reads it, at the end)."""
        if self._saving is not None:
            self._saving.join()
            self._saving = None

    def _write(self, state: dict[str, Any], step: int, saved: Callable[[Path], Any]) -> None:
        path = self.run_dir.checkpoint_path(step)
        try:
            free = shutil.disk_usage(self.run_dir.checkpoints).free
            if self.run_dir.last.exists() and free < 2 * self.run_dir.last.stat().st_size:
                raise OSError(errno.ENOSPC, f"only {free / 1e6:.0f} MB free")
            save_checkpoint(state, path)
            link_latest(path, self.run_dir.last)
            self.run_dir.prune_checkpoints(self.keep)
        except OSError as err:
            self.emit(ev.Notice(f"checkpoint at step {step} not saved ({err.strerror or err}); "
                                "the previous one is intact", "error"))
            return
        saved(path)

    def error_log(self, text: str) -> None:
        try:
            (self.run_dir.path / "error.log").write_text(text)
        except OSError:  # a full disk: the one-line message still goes out
            pass
