"""Every knob of a training run, its default and its validation, in one dataclass."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from typing import Any

DATASETS = ("mnist",)
PRECISIONS = ("auto", "bf16", "fp32")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def default_eval_every(device_type: str) -> int:
    """Steps between quality evaluations that keep them to a few % of the training time: a CPU step
    takes ~0.15 s and an evaluation ~0.9 s (1.2% at 500, benchmarks/eval_cost.py); on CUDA a step
    is expected ~1000x faster and an evaluation ~50x (an estimate: not measured yet)."""
    return 2000 if device_type == "cuda" else 500


class ConfigError(ValueError):
    """A bad setting; its message is one line meant for the user."""


@dataclass
class Config:
    dataset: str = "mnist"
    epochs: int = 30
    steps: int | None = None  # stop after this many steps; overrides epochs
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    z_dim: int = 100
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA and on CPUs with AMX, else fp32
    compile: bool = False  # torch.compile G and D: slower start, faster steady state
    out: str | None = None  # run directory; None picks one under the user data dir
    log_every: int = 10
    sample_every: int = 500
    save_every: int = 1000
    keep: int = 3  # periodic checkpoints kept beside last.pt
    eval_every: int | None = None  # steps per quality evaluation; 0 turns it off; None: see default_eval_every
    eval_n: int = 2000  # generated images per evaluation, from fixed latents
    preview_count: int = 64  # size of the fixed preview noise batch
    resume: str | None = None
    fault_nan_step: int | None = None  # test hook: the metrics go NaN at this step (hidden flag)

    def validate(self) -> Config:
        """Raise ConfigError naming the first bad field; return self when all are good."""
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
        if not (isinstance(self.lr, float | int) and 0 < self.lr < 1):
            raise ConfigError(f"--lr must be between 0 and 1, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and 0 <= value < 1):
                raise ConfigError(f"--{name} must be in [0, 1), got {value!r}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r} (choose from: {', '.join(DATASETS)})")
        if not DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"unknown device {self.device!r} (use auto, cpu, cuda, cuda:N or mps)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r} (choose from: {', '.join(PRECISIONS)})")
        if self.seed < 0:
            raise ConfigError(f"--seed must be zero or positive, got {self.seed}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # Settings that must match for a checkpoint to load into a run.
    SHAPE_KEYS = ("dataset", "z_dim")
