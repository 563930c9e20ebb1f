"""What `gantui.init` is given, as people pass it: read into plain values before anything is opened.

A config may be a dict, any mapping, an `argparse.Namespace` (wandb takes one), a
`SimpleNamespace` or a dataclass; a device anything with a text (`torch.device("cuda")`); a
number a numpy or torch scalar (`total_steps=np.int64(...)`, `tunable={"lr": np.float32(...)}`).
What cannot be read is a TypeError or ValueError naming the argument, raised before the run
directory is locked or its socket bound.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class Arguments:
    """`init`'s arguments as plain values."""

    def __init__(self, name: Any, config: Any, out: Any, tunable: Any, total_steps: Any, device: Any) -> None:
        self.name = None if name is None else str(name)
        self.config = as_config(config)
        self.out = None if out is None else Path(os.fspath(out)).expanduser().resolve()
        self.tunable = as_tunable(tunable)
        self.total_steps = as_steps(total_steps)
        self.device = str(device)


def as_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return {str(k): v for k, v in config.items()}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if hasattr(config, "__dict__") and not isinstance(config, type):  # argparse.Namespace, SimpleNamespace
        return {str(k): v for k, v in vars(config).items() if not str(k).startswith("_")}
    raise TypeError(f"gantui: init(): config must be a dict, a mapping, an argparse.Namespace or a "
                    f"dataclass, got {type(config).__name__}")


def as_number(value: Any) -> float | None:
    """A real number (a numpy or torch scalar too) as a float; None for anything else."""
    if isinstance(value, bool | str | bytes):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "dtype"):  # a numpy or torch scalar, a one-element array
        try:
            return float(value)
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def as_tunable(tunable: Any) -> dict[str, float]:
    tunable = as_config(tunable)
    out = {}
    for key, value in tunable.items():
        number = as_number(value)
        if number is None:
            raise TypeError(f"gantui: init(): the live setting {key!r} must be a number, got {value!r}")
        out[key] = number
    return out


def as_steps(total_steps: Any) -> int | None:
    if total_steps is None:
        return None
    number = as_number(total_steps)
    if number is None or not number.is_integer() or number < 0:
        raise TypeError(f"gantui: init(): total_steps must be a whole number of steps, got {total_steps!r}")
    return int(number)
