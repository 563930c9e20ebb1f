"""When the trainer's intervals fall: every N steps, or by the clock.

On the CPU a step takes a tenth of a second, and a metrics row every 10 steps, a grid every 500,
a checkpoint every 1,000 are a second, a minute and two apart. At a GPU's thousands of steps a
second the same step counts would log hundreds of rows and write a checkpoint every second, so
on CUDA the intervals whose flag was not given follow the clock instead (`Config.timed`, set by
the CLI), at the periods below; a flag given still wins. What each costs then stays a small,
fixed share of the time whatever the step rate: a row's one host read twice a second, a grid a
minute, a checkpoint (copied to the CPU, written in the background) and an evaluation every ten
minutes.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

PERIODS = {"log_every": 0.5, "sample_every": 60.0, "save_every": 600.0, "eval_every": 600.0}  # seconds


class Intervals:
    def __init__(self, steps: dict[str, int], timed: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.steps, self.timed, self.clock = steps, set(timed), clock
        self.last = {kind: clock() for kind in self.timed}

    def due(self, kind: str, step: int) -> bool:
        """Whether `kind`'s interval falls at this step (a timed one: its period has passed)."""
        if kind in self.timed:
            now = self.clock()
            if now - self.last[kind] < PERIODS[kind]:
                return False
            self.last[kind] = now
            return True
        every = self.steps[kind]
        return bool(every) and step % every == 0

    def describe(self) -> str:
        """For the run's first lines: what follows the clock."""
        return ", ".join(f"{kind.removesuffix('_every')} every {PERIODS[kind]:g} s" for kind in sorted(self.timed))
