"""A PyTorch Lightning logger that publishes to gantui (`pip install gantui[lightning]`).

    logger = GantuiLogger(name="gan")
    trainer = Trainer(logger=logger, callbacks=[logger.callback()])

The logger takes `gantui.init`'s arguments; `log_metrics` and `log_hyperparams` as every Lightning
logger, `log_images(images, step)` for the Samples pane. A logger never sees the Trainer, so its
callback is what steers it: a watcher's pause holds the loop at the end of the batch, and a stop
sets the Trainer's own `should_stop` (Lightning then ends the fit as it does for early stopping).
Rank zero alone publishes (`rank_zero_only`), as in every Lightning logger. One run holds every
stage of a script (`validate`, `fit`, `test`...): it ends at a failure, at `logger.finish()`, or
at the script's exit. Works with either package, `lightning` or `pytorch-lightning`.
"""
from __future__ import annotations

import importlib
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

from gantui.run.api import init


def lightning_package() -> str:
    """`lightning.pytorch` or `pytorch_lightning`: the one the script imported, else the modern one.
    Both may be installed; the logger's classes must come from the Trainer's package, whose
    Trainer sets the rank that package's `rank_zero_only` reads."""
    names = ["lightning.pytorch", "pytorch_lightning"]
    if "pytorch_lightning" in sys.modules and "lightning" not in sys.modules:
        names.reverse()
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name
    raise ImportError("gantui.lightning needs Lightning: pip install 'gantui[lightning]'")


PACKAGE = lightning_package()
Callback = importlib.import_module(f"{PACKAGE}.callbacks").Callback
Logger = importlib.import_module(f"{PACKAGE}.loggers.logger").Logger
rank_zero_experiment = importlib.import_module(f"{PACKAGE}.loggers.logger").rank_zero_experiment
rank_zero_only = importlib.import_module(f"{PACKAGE}.utilities").rank_zero_only


def process_group() -> Any:
    """torch.distributed when a group of several processes is up, else None (torch not imported)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    return dist


class GantuiLogger(Logger):  # type: ignore[misc,valid-type]
    def __init__(self, name: str | None = None, out: str | None = None, **init_args: Any) -> None:
        super().__init__()
        self._name, self._out, self._init_args = name, out, init_args
        self._run: Any = None
        self._path: str | None = None  # the run's directory, as every rank knows it
        self._shared = False  # rank 0's directory sent to the other ranks
        self._steered = False  # callback() made: its callback brings every rank into the agreement

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The gantui run (made at first use, on rank zero)."""
        if self._run is None:
            # without the callback nothing runs on the other ranks: steered on rank 0 alone
            self._run = init(name=self._name, out=self._out, ranks=self._steered, reinit=False,
                             steer="poll" if self._steered else "log", **self._init_args)
        return self._run

    @property
    def name(self) -> str:
        return self._name or "gantui"

    @property
    def version(self) -> str:
        path = self._run_dir()
        return Path(path).name if path else "0"

    @property
    def save_dir(self) -> str | None:
        return self._run_dir()

    def _run_dir(self) -> str | None:
        """The run's directory on every rank, without the experiment (on the other ranks a dummy
        whose every attribute is a method). `out` when given; else rank 0's, sent to the other
        ranks in the first call each makes once torch.distributed is up: Lightning reads
        `save_dir` on every rank right after it starts the process group."""
        if self._out is not None:
            return str(Path(self._out).expanduser().resolve())
        dist = process_group()
        if dist is not None and not self._shared:
            box = [str(self.experiment.path or "") if dist.get_rank() == 0 else None]
            dist.broadcast_object_list(box, src=0)
            self._path, self._shared = box[0] or None, True
        elif self._path is None and not self._shared and rank_zero_only.rank == 0:
            self._path = str(self.experiment.path or "") or None
        return self._path

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        self.experiment.config.update(vars(params) if isinstance(params, Namespace) else params)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.experiment.log(dict(metrics), step=step)

    @rank_zero_only
    def log_images(self, images: Any, step: int | None = None) -> None:
        self.experiment.log_images(images, step=step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning calls this at the end of every stage (`fit`, `validate`, `test`, `predict`):
        what was logged is written out, and the next stage goes on in the same run. A failed
        stage ends it: stopped after a Ctrl-C, else an error with the exception's text (Lightning
        calls this while handling it)."""
        if self._run is None:
            return
        if status == "failed":
            kind, error, tb = sys.exc_info()
            if error is None:
                self._run.finish(error="a Lightning stage failed")
            else:
                self._run.__exit__(kind, error, tb)
        else:
            self._run.flush()

    def finish(self) -> None:
        """The run's end now (otherwise at the script's exit); what a later stage logs is dropped."""
        if self._run is not None:
            self._run.finish()

    def callback(self) -> Callback:
        """The Trainer callback that honours a watcher's pause and stop (on every rank)."""
        self._steered = True
        if self._run is not None:  # made before (log_hyperparams): joins the ranks all the same
            self._run.steer_with_poll()
        return GantuiSteering(self)


class GantuiSteering(Callback):  # type: ignore[misc,valid-type]
    """On every rank (the logger publishes on rank 0 alone): at the end of each batch the ranks
    agree (run/loopranks.py), so a watcher's pause holds every rank, a stop ends the fit on every
    rank at one step (EarlyStopping's way), and `s` saves a checkpoint through Lightning's
    `trainer.save_checkpoint`, which every rank calls (rank 0 writes it); the watchers are told
    where it went."""

    def __init__(self, logger: GantuiLogger) -> None:
        self.logger = logger
        self._run: Any = None
        self._trainer: Any = None

    def on_train_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self._trainer = trainer
        if self._run is None:  # rank 0's run publishes; another rank's writes nothing but takes part
            self._run = self.logger.experiment if trainer.is_global_zero else init(quiet=True, steer="poll")
            self._run.on_save(self._save)
        run = self._run
        run.poll(step=trainer.global_step)  # the step boundary on every rank: a pause waits here
        if run.should_stop and not trainer.should_stop:
            if run.ranks_agree:  # agreed: every rank stops at this step, so all meet here
                trainer.should_stop = trainer.strategy.reduce_boolean_decision(True, all=False)
            else:  # steered alone: a collective here would meet another rank's gradients
                trainer.should_stop = True

    def _save(self) -> str:
        path = f"{self._run.path}/checkpoints/step-{self._trainer.global_step}.ckpt"
        self._trainer.save_checkpoint(path)
        return path
