"""When the trainer's intervals fall: every N steps, or by the clock.

On the CPU a step takes a tenth of a second, and a metrics row every 10 steps, a grid every 500,
a checkpoint every 1,000 are a second, a minute and two apart. At a GPU's thousands of steps a
second the same step counts would log hundreds of rows and write a checkpoint every second, so
on CUDA the intervals whose flag was not given follow the clock instead (`Config.timed`, set by
the CLI), at the periods below; a flag given still wins. What each costs then stays a small,
fixed share of the time whatever the step rate: a row's one host read twice a second, a grid a
minute, a checkpoint (copied to the CPU, written in the background) and an evaluation every ten
minutes.

A torchrun job's ranks each have a clock of their own, and the metrics row and the checkpoint are
taken by every rank at one step: rank 0's clock leads. At each row it names the step of the next
(its step rate times the period) and whether a checkpoint is due, in the row's one all-reduce, and
every rank follows (`lead`, `follow`). The grid and the evaluation are rank 0's alone: its clock.
A rollback takes the job back to an earlier step, and its intervals with it (`restart`): the next row
named before it lies past the step of the divergence, and a stop, a pause or a save waits for a row.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

PERIODS = {"log_every": 0.5, "sample_every": 60.0, "save_every": 600.0, "eval_every": 600.0}  # seconds
SHARED = ("log_every", "save_every")  # what every rank of a job takes at one step


class Intervals:
    def __init__(self, steps: dict[str, int], timed: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic, ranks: int = 1) -> None:
        self.steps, self.timed, self.clock = steps, set(timed), clock
        self.last = {kind: clock() for kind in self.timed}
        self.shared = self.timed & set(SHARED) if ranks > 1 else set()  # timed, and led by rank 0's clock
        self.next_row = steps["log_every"]  # the first row of a job's timed metrics: by steps
        self.checkpoint = False  # a job's timed checkpoint, agreed at the last row

    def due(self, kind: str, step: int) -> bool:
        """Whether `kind`'s interval falls at this step (a timed one: its period has passed)."""
        if kind in self.shared:
            if kind == "log_every":
                return step >= self.next_row
            due, self.checkpoint = self.checkpoint, False
            return due
        if kind in self.timed:
            return self._period_passed(kind)
        every = self.steps[kind]
        return bool(every) and step % every == 0

    def restart(self, step: int) -> None:
        """After a rollback to `step`, every rank: the job's next row falls as its first did, by
        steps from there, and a checkpoint agreed at the diverged row is dropped (the one rolled
        back to is on disk)."""
        self.next_row = step + self.steps["log_every"]
        self.checkpoint = False

    def lead(self, steps_per_s: float) -> dict[str, float]:
        """Rank 0, at a job's metrics row: the steps to the next row and whether a checkpoint is due,
        from its clock (a kind that counts steps: nothing)."""
        out = {}
        if "log_every" in self.shared:
            out["row_in"] = float(max(1, round(PERIODS["log_every"] * steps_per_s)))
        if "save_every" in self.shared:
            out["checkpoint"] = float(self._period_passed("save_every"))
        return out

    def follow(self, step: int, agreed: dict[str, float]) -> None:
        """Every rank, after the row's all-reduce: what rank 0 led."""
        if "log_every" in self.shared:
            self.next_row = step + int(agreed["row_in"])
        if "save_every" in self.shared:
            self.checkpoint = agreed["checkpoint"] > 0

    def _period_passed(self, kind: str) -> bool:
        now = self.clock()
        if now - self.last[kind] < PERIODS[kind]:
            return False
        self.last[kind] = now
        return True

    def describe(self) -> str:
        """For the run's first lines: what follows the clock."""
        return ", ".join(f"{kind.removesuffix('_every')} every {PERIODS[kind]:g} s" for kind in sorted(self.timed))
