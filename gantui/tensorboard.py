"""TensorBoard's `SummaryWriter`, published to gantui: change one import and watch the run.

    from gantui.tensorboard import SummaryWriter   # was: from torch.utils.tensorboard import ...

The subset GAN code uses: `add_scalar`, `add_scalars`, `add_image`, `add_images`, `add_text`,
`add_histogram` (four curves: mean, std, min, max), `add_figure` (an image), `add_hparams`
(config.json and a row), `flush`, `close`, `log_dir`, `get_logdir()`. The run's directory is
`log_dir`. Scalars of one step become one row (TensorBoard writes one event per call; gantui's
curves want the step's figures together), so a step's row goes out when a later step begins, at
`flush`/`close`, or at the script's exit. A call without `global_step` is a point of its own, as
in TensorBoard: it is for the current step, or the next one when its tag already has a value
there (a loop's `Loss/D` and `Loss/G` of one iteration stay one row). A watcher's pause holds the
loop inside the call that starts a new step; `writer.should_stop` says when someone stopped it.
Other methods (graphs, embeddings) are accepted and ignored, with one warning each; after
`close()` every call is ignored, as `log()` after `finish()` is.
"""
from __future__ import annotations

import atexit
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gantui.common import say
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
        self.run = init(name=Path(self.log_dir).name, out=self.log_dir, reinit=False)  # train and val writers side by side
        self._step: int | None = None
        self._row: dict[str, Any] = {}
        self._tags: set[str] = set()  # the tags given a value at the current step
        self._warned: set[str] = set()
        self._closed = False
        atexit.register(self._send)  # after init's own hook, so it runs first: the last row, then the end

    def get_logdir(self) -> str:
        return self.log_dir

    @property
    def should_stop(self) -> bool:
        return self.run.should_stop

    def _at(self, step: int | None, tag: str | None = None) -> int:
        """The step a call is for; a new one sends the previous step's row. Without a step: the
        current one, or the next when `tag` already has a value at the current one."""
        if step is None:
            step = 0 if self._step is None else self._step + (tag in self._tags)
        step = int(step)
        if step != self._step:
            self._send()
            self._step, self._tags = step, set()
        if tag is not None:
            self._tags.add(tag)
        return step

    def _send(self) -> None:
        if self._row and self._step is not None:
            row, self._row = self._row, {}
            self.run.log(row, step=self._step)

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None, *args: Any, **kwargs: Any) -> None:
        if self._closed:
            return
        value = number(tag, scalar_value)  # a bad value is a TypeError here, in the caller's line
        self._at(global_step, tag)
        self._row[tag] = value

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict[str, Any], global_step: int | None = None,
                    *args: Any, **kwargs: Any) -> None:
        for tag, value in tag_scalar_dict.items():
            self.add_scalar(f"{main_tag}/{tag}", value, global_step)

    def add_images(self, tag: str, img_tensor: Any, global_step: int | None = None, walltime: Any = None,
                   dataformats: str = "NCHW") -> None:
        if self._closed:
            return
        step = self._at(global_step)
        images = as_batch(img_tensor, dataformats.upper())
        self._send()  # the step's figures first, so the images' step is on the curves
        self.run.log_images(images, step=step)

    def add_image(self, tag: str, img_tensor: Any, global_step: int | None = None, walltime: Any = None,
                  dataformats: str = "CHW") -> None:
        self.add_images(tag, img_tensor, global_step, walltime, dataformats)

    def add_text(self, tag: str, text_string: str, global_step: int | None = None, *args: Any, **kwargs: Any) -> None:
        if self._closed:
            return
        self.run.notice(text_string, self._at(global_step), tag=tag)

    def add_histogram(self, tag: str, values: Any, global_step: int | None = None, *args: Any, **kwargs: Any) -> None:
        """Four curves, `tag/mean`, `tag/std`, `tag/min` and `tag/max`: gantui draws no histograms."""
        if self._closed:
            return
        for name, value in spread(tag, values).items():
            self.add_scalar(f"{tag}/{name}", value, global_step)

    def add_hparams(self, hparam_dict: dict[str, Any], metric_dict: dict[str, Any], hparam_domain_discrete: Any = None,
                    run_name: str | None = None, global_step: int | None = None) -> None:
        """The hyperparameters into config.json (`run.config`), the metrics into the step's row."""
        if self._closed:
            return
        self.run.config.update({key: plain(value) for key, value in hparam_dict.items()})
        for tag, value in metric_dict.items():
            self.add_scalar(tag, value, global_step)

    def add_figure(self, tag: str, figure: Any, global_step: int | None = None, close: bool = True,
                   *args: Any, **kwargs: Any) -> None:
        """A matplotlib figure (or a list of them) as an image, drawn by matplotlib's Agg canvas."""
        if self._closed:
            return
        pixels = [rendered(one, close) for one in (figure if isinstance(figure, list) else [figure])]
        if not pixels or any(p is None for p in pixels):
            return self._warn_once("add_figure", f"SummaryWriter.add_figure: a {type(figure).__name__} is not a "
                                   "figure gantui can draw (a matplotlib figure, with matplotlib installed); ignored")
        if len({p.shape for p in pixels}) == 1:
            import numpy as np

            self.add_images(tag, np.stack(pixels), global_step, dataformats="NHWC")
        else:
            for one in pixels:
                self.add_image(tag, one, global_step, dataformats="HWC")

    def flush(self) -> None:
        if self._closed:
            return
        self._send()
        self.run.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._send()
        self.run.finish()
        self._closed = True
        atexit.unregister(self._send)

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        if self._closed:
            return
        self._send()
        self.run.__exit__(kind, error, tb)
        self._closed = True
        atexit.unregister(self._send)

    def _warn_once(self, name: str, text: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            say(f"gantui: {text}")

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("add_"):
            raise AttributeError(name)

        def ignored(*args: Any, **kwargs: Any) -> None:
            self._warn_once(name, f"SummaryWriter.{name} is not shown by gantui; ignored")
        return ignored


def spread(tag: str, values: Any) -> dict[str, float]:
    """A histogram's values as four figures (a tensor's read from its device in one transfer)."""
    if hasattr(values, "detach"):
        import torch

        flat = values.detach().reshape(-1).double()
        size = flat.numel()
        figures = torch.stack([flat.mean(), flat.std(correction=0), flat.min(), flat.max()]).tolist() if size else []
    else:
        import numpy as np

        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        size = flat.size
        figures = [flat.mean(), flat.std(), flat.min(), flat.max()] if size else []
    if not size:
        raise ValueError(f"add_histogram: {tag!r} has no values")
    return dict(zip(("mean", "std", "min", "max"), map(float, figures)))


def plain(value: Any) -> Any:
    """A hyperparameter as JSON holds it: a tensor's or a numpy number's value, not its text."""
    return value.tolist() if hasattr(value, "tolist") else value


def rendered(figure: Any, close: bool) -> Any:
    """A figure's pixels (H, W, 4 uint8), drawn by its Agg canvas (pyplot's figures have one; a
    Figure made without pyplot is given one, as TensorBoard does); None if it is not a figure."""
    import numpy as np

    canvas = getattr(figure, "canvas", None)
    try:
        if canvas is not None and not hasattr(canvas, "buffer_rgba"):
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            canvas = FigureCanvasAgg(figure)
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())
    except Exception:  # not a figure, or matplotlib missing: the caller warns once
        return None
    pyplot = sys.modules.get("matplotlib.pyplot")
    if close and pyplot is not None:
        pyplot.close(figure)
    return pixels if pixels.ndim == 3 and pixels.dtype == np.uint8 else None


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
