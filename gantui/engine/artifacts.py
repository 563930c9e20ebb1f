"""What the built-in trainer leaves on disk beside what its run writes: checkpoints, sample grids,
error.log; written so that a failure (a full disk) is a notice and training goes on."""
from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch

from gantui.run import events as ev
from gantui.engine.checkpoint import link_latest, save_checkpoint
from gantui.run.publisher import Run


class Artifacts:
    def __init__(self, run: Run, keep: int) -> None:
        self.run_dir, self.keep, self.emit = run.dir, keep, run.publish

    def save_grid(self, images: torch.Tensor, step: int, nrow: int = 8, report: bool = True) -> Path | None:
        """Images in [-1, 1] as a PNG grid in samples/; with `report`, a failure is a notice."""
        from torchvision.utils import save_image  # imported late: it costs a second at start-up

        path = self.run_dir.sample_path(step)
        try:
            save_image(images.float(), path, nrow=nrow, normalize=True, value_range=(-1, 1))
        except OSError as err:
            if not report:
                raise
            path.unlink(missing_ok=True)
            self.emit(ev.Notice(f"sample grid at step {step} not written ({err.strerror or err})", "error"))
            return None
        return path

    def save_checkpoint(self, state: dict[str, Any], step: int) -> Path | None:
        """last.pt and a numbered copy, pruned to `keep`; a failure is reported, the previous one kept."""
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
            return None
        return path

    def error_log(self, text: str) -> None:
        try:
            (self.run_dir.path / "error.log").write_text(text)
        except OSError:  # a full disk: the one-line message still goes out
            pass
