"""A PyTorch Lightning logger that publishes to gantui (`pip install gantui[lightning]`).

    logger = GantuiLogger(name="gan")
    trainer = Trainer(logger=logger, callbacks=[logger.callback()])

The logger takes `gantui.init`'s arguments; `log_metrics` and `log_hyperparams` as every Lightning
logger, `log_images(images, step)` for the Samples pane. A logger never sees the Trainer, so its
callback is what steers it: a watcher's pause holds the loop at the end of the batch, and a stop
sets the Trainer's own `should_stop` (Lightning then ends the fit as it does for early stopping).
Rank zero alone publishes (`rank_zero_only`), as in every Lightning logger.
"""
from __future__ import annotations

from argparse import Namespace
from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:
    try:
        from pytorch_lightning.callbacks import Callback
        from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
        from pytorch_lightning.utilities import rank_zero_only
    except ImportError:
        raise ImportError("gantui.lightning needs PyTorch Lightning: pip install 'gantui[lightning]'") from None

from gantui.run.api import init
from gantui.run.loop import json_ready


class GantuiLogger(Logger):
    def __init__(self, name: str | None = None, out: str | None = None, **init_args: Any) -> None:
        super().__init__()
        self._name, self._out, self._init_args = name, out, init_args
        self._run: Any = None

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The gantui run (made at first use, on rank zero)."""
        if self._run is None:
            self._run = init(name=self._name, out=self._out, **self._init_args)
        return self._run

    @property
    def name(self) -> str:
        return self._name or "gantui"

    @property
    def version(self) -> str:
        return self.experiment.path.name if getattr(self.experiment, "path", None) else "0"

    @property
    def save_dir(self) -> str | None:
        path = getattr(self.experiment, "path", None)
        return str(path) if path else None

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        run = self.experiment
        if hasattr(run, "user_config"):
            run.user_config.update(json_ready(vars(params) if isinstance(params, Namespace) else dict(params)))
            run._write_config()

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.experiment.log(dict(metrics), step=step)

    @rank_zero_only
    def log_images(self, images: Any, step: int | None = None) -> None:
        self.experiment.log_images(images, step=step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._run is not None:
            self._run.finish(error="the fit failed" if status == "failed" else None)

    def callback(self) -> Callback:
        """The Trainer callback that honours a watcher's pause and stop."""
        return GantuiSteering(self)


class GantuiSteering(Callback):
    def __init__(self, logger: GantuiLogger) -> None:
        self.logger = logger

    def on_train_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if not trainer.is_global_zero:
            return
        run = self.logger.experiment
        run.poll()  # a pause waits here; saves and settings are done here
        if run.should_stop:
            trainer.should_stop = True
