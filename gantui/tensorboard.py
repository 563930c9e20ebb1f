"""TensorBoard's `SummaryWriter`, published to gantui: change one import and watch the run.

    from gantui.tensorboard import SummaryWriter   # was: from torch.utils.tensorboard import ...

The subset GAN code uses: `add_scalar`, `add_scalars`, `add_image`, `add_images`, `add_text`,
`flush`, `close`, `log_dir`. The run's directory is `log_dir`. Scalars of one step become one
row (TensorBoard writes one event per call; gantui's curves want the step's figures together), so
a step's row goes out when a later step begins, or at `flush`/`close`. A watcher's pause holds the
loop inside the call that starts a new step; `writer.should_stop` says when someone stopped it.
Other methods (histograms, graphs, embeddings) are accepted and ignored, with one warning each.
"""
from __future__ import annotations

import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gantui.run.combine import number
from gantui.run.images import layout
from gantui.run.api import init

IMAGE_FORMATS = {"CHW", "HWC", "HW", "NCHW", "NHWC"}


class SummaryWriter:
    def __init__(self, log_dir: str | Path | None = None, comment: str = "", *args: Any, **kwargs: Any) -> None:
        if log_dir is None:  # TensorBoard's own default
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = Path("runs") / f"{stamp}_{socket.gethostname()}{comment}"
        self.log_dir = str(log_dir)
        self.run = init(name=Path(self.log_dir).name, out=self.log_dir)
        self._step: int | None = None
        self._row: dict[str, Any] = {}
        self._warned: set[str] = set()

    @property
    def should_stop(self) -> bool:
        return self.run.should_stop

    def _at(self, step: int | None) -> int:
        """The step a call is for; a new one sends the previous step's row."""
        step = self._step if step is None else int(step)
        step = 0 if step is None else step
        if step != self._step:
            self._send()
            self._step = step
        return step

    def _send(self) -> None:
        if self._row and self._step is not None:
            row, self._row = self._row, {}
            self.run.log(row, step=self._step)

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None, *args: Any, **kwargs: Any) -> None:
        value = number(tag, scalar_value)  # a bad value is a TypeError here, in the caller's line
        self._at(global_step)
        self._row[tag] = value

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict[str, Any], global_step: int | None = None,
                    *args: Any, **kwargs: Any) -> None:
        for tag, value in tag_scalar_dict.items():
            self.add_scalar(f"{main_tag}/{tag}", value, global_step)

    def add_images(self, tag: str, img_tensor: Any, global_step: int | None = None, walltime: Any = None,
                   dataformats: str = "NCHW") -> None:
        step = self._at(global_step)
        images = as_batch(img_tensor, dataformats.upper())
        self._send()  # the step's figures first, so the images' step is on the curves
        self.run.log_images(images, step=step)

    def add_image(self, tag: str, img_tensor: Any, global_step: int | None = None, walltime: Any = None,
                  dataformats: str = "CHW") -> None:
        self.add_images(tag, img_tensor, global_step, walltime, dataformats)

    def add_text(self, tag: str, text_string: str, global_step: int | None = None, *args: Any, **kwargs: Any) -> None:
        from gantui.run import events as ev

        step = self._at(global_step)
        if hasattr(self.run, "row"):
            self.run.row({"event": "text", "step": step, "tag": tag, "text": str(text_string)})
            self.run.publish(ev.Notice(f"{tag}: {text_string}"))

    def flush(self) -> None:
        self._send()
        if hasattr(self.run, "writer"):
            self.run.writer.sync()

    def close(self) -> None:
        self._send()
        self.run.finish()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        self._send()
        self.run.__exit__(kind, error, tb)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("add_"):
            raise AttributeError(name)

        def ignored(*args: Any, **kwargs: Any) -> None:
            if name not in self._warned:
                self._warned.add(name)
                print(f"gantui: SummaryWriter.{name} is not shown by gantui; ignored", file=sys.stderr)
        return ignored


def as_batch(images: Any, dataformats: str) -> Any:
    """Images in TensorBoard's `dataformats` as a batch gantui reads without guessing (NCHW, NHWC)."""
    if dataformats not in IMAGE_FORMATS:
        raise ValueError(f"dataformats {dataformats!r}: use one of {', '.join(sorted(IMAGE_FORMATS))}")
    if len(images.shape) != len(dataformats):
        raise ValueError(f"an image array of shape {tuple(images.shape)} is not {dataformats}")
    if dataformats in ("CHW", "HWC", "HW"):
        images = images[None]
        dataformats = "N" + dataformats
    if dataformats == "NHW":
        images = images[:, None]
    elif dataformats == "NHWC":
        images = images.permute(0, 3, 1, 2) if hasattr(images, "permute") else images.transpose(0, 3, 1, 2)
    layout(tuple(images.shape))  # ValueError naming a shape that cannot be images
    return images
