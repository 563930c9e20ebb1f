"""A user's loop under torch.distributed: every rank takes part in the steering.

`gantui.init` on every rank: rank 0's run publishes, the others' write nothing; all of them agree
(run/agreement.py, the built-in trainer's protocol) at the loop's step boundaries, so a pause, a
stop, a save and live settings reach every rank at the same step. Torch-free at import.
"""
from __future__ import annotations

import itertools
import math
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from gantui.common import say
from gantui.run import events as ev
from gantui.run.agreement import GROUP_TIMEOUT, JOIN_TIMEOUT, LOOP_PERIOD, MARK_WAIT, Ranks, settle
from gantui.run.rundir import RunDir

_serial = itertools.count()  # the nth gantui.init of this process meets the others' nth


def job() -> tuple[int, int] | None:
    """(rank, size) under an initialised torch.distributed of several processes, else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    return dist.get_rank(), dist.get_world_size()


def ranks_boundary(run: Any, step: float | None) -> bool:
    """A run's step boundary among the ranks; False: no agreement (none yet, or steered alone).
    A run made before torch.distributed was up (`init(ranks=True)` on rank 0 before the process
    group, as Lightning's logger is) joins at its first boundary once it is. The exchange is done
    by the first thread that reached a boundary alone: collectives from two threads would cross."""
    if run._ranks is None:
        with run._rows.lock:  # one agreement, whichever thread comes first
            world = run._ranks is None and job()
            if world:
                run._ranks = LoopRanks(run, *world)
    ranks = run._ranks
    if ranks is None or ranks.alone:
        return False
    me = threading.get_ident()
    with run._rows.lock:
        run._boundary_thread = run._boundary_thread or me
    if me == run._boundary_thread:
        ranks.boundary(run.step if step is None else step)
    return True


class LoopSide:
    """A loop's run as the protocol sees it (agreement.Side)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.controls = run._pub.controls

    def commands(self, pending: dict[str, Any]) -> None:
        self.run._commands(pending)

    def announce(self, paused: bool) -> None:
        run = self.run
        if paused:
            run._flush_row()
        run._pub.status("paused" if paused else "training", step=run.step, total_steps=run._total_steps)
        run._pub.publish(ev.Paused(paused, run.step))


class LoopRanks:
    """The agreement at a loop's step boundaries.

    A boundary's step is the largest a rank has reached (`log`'s step, or its count of calls
    without one; `poll(step=...)`), so every rank meets an agreed step at the same call of a loop
    they all run, however many calls one rank adds at a step (Lightning's logger on rank 0). The
    first agreement is at the first boundary; each names the next from rank 0's clock (LOOP_PERIOD
    at its step rate), in the exchange itself. The ranks meet on a gloo group of their own, made by
    every rank at the first boundary once rank 0 has seen every rank's gantui.init (Roll): a
    script that calls `gantui.init` on rank 0 alone is steered there alone, with one warning, at
    once; a rank that called it but never reaches a boundary costs JOIN_TIMEOUT once. Never a
    hang."""

    def __init__(self, run: Any, rank: int, size: int) -> None:
        self.side = LoopSide(run)
        self.run = run
        self.ranks = Ranks(rank, size)
        self.roll = Roll(rank, size)
        self.at = -math.inf
        self.next = -math.inf
        self.joined = False
        self.alone = False  # the others never came, or an exchange failed: steered here alone
        self.stopped = False  # agreed: every rank leaves its loop at this step
        self._since: tuple[float, float] | None = None  # (step, time) at the last agreement

    def boundary(self, step: float) -> None:
        """A step boundary of the loop's: a compare, and at an agreed step the exchange."""
        if step > self.at:
            self.at = step
        if self.at < self.next or self.alone:
            return
        if job() is None:  # the process group destroyed (a last log after it, at exit): alone, quietly
            self.alone = True
            return
        side, main = self.side, self.ranks.main
        pending = side.controls.pending() if main else {}
        try:
            if not self.joined:
                self._join()
            agreed = self.ranks.agree({"stop": side.controls.stopped, "pause": main and side.controls.paused,
                                       "save": "save" in pending, "set": "set" in pending, "row_in": self._lead()})
            self.next = self.at + max(1, int(agreed["row_in"]))
            self.stopped = settle(self.ranks, agreed, pending, side) or self.stopped
        except Exception as err:  # a rank gone, a timeout: the loop goes on, steered here alone
            self.alone = True
            if not isinstance(err, _Alone):
                self._warn(f"the ranks no longer agree ({type(err).__name__}: {err}); from here on a pause, stop, "
                              "save or setting reaches this rank alone")
            side.commands(pending)

    def _warn(self, text: str) -> None:
        """Rank 0's to its watchers and stderr; another rank's to its stderr."""
        if self.ranks.main:
            self.run._pub.publish(ev.Notice(text, "warning"))
        else:
            say(f"gantui: rank {self.ranks.rank}: warning: {text}")

    def _lead(self) -> float:
        """Rank 0: the steps to the next agreement, from its step rate since the last one."""
        if not self.ranks.main:
            return 0.0
        now = time.monotonic()
        since, self._since = self._since, (self.at, now)
        if since is None or now <= since[1]:
            return 1.0
        return float(max(1, round((self.at - since[0]) / (now - since[1]) * LOOP_PERIOD)))

    def _join(self) -> None:
        """The ranks' own gloo group (a CPU group, whatever the job's default backend: a pause
        waits there), made by every rank at its first boundary; rank 0's run directory is sent to
        the others (their `run.path`)."""
        import torch.distributed as dist

        word = self.roll.word()
        if word != "join":
            self._warn(self.roll.why(word))
            raise _Alone
        try:
            group = dist.new_group(backend="gloo", timeout=JOIN_TIMEOUT)
        except Exception as err:
            who = "the other ranks" if self.ranks.main else "rank 0"
            self._warn(f"{who} did not reach the loop's first step boundary within {JOIN_TIMEOUT.seconds} s "
                          f"({type(err).__name__}): under torch.distributed every rank calls gantui.init and "
                          "run.log (or run.poll(step=...)) at the same steps (docs/loop.md: Distributed); a pause, stop, "
                          "save or setting reaches this rank alone")
            raise _Alone from None
        group.set_timeout(GROUP_TIMEOUT)
        self.ranks.group = group
        self.joined = True
        pub = self.run._pub
        path = self.ranks.broadcast(str(pub.path) if pub.writes else None)
        if path and not pub.writes:
            pub.dir = RunDir(path)


class _Alone(Exception):
    """Out of `_join` once its warning is given."""


class Roll:
    """Which ranks came, known before any rank calls `new_group` (which waits for every rank):
    each rank's gantui.init marks itself in the job's store (the default group's), and at its first
    boundary rank 0 writes the word every rank follows: "join" once every rank has marked itself
    (waiting MARK_WAIT at most, and only for ranks not yet marked), else the ranks missing. A rank
    whose rank 0 never says (it called gantui.init but reaches no boundary) writes "late" after
    JOIN_TIMEOUT; the first word written is everyone's (`compare_set`), so no rank meets alone."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size = rank, size
        self.store: Any = None  # None: no store to be had; the ranks meet in new_group (JOIN_TIMEOUT)
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self.prefix = f"gantui/loop/{restart}/{next(_serial)}/"
        try:
            from torch.distributed import distributed_c10d

            store = distributed_c10d._get_default_store()
            store.set(f"{self.prefix}rank{rank}", "1")
            self.store = store
        except Exception:  # a store of another kind, none: new_group alone decides
            pass

    def word(self) -> str:
        """'join', 'missing R,S' (rank 0 went on without them) or 'late' (a rank waited for rank 0)."""
        store, key = self.store, f"{self.prefix}word"
        if store is None:
            return "join"
        try:
            if self.rank == 0:
                missing, deadline = self.missing(range(1, self.size)), time.monotonic() + MARK_WAIT
                while missing and time.monotonic() < deadline:
                    time.sleep(0.05)
                    missing = self.missing(missing)
                said = "join" if not missing else "missing " + ",".join(map(str, missing))
            else:
                try:
                    store.wait([key], JOIN_TIMEOUT)
                except Exception:  # rank 0 never came to its first boundary
                    pass
                said = "late"
            value = store.compare_set(key, "", said)
            return value.decode() if isinstance(value, bytes) else str(value)
        except Exception as err:  # the store gone: the ranks no longer agree
            return f"store {type(err).__name__}: {err}"

    def missing(self, ranks: Iterable[int]) -> list[int]:
        """Those of `ranks` that have not called gantui.init (as far as the store says)."""
        ranks = list(ranks)
        if self.store.check([f"{self.prefix}rank{rank}" for rank in ranks]):
            return []
        return [rank for rank in ranks if not self.store.check([f"{self.prefix}rank{rank}"])]

    def why(self, word: str) -> str:
        """The warning for a word other than 'join'."""
        alone = ("a pause, stop, save or setting reaches this rank alone; for every rank to stop and pause "
                 "together, call gantui.init and run.log (or run.poll(step=...)) on every rank (docs/loop.md: Distributed)")
        if word.startswith("missing "):
            missing = word.split(" ", 1)[1].split(",")
            if str(self.rank) in missing:
                return f"this rank called gantui.init after rank 0 went on without it: {alone}"
            named = ",".join(missing[:8]) + (f",... ({len(missing)} ranks)" if len(missing) > 8 else "")
            return (f"rank{'s' * (len(missing) > 1)} {named} did not call gantui.init (within {MARK_WAIT:.0f} s of "
                    f"rank 0's first step boundary): {alone}")
        if word == "late":
            return (f"a rank waited {JOIN_TIMEOUT.seconds} s for rank 0's first step boundary and went on: "
                    f"{alone}")
        return f"the ranks cannot meet ({word}): {alone}"
