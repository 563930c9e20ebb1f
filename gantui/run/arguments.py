"""What `gantui.init` is given, as people pass it: read into plain values before anything is
opened; the config as config.json holds it (`run.config`), and the check of live settings.

A config may be a dict, any mapping, an `argparse.Namespace` (wandb takes one), a
`SimpleNamespace` or a dataclass; a device anything with a text (`torch.device("cuda")`); a
number a numpy or torch scalar (`total_steps=np.int64(...)`, `tunable={"lr": np.float32(...)}`).
What cannot be read is a TypeError or ValueError naming the argument, raised before the run
directory is locked or its socket bound.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Callable, Mapping
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


def json_ready(value: Any) -> Any:
    """A user's config as JSON: numbers (numpy's too), strings, lists and mappings kept, anything
    else (a torch.device, a Path, an enum) as its text."""
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_ready(v) for v in value]
    return str(value)


def checker(tunable: dict[str, float]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def check(values: dict[str, Any]) -> dict[str, Any]:
        for key in values:
            if key not in tunable:
                raise ValueError(f"{key!r} is not a live setting of this run (it declares: "
                                 f"{', '.join(tunable) or 'none'})")
        return {k: float(v) for k, v in values.items()}
    return check


class RunConfig(dict):
    """`run.config`: the loop's config as config.json holds it. `update(...)` adds to both, as
    wandb's `run.config.update` does, for what a loop learns after `init` (Lightning's
    hyperparameters, TensorBoard's `add_hparams`)."""

    def __init__(self, values: dict[str, Any], changed: Callable[[], Any]) -> None:
        super().__init__(values)
        self._changed = changed

    def update(self, *values: Any, **more: Any) -> None:  # type: ignore[override]
        super().update(json_ready(dict(*values, **more)))
        self._changed()
