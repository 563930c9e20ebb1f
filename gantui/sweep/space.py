"""What a sweep searches and what it optimises, from the command line, torch- and optuna-free:
`--space NAME=A,B,C` (a choice) or `NAME=LO..HI[:log]` (a range), each NAME one of gantui's
flags, each value checked by that flag's own rule before any trial starts; `--objective
KEY[:min|:max][:last]` read from a run's own rows."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from gantui.common import GantuiError, DEFAULT_SCHEMA
from gantui.config import Config, flag
from gantui.datasets import evaluation_off_reason
from gantui.penalties import PENALTIES

# A trial's own: where it lives and how it is run are the sweep's to say.
NOT_SEARCHED = {"out", "resume", "data_root", "data", "device"}
TRUE, FALSE = ("on", "true", "yes", "1"), ("off", "false", "no", "0")
# The figures of a run's evaluations (event "quality") and whether lower is better.
QUALITY = {"fid": "min", "kl": "min", "classes": "max", "confidence": "max", "score": "max"}
TRAINING = {line.key for pane in DEFAULT_SCHEMA for line in pane.lines} | {
    "grad_g", "grad_d", "images_per_s", "steps_per_s", *PENALTIES}


class SpaceError(GantuiError, ValueError):
    """A --space or --objective that cannot be searched; one line."""


@dataclass(frozen=True)
class Param:
    """One searched setting: a choice of values, or a range (`low`..`high`, on a log scale or not)."""

    name: str  # the config's name (lr, d_steps, spectral_norm)
    kind: type
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    def flags(self, value: Any) -> list[str]:
        if self.kind is bool:
            return [f"--{flag(self.name)}" if value else f"--no-{flag(self.name)}"]
        return [f"--{flag(self.name)}", str(value)]


@dataclass(frozen=True)
class Objective:
    key: str
    direction: str  # "minimize" or "maximize"
    last: bool  # the value at the run's end, not its best
    quality: bool  # from the evaluations' rows, not the training rows

    def value(self, values: list[float]) -> float | None:
        """The run's figure from its values of `key`, in order (the non-finite left out)."""
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return None
        return finite[-1] if self.last else (min if self.direction == "minimize" else max)(finite)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b


def searchable(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The train parser's flags that are settings of a run's recipe or schedule, by config name."""
    names = set(Config.settings()) - NOT_SEARCHED
    return {a.dest: a for a in parser._actions if a.dest in names}


def parse_space(texts: list[str], trial_flags: list[str]) -> list[Param]:
    """Every --space, each value checked by its flag among the trials' own flags."""
    from gantui.cli.train import train_parser

    actions = searchable(train_parser())
    params: list[Param] = []
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise SpaceError(f"--space {text}: write NAME=A,B,C or NAME=LO..HI[:log]")
        if name not in actions:
            raise SpaceError(f"--space {text}: no setting named {name!r} (one of: {', '.join(sorted(actions))})")
        if any(p.name == name for p in params):
            raise SpaceError(f"--space {text}: {name} is searched twice")
        action = actions[name]
        kind = bool if isinstance(action, argparse.BooleanOptionalAction) else action.type or str
        param = parse_values(text, name, kind, values.strip())
        for value in param.choices or (param.low, param.high):
            check_flags(trial_flags + param.flags(value), f"--space {text}")
        params.append(param)
    return params


def parse_values(text: str, name: str, kind: type, values: str) -> Param:
    if ".." in values:
        if kind not in (int, float):
            raise SpaceError(f"--space {text}: {name} takes values, not a range")
        span, _, scale = values.partition(":")
        if scale not in ("", "log"):
            raise SpaceError(f"--space {text}: a range ends in :log or nothing, not :{scale}")
        low, high = (number(end, kind, text) for end in span.split("..", 1))
        if not low < high:
            raise SpaceError(f"--space {text}: an empty range ({low} is not below {high})")
        if scale and low <= 0:
            raise SpaceError(f"--space {text}: a log scale starts above 0")
        return Param(name, kind, low=low, high=high, log=bool(scale))
    choices = tuple(dict.fromkeys(typed(v.strip(), kind, text) for v in values.split(",")))
    return Param(name, kind, choices=choices)


def number(text: str, kind: type, where: str) -> float:
    value = typed(text.strip(), kind, where)
    if not math.isfinite(value):
        raise SpaceError(f"--space {where}: {text} is not a finite number")
    return value


def typed(text: str, kind: type, where: str) -> Any:
    if kind is bool:
        if text.lower() in TRUE + FALSE:
            return text.lower() in TRUE
        raise SpaceError(f"--space {where}: {text!r} is not on or off")
    try:
        return kind(text)
    except ValueError:
        raise SpaceError(f"--space {where}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None


def check_flags(argv: list[str], where: str) -> Config:
    """The config a trial's flags give, by the flags' own rules; a refusal names `where`."""
    from gantui.cli.resolve import given_settings
    from gantui.cli.train import train_parser

    parser = train_parser()

    def refuse(message: str):
        raise SpaceError(f"{where}: {message}")

    parser.error = refuse  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    try:
        return Config.from_dict(given_settings(args)).validate()
    except GantuiError as err:
        raise SpaceError(f"{where}: {err}") from None


def parse_objective(text: str, config: Config) -> Objective:
    """KEY[:min|:max][:last]: an evaluation's figure (fid, kl, classes, confidence, score: their
    direction known) or a training row's (its direction given); refused where no trial logs it."""
    key, *modes = text.split(":")
    unknown = [m for m in modes if m not in ("min", "max", "last", "best")]
    if unknown or len(set(modes)) != len(modes):
        raise SpaceError(f"--objective {text}: write KEY[:min|:max][:last], e.g. fid, fid:last, loss_d:max")
    given = [m for m in modes if m in ("min", "max")]
    if len(given) > 1:
        raise SpaceError(f"--objective {text}: :min or :max, not both")
    if key in QUALITY:
        off = evaluation_off_reason(config.dataset) or ("--eval-every 0" if config.eval_every == 0 else None)
        if off:
            raise SpaceError(f"--objective {text}: the trials are not evaluated ({off})")
        direction = given[0] if given else QUALITY[key]
    elif key in TRAINING:
        if not given:
            raise SpaceError(f"--objective {text}: say whether lower or higher is better: {key}:min or {key}:max")
        direction = given[0]
    else:
        raise SpaceError(f"--objective {text}: no trial logs {key!r} (evaluations: {', '.join(QUALITY)}; "
                         f"training rows: {', '.join(sorted(TRAINING))})")
    return Objective(key, "minimize" if direction == "min" else "maximize", "last" in modes, key in QUALITY)
