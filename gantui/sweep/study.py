"""A sweep's directory and its Optuna study: `SWEEP/sweep.json` names the storage and the study,
whose user attributes hold the sweep's spec (so `--join URL --study NAME` needs nothing else);
`SWEEP/trials/` holds a run a trial; `SWEEP/workers/` a lock per process working on it here."""
from __future__ import annotations

import fcntl
import math
import re
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gantui.common import GantuiError
from gantui.run.rundir import atomic_write
from gantui.sweep.space import Objective, Param

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")


class SweepError(GantuiError, RuntimeError):
    """A sweep that cannot start or join; one line."""


@dataclass(frozen=True)
class Spec:
    """What every worker of a sweep does alike."""

    storage: str
    study: str
    trials: int
    space: tuple[str, ...]  # the --space texts
    objective: str
    sampler: str
    pruner: str
    flags: tuple[str, ...]  # every trial's own gantui flags

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        return cls(**{**data, "space": tuple(data["space"]), "flags": tuple(data["flags"])})


class SweepDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.file = self.path / "sweep.json"
        self.trials = self.path / "trials"
        self.workers = self.path / "workers"

    def exists(self) -> bool:
        return self.file.is_file()

    def read(self) -> tuple[str, str]:
        """The storage URL and the study's name."""
        try:
            data = json.loads(self.file.read_text())
            return data["storage"], data["study"]
        except (OSError, ValueError, KeyError, TypeError):
            raise SweepError(f"{self.path}: not a sweep (no readable sweep.json)") from None

    def make(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SweepError(f"{self.path}: cannot make the sweep's directory ({err.strerror or err})") from None

    def write(self, storage: str, study: str) -> None:
        self.make()
        text = json.dumps({"storage": storage, "study": study}, indent=1) + "\n"
        try:
            atomic_write(self.file, lambda f: f.write(text.encode()))
        except OSError as err:
            raise SweepError(f"{self.path}: cannot write the sweep there ({err.strerror or err})") from None

    def host_workers(self) -> Path:
        return self.workers / socket.gethostname()

    def hold(self) -> int:
        """This process's lock among the sweep's workers (the kernel drops it when the process dies)."""
        try:
            self.host_workers().mkdir(parents=True, exist_ok=True)
            fd = os.open(self.host_workers() / f"{os.getpid()}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise SweepError(f"{self.path}: cannot work there ({err.strerror or err})") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def live_workers(self) -> list[int]:
        """The pids of this host's processes working on the sweep now."""
        pids = []
        for lock in self.host_workers().glob("*.lock"):
            try:
                fd = os.open(lock, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pids.append(int(lock.stem))
            finally:
                os.close(fd)
        return pids


def default_storage(sweep: SweepDir) -> str:
    return f"sqlite:///{sweep.path / 'study.db'}"


def storage_for(url: str):
    """An Optuna storage from its URL: any RDB URL, or `journal:PATH` (a journal file on a shared disk)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return optuna.storages.RDBStorage(url, heartbeat_interval=None)


def sampler_for(name: str, params: list[Param]):
    import optuna

    if name == "grid":
        if ranges := [p.name for p in params if not p.choices]:
            raise SweepError(f"--sampler grid: {ranges[0]} is a range; a grid searches values (NAME=A,B,C)")
        return Grid({p.name: list(p.choices) for p in params})
    if name == "random":
        return optuna.samplers.RandomSampler()
    return optuna.samplers.TPESampler(constant_liar=True)  # trials at once do not all ask for the same point


def grid_size(params: list[Param]) -> int:
    return math.prod(len(p.choices) for p in params)


def Grid(space: dict[str, list[Any]]):
    """Optuna's grid sampler for ask and tell: its `after_trial` stops the study once the grid is
    done, which only an `optimize` loop can be (elsewhere it raises); the sweep counts its own."""
    import optuna

    class AskAndTellGrid(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            pass

    return AskAndTellGrid(space)


def pruner_for(name: str, trials: int):
    """The median pruner waits for a quarter of the trials (at most Optuna's 5) before it prunes:
    with its default 5 a sweep of 8 would hardly ever prune."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, trials // 4)))
    return optuna.pruners.HyperbandPruner() if name == "hyperband" else optuna.pruners.NopPruner()


def distributions(params: list[Param]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    def of(p: Param):
        if p.choices:
            return CategoricalDistribution(p.choices)
        return (IntDistribution if p.kind is int else FloatDistribution)(p.low, p.high, log=p.log)

    return {p.name: of(p) for p in params}


def open_study(spec: Spec, params: list[Param], objective: Objective, create: bool):
    """The study, created with the spec in its user attributes, or loaded (`create=False`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line a trial is the sweep's to print
    try:
        storage = storage_for(spec.storage)
        if create:
            study = optuna.create_study(storage=storage, study_name=spec.study, direction=objective.direction,
                                        sampler=sampler_for(spec.sampler, params), pruner=pruner_for(spec.pruner, spec.trials))
            study.set_user_attr("gantui", {k: v for k, v in spec.to_json().items() if k != "storage"})  # no password
        else:
            study = optuna.load_study(study_name=spec.study, storage=storage,
                                      sampler=sampler_for(spec.sampler, params), pruner=pruner_for(spec.pruner, spec.trials))
    except GantuiError:
        raise
    except optuna.exceptions.DuplicatedStudyError:
        raise SweepError(f"--study {spec.study}: {safe(spec.storage)} holds a study of that name already: join it "
                         f"with --join, or name another with --study") from None
    except Exception as err:  # the storage's own: an unreachable server, a bad URL, a missing driver
        raise SweepError(f"--storage {safe(spec.storage)}: {first_line(err)}") from None
    return study


def spec_of_study(url: str, name: str) -> Spec:
    """The spec a sweep's study holds, for a worker joining it from its storage alone."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summaries = optuna.study.get_all_study_summaries(storage_for(url), include_best_trial=False)
    except Exception as err:
        raise SweepError(f"--join {safe(url)}: {first_line(err)}") from None
    found = next((s for s in summaries if s.study_name == name), None)
    if found is None:
        names = ", ".join(s.study_name for s in summaries) or "none"
        raise SweepError(f"--join {safe(url)}: no study named {name!r} there (studies: {names})")
    if "gantui" not in found.user_attrs:
        raise SweepError(f"--join {safe(url)} --study {name}: not a gantui sweep's study")
    return Spec.from_json({**found.user_attrs["gantui"], "storage": url, "study": name})


def safe(url: str) -> str:
    """A storage URL fit to print: its password hidden."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
