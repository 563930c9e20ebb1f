"""`gantui.init`: a run for a loop of the user's own, and what finishes it when the loop does not.

Only global rank 0 publishes. Under an initialised torch.distributed every other rank gets a run
that writes nothing but takes part in the steering (loopranks.py: a pause, stop, save or setting
reaches every rank at one step); under torchrun's RANK without one, a `NullRun`. A run the script forgot to finish
is finished at exit (as an error when an uncaught exception ended the script: `sys.excepthook`
is chained, never replaced). No signal handler is installed in the user's process.
"""
from __future__ import annotations

import atexit
import os
import re
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from gantui.common import say
from gantui.run.arguments import Arguments, checker
from gantui.run.loop import Run, ending
from gantui.run.nullrun import NullRun
from gantui.run.loopranks import job
from gantui.run.publisher import Publisher
from gantui.run.rundir import RunDirBusy, runs_root

_open_runs: weakref.WeakSet[Any] = weakref.WeakSet()
_owned: weakref.WeakSet[Any] = weakref.WeakSet()  # opened with reinit=False: no later init finishes them
_uncaught: list[BaseException] = []  # what ended the script: an uncaught exception, sys.exit's SystemExit
_steps_at_exit: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # each open run's step at sys.exit


def global_rank() -> int:
    """This process's rank under torch.distributed or torchrun; 0 when not distributed."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def default_out(name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60]
    base = runs_root() / (time.strftime("%Y%m%d-%H%M%S") + (f"-{safe}" if safe else ""))
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def init(name: str | None = None, config: dict[str, Any] | None = None, out: str | os.PathLike | None = None, *,
         tunable: dict[str, float] | None = None, total_steps: int | None = None, device: str = "your loop",
         serve: bool = True, quiet: bool = False, ranks: bool = True, reinit: bool = True,
         steer: str = "log") -> Run | NullRun:
    """A run for a loop of your own: its directory (`out`, or a new one under the runs directory),
    served to `gantui watch` from the start. Prints how to watch it unless `quiet`. `ranks=False`:
    under torch.distributed this rank's run is steered alone, not with the other ranks (a
    rank-zero-only logger with nothing on the other ranks to agree with). `reinit=False`: leave
    the runs already open in this process as they are, and this one is not finished by a later
    `init` either (an adapter that owns its runs: TensorBoard's train and val writers). With
    `ranks=True` a run made before the process group joins the ranks at its first step boundary
    once it is up. `steer`: which calls are step boundaries (a pause waits there; under
    torch.distributed the ranks agree there): "log" (default) `log` and `poll`; "poll" `poll` alone,
    for an integration that calls `poll` on every rank at the same points and `log` on some
    (Lightning's callback)."""
    if steer not in ("log", "poll"):
        raise ValueError(f"gantui: init(steer=...) takes 'log' or 'poll', not {steer!r}")
    world = job() if ranks else None
    if world is None and global_rank() != 0:
        return NullRun()  # no process group to agree through
    given = Arguments(name, config, out, tunable, total_steps, device)  # read (or refused) before anything is held
    name, config, tunable, total_steps, device = given.name, given.config, given.tunable, given.total_steps, given.device
    if reinit:
        finish_previous()
    path = given.out or default_out(name or "")
    opening = (name or path.name, dict(config or {}), dict(tunable or {}), total_steps, device)
    steering = {"steer": steer, "ranks": world, "join_ranks": ranks}
    try:
        if world is not None and world[0] != 0:  # rank 0's path reaches it at the first step boundary
            publisher = Publisher.for_rank(path)
        else:
            publisher = Publisher.for_loop(path, serve=serve, check_set=checker(dict(tunable or {})) if tunable else None)
        run = opened(publisher, opening, steering)
    except (OSError, RunDirBusy) as err:  # gantui's own I/O never ends the user's run
        say(f"gantui: warning: the run is not published ({err})")
        if world is None:
            return NullRun()
        publisher = Publisher.for_rank(path)  # rank 0 still takes part in the steering
        return Run(publisher, *opening, **steering)
    if not publisher.writes:
        return run
    _open_runs.add(run)
    if not reinit:
        _owned.add(run)
    if not quiet:
        say(f"gantui: publishing to {run.path}; watch it with: gantui watch {run.path}")
    _install_hooks()
    return run


def opened(publisher: Publisher, opening: tuple, steering: dict[str, Any]) -> Run:
    """The run opened on `publisher`, or, when that fails, the publisher closed (its lock and socket
    released) before the error goes on."""
    try:
        return Run(publisher, *opening, **steering)
    except BaseException:
        publisher.close()
        raise


def finish_previous() -> None:
    """A second `init` in one process (a notebook cell run twice) finishes the run before, as wandb
    does; not a run opened with `reinit=False`, whose adapter finishes it."""
    for run in list(_open_runs):
        if not run._ended and run not in _owned:
            say(f"gantui: init() again: the previous run is finished ({run.path})")
            run.finish()


_hooked = False


def _install_hooks() -> None:
    """At exit, finish what the loop left open: as an error when an exception or `sys.exit` with a
    non-zero status ended the script, as stopped after a Ctrl-C (`sys.exit` is wrapped to learn
    its status, as wandb does: an atexit hook cannot read it)."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    previous, previous_exit = sys.excepthook, sys.exit

    def excepthook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        _uncaught.append(error)
        previous(kind, error, tb)

    def exit(status: Any = None) -> Any:
        _uncaught.append(SystemExit(status))
        _steps_at_exit.clear()
        _steps_at_exit.update((run, run.step) for run in _open_runs)
        return previous_exit(status)

    sys.excepthook, sys.exit = excepthook, exit

    @atexit.register
    def finish_open_runs() -> None:
        last = _uncaught[-1] if _uncaught else None
        if isinstance(last, SystemExit) and went_on():
            last = None  # a sys.exit the script caught: the program went on, and ended normally
        reason, error = ending(last)
        for run in list(_open_runs):
            if reason is None:
                run.finish()
            else:
                run._finish(reason, error)


def went_on() -> bool:
    """Whether a run logged (or one was opened) after the last `sys.exit`: then its SystemExit
    was caught and is not what ended the script."""
    return any(run not in _steps_at_exit or run.step != _steps_at_exit[run] for run in _open_runs)
