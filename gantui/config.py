"""Every knob of a training run, its default and its validation, in one frozen dataclass; what
may change while it trains is a small object of its own (`Live`)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from gantui.common import GantuiError
from gantui.datasets import DATASETS, FOLDER, IMAGE_SIZES
from gantui.penalties import PENALTIES

LOSSES = ("ns", "minimax", "hinge", "wgan-gp", "lsgan")
NOISES = ("normal", "uniform")
AUGMENTS = ("color", "translation", "cutout")
COLLAPSE_ACTIONS = ("warn", "pause")
# What can change while a run trains (the dashboard's form, `set` on the socket), each checked
# by the same rule as its flag; and each penalty's weight (`live_settings`).
LIVE = {"lr_g": "G learning rate", "lr_d": "D learning rate", "d_steps": "D steps per G step",
        "ema": "EMA decay (0 off)"}
PRECISIONS = ("auto", "bf16", "fp32")
TIMED = ("log_every", "sample_every", "save_every", "eval_every")  # the intervals that may follow the clock
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def default_eval_every(device_type: str) -> int:
    """Steps between quality evaluations that keep them to a few % of the training time: a CPU step
    takes ~0.15 s and an evaluation ~0.9 s (1.2% at 500, benchmarks/eval_cost.py); on CUDA a step
    is expected ~1000x faster and an evaluation ~50x (an estimate: not measured yet)."""
    return 2000 if device_type == "cuda" else 500


class ConfigError(GantuiError, ValueError):
    """A bad setting; its message is one line meant for the user."""


def knob(default: Any, help: str | None, metavar: str | None = None, recipe: bool = False) -> Any:
    """A setting that is also a flag of `gantui`, with its help (None: a hidden flag), its metavar
    (integers show N and numbers X unless named) and whether it is one of the recipe's flags. A
    help that does not speak of its default is followed by it (cli/train.py, docs' flags table)."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "recipe": recipe})


def live_settings() -> dict[str, str]:
    """The live settings and their labels: the recipe's, each registered penalty's weight before
    the EMA's decay."""
    rates = {k: v for k, v in LIVE.items() if k != "ema"}
    return {**rates, **{p.key: p.setting for p in PENALTIES.values()}, "ema": LIVE["ema"]}


@dataclass(frozen=True)
class Config:
    dataset: str = knob("mnist", f"training data: {', '.join(DATASETS)} (default mnist; the others are downloaded "
                                 "on first use)", "NAME")
    data_root: str | None = knob(None, "where the datasets' files are, or go when downloaded (default: the user "
                                       "cache dir)", "DIR")
    data: str | None = knob(None, "train on a folder of images (png, jpg, jpeg, webp, bmp; found recursively)", "DIR")
    image_size: int | None = knob(None, "a folder's images are centre-cropped and resized to "
                                        "32, 64 or 128 (default 64)")
    channels: int | None = knob(None, "a folder's images as 1 (grey) or 3 (RGB) channels (default: grey only "
                                      "when all are)")
    epochs: int = knob(30, "epochs to train")
    steps: int | None = knob(None, "stop after N steps in all; overrides --epochs")
    batch_size: int = knob(64, "images per step and process (default 64); with N processes a step trains on N "
                               "times as many")
    lr: float = knob(2e-4, "Adam learning rate for G and D")
    lr_g: float | None = knob(None, "G's learning rate (two time-scale updates; default --lr)")
    lr_d: float | None = knob(None, "D's learning rate (default --lr)")
    beta1: float = knob(0.5, "Adam beta1")
    beta2: float = 0.999
    z_dim: int = knob(100, "latent size")
    seed: int = knob(0, "random seed")
    loss: str = knob("ns", f"objective: {', '.join(LOSSES)} (default ns: non-saturating BCE)", "NAME", recipe=True)
    # Each registered penalty's weight (penalties.py: its flag --KEY, a flat key of config.json);
    # None or missing: its default for the loss
    penalties: Mapping[str, float | None] = field(default_factory=dict)
    # The penalties this run computes and reports, and builds D for (a gradient penalty wants D
    # without batch norm): those on at its first start, and any turned on at a resume since; a
    # weight set to 0 later keeps one on, at 0. None: those with a weight now (a fresh run).
    penalties_on: tuple[str, ...] | None = None
    spectral_norm: bool = knob(False, "spectral normalisation on D's layers", recipe=True)
    ema: float = knob(0.0, "decay of an EMA of G for previews, grids, evaluation and sample (e.g. 0.999; "
                           "default 0: off)", recipe=True)
    d_steps: int = knob(1, "D (critic) steps per G step, each on a new batch", recipe=True)
    noise: str = knob("normal", f"latent distribution: {', '.join(NOISES)}", "NAME", recipe=True)
    diffaug: str = knob("", f"differentiable augmentation for D: a comma list of {', '.join(AUGMENTS)}",
                        "POLICIES", recipe=True)
    conditional: bool = knob(False, "class-conditional G and D (projection discriminator); previews one row per "
                                    "class", recipe=True)
    on_collapse: str = knob("warn", "when the mode-collapse warning fires: warn (default) or pause the run",
                            "ACTION", recipe=True)
    device: str = knob("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps", "DEVICE")
    precision: str = knob("auto", "auto (bf16 autocast on CUDA and on CPUs with AMX), bf16 or fp32", "MODE")
    compile: bool = knob(False, "torch.compile the models: a slow first step, then faster ones")
    sync_bn: bool = knob(False, "with several processes on CUDA: batch norm over every process's batch "
                                "(SyncBatchNorm)")
    out: str | None = knob(None, "run directory (default: a new one under the user data dir)", "DIR")
    log_every: int = knob(10, "steps per metrics line")
    sample_every: int = knob(500, "steps per PNG grid in samples/")
    save_every: int = knob(1000, "steps per checkpoint")
    keep: int = knob(3, "periodic checkpoints kept beside last.pt")
    eval_every: int | None = knob(None, "steps per quality evaluation, 0 for none (default 500; 2000 on CUDA)")
    eval_n: int = knob(2000, "images generated per evaluation")
    # Intervals that follow the clock (engine/intervals.py): on CUDA, those whose flag was not given
    timed: tuple[str, ...] = ()
    preview_count: int = 64  # size of the fixed preview noise batch
    resume: str | None = knob(None, "continue from a checkpoint file or a run directory", "PATH")
    fault_nan_step: int | None = knob(None, None)  # test hook: the metrics go NaN at this step

    def validate(self) -> Config:
        """Raise ConfigError naming the first bad field; return the config resolved: lr_g and lr_d
        filled in (from lr), each penalty's weight (from the loss), the live settings checked."""
        if not (isinstance(self.lr, float | int) and 0 < self.lr < 1):
            raise ConfigError(f"--lr must be between 0 and 1, got {self.lr!r}")
        if unknown := [key for key in self.penalties if key not in PENALTIES]:
            raise ConfigError(f"unknown penalty {unknown[0]!r} (registered: {', '.join(PENALTIES)})")
        weights = {key: penalty.default_for(self.loss) if self.penalties.get(key) is None else self.penalties[key]
                   for key, penalty in PENALTIES.items()}
        live = {"lr_g": self.lr if self.lr_g is None else self.lr_g, "lr_d": self.lr if self.lr_d is None else self.lr_d,
                "d_steps": self.d_steps, "ema": self.ema, **weights}
        live = {name: check_live(name, value) for name, value in live.items()}
        penalties = MappingProxyType({key: live.pop(key) for key in weights})  # frozen, as the config is
        on = set(self.penalties_on or ()) | {key for key, weight in penalties.items() if weight}
        return replace(self, penalties=penalties, penalties_on=tuple(k for k in PENALTIES if k in on),
                       timed=tuple(self.timed), **live)._check()

    @property
    def d_batch_norm(self) -> bool:
        """Whether D is built with batch norm (where its layout has any: not the 28x28 one)."""
        return not (self.spectral_norm or any(not PENALTIES[key].batch_norm for key in self.penalties_on or ()))

    def _check(self) -> Config:
        positive = ("epochs", "batch_size", "z_dim", "log_every", "sample_every", "save_every", "keep", "preview_count")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.eval_every is not None and (not isinstance(self.eval_every, int) or self.eval_every < 0):
            raise ConfigError(f"--eval-every must be zero (off) or a positive integer, got {self.eval_every!r}")
        if not isinstance(self.eval_n, int) or self.eval_n < 100:
            raise ConfigError(f"--eval-n must be an integer of at least 100, got {self.eval_n!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps <= 0):
            raise ConfigError(f"--steps must be a positive integer, got {self.steps!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and 0 <= value < 1):
                raise ConfigError(f"--{name} must be in [0, 1), got {value!r}")
        choices = {"loss": LOSSES, "noise": NOISES, "on_collapse": COLLAPSE_ACTIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{flag(name)}: unknown {getattr(self, name)!r} (choose from: {', '.join(allowed)})")
        unknown = [a for a in self.augments() if a not in AUGMENTS]
        if unknown:
            raise ConfigError(f"--diffaug: unknown {unknown[0]!r} (choose from: {', '.join(AUGMENTS)})")
        if self.dataset not in DATASETS and self.dataset != FOLDER:
            raise ConfigError(f"unknown dataset {self.dataset!r} (choose from: {', '.join(DATASETS)}; "
                              "or --data DIR, a folder of images)")
        if (self.dataset == FOLDER) != bool(self.data):
            raise ConfigError("--data DIR trains on a folder of images; it cannot go with --dataset")
        if self.conditional and self.dataset == FOLDER:
            raise ConfigError("--conditional needs a dataset with labels; a folder of images has none")
        for name, allowed in (("image_size", IMAGE_SIZES), ("channels", (1, 3))):
            value = getattr(self, name)
            if value is not None and self.dataset != FOLDER:
                raise ConfigError(f"--{flag(name)} applies to a folder of images (--data DIR); "
                                  f"{self.dataset} is {DATASETS[self.dataset].shape[1]}x{DATASETS[self.dataset].shape[2]}")
            if value is not None and value not in allowed:
                raise ConfigError(f"--{flag(name)} must be one of {', '.join(map(str, allowed))}, got {value!r}")
        if not DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"unknown device {self.device!r} (use auto, cpu, cuda, cuda:N or mps)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r} (choose from: {', '.join(PRECISIONS)})")
        if self.seed < 0:
            raise ConfigError(f"--seed must be zero or positive, got {self.seed}")
        if unknown := [k for k in self.timed if k not in TIMED]:
            raise ConfigError(f"timed intervals: unknown {unknown[0]!r} (known: {', '.join(TIMED)})")
        return self

    def augments(self) -> list[str]:
        return [a.strip() for a in self.diffaug.split(",") if a.strip()]

    def to_dict(self) -> dict[str, Any]:
        """Flat: each penalty's weight under its own key, as its flag names it."""
        flat = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "penalties"}
        return {**flat, **self.penalties, "penalties_on": list(self.penalties_on or ())}

    @staticmethod
    def settings() -> list[str]:
        """The names `to_dict` gives and `from_dict` reads: the fields, and each penalty's key."""
        return [f.name for f in fields(Config) if f.name != "penalties"] + list(PENALTIES)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """A config.json or a checkpoint's config; a setting this gantui does not know is left out."""
        penalties = {key: data[key] for key in PENALTIES if key in data}
        own = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("penalties", "penalties_on")}
        on = data.get("penalties_on")
        return cls(**own, penalties=penalties, penalties_on=tuple(k for k in on if k in PENALTIES) if isinstance(
            on, list | tuple) else None)

    @classmethod
    def of(cls, **settings: Any) -> Config:
        """`from_dict` for code: an unknown setting is an error, not left out."""
        if unknown := [k for k in settings if k not in cls.settings()]:
            raise ConfigError(f"unknown setting {unknown[0]!r}")
        return cls.from_dict(settings)

    # Settings that must match for a checkpoint to load into a run.
    SHAPE_KEYS = ("dataset", "image_size", "channels", "z_dim", "conditional", "spectral_norm")


def flag(name: str) -> str:
    return name.replace("_", "-")


def check_live(name: str, value: Any) -> Any:
    """One live setting checked as its flag is (the same message); returns the value as stored."""
    number = isinstance(value, float | int) and not isinstance(value, bool)
    if name in ("lr_g", "lr_d"):
        if not (number and 0 < value < 1):
            raise ConfigError(f"--{flag(name)} must be between 0 and 1, got {value!r}")
        return float(value)
    if name == "d_steps":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
            raise ConfigError(f"--d-steps must be an integer from 1 to 100, got {value!r}")
        return value
    if name in PENALTIES:
        if not (number and 0 <= value <= 1e4):
            raise ConfigError(f"--{name} must be from 0 (off) to 10000, got {value!r}")
        return float(value)
    if name == "ema":
        if not (number and (value == 0 or 0.5 <= value < 1)):
            raise ConfigError(f"--ema must be 0 (off) or a decay in [0.5, 1), e.g. 0.999, got {value!r}")
        return float(value)
    raise ConfigError(f"{name!r} cannot be changed while training (live: {', '.join(live_settings())})")


def check_live_values(values: Any) -> dict[str, Any]:
    """A `set` command's values, each checked; ConfigError for the first bad one."""
    if not isinstance(values, dict) or not values:
        raise ConfigError("set: \"values\" must be an object of settings, e.g. {\"lr_g\": 0.0001}")
    return {name: check_live(name, value) for name, value in values.items()}


@dataclass
class Live:
    """What changes while a run trains (the dashboard's form, `set`, a rollback's halved rates):
    the GAN owns it and the steering changes it, at a step boundary; the run's Config stays as it
    was resolved. A checkpoint's config holds these values, so a resume continues with them."""

    lr_g: float
    lr_d: float
    d_steps: int
    ema: float
    penalties: dict[str, float]

    @classmethod
    def of(cls, config: Config) -> Live:
        return cls(config.lr_g, config.lr_d, config.d_steps, config.ema, dict(config.penalties))

    def get(self, name: str) -> Any:
        return self.penalties[name] if name in self.penalties else getattr(self, name)

    def update(self, values: dict[str, Any]) -> None:
        """Values checked already (check_live_values)."""
        for name, value in values.items():
            if name in PENALTIES:
                self.penalties[name] = value
            else:
                setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return {"lr_g": self.lr_g, "lr_d": self.lr_d, "d_steps": self.d_steps, "ema": self.ema, **self.penalties}
