"""What the ranks of a job agree on, for every producer: the built-in trainer under torchrun and a
user's loop under an initialised torch.distributed.

Rank 0 holds the controls a watcher steers (pause, stop, save, live settings); any rank may be
stopped (a signal). At steps every rank knows in advance they exchange FLAGS in one small
all-reduce (summed: any rank's yes is everyone's; `row_in`, rank 0's alone, names the steps to the
next exchange from its clock), and every rank does the outcome at that step: the settings (rank 0's,
sent to every rank), a save, a stop, a pause. While paused every rank waits in a loop of such
exchanges on a CPU (gloo) group that rank 0 answers several times a second, so no timeout of the
job's own group (NCCL's 10 minutes) is reached however long a pause lasts; a save or a setting
pressed meanwhile is done at once, on every rank, still paused (as in one process).

Torch-free at import: torch.distributed is imported when a job's ranks first exchange anything.
"""
from __future__ import annotations

import datetime
from typing import Any, Protocol

from gantui.run.controls import Controls

# The decisions exchanged at each agreement, in this order, summed over the ranks: > 0 is yes;
# `row_in`, rank 0's alone: the steps to the next agreement (its clock leads).
FLAGS = ("stop", "pause", "save", "set", "checkpoint", "row_in")
PAUSE_ANSWER = 0.2  # seconds: how often rank 0 answers the ranks waiting in a pause
JOIN_TIMEOUT = datetime.timedelta(seconds=20)  # a loop's ranks meeting for the first time, once all are known to come
MARK_WAIT = 5.0  # seconds rank 0 waits, at a loop's first boundary, for ranks not yet in gantui.init
GROUP_TIMEOUT = datetime.timedelta(minutes=30)  # then: gloo's own default for one exchange
LOOP_PERIOD = 0.25  # seconds between a loop's agreements: its metrics rows' (run/combine.py)


class Side(Protocol):
    """A producer as the protocol sees it (the trainer, a loop): its controls (run/controls.py:
    rank 0's commands, this rank's stop, rank 0's pause and its wait) and what it does."""

    controls: Controls

    def commands(self, pending: dict[str, Any]) -> None: ...  # settings, a resample, a save: done here
    def announce(self, paused: bool) -> None: ...  # rank 0: the status and the watchers told


class Ranks:
    """A job's ranks and the group they agree through (None: the default group, which must take
    CPU tensors: gloo, or the trainer's `cpu:gloo,cuda:nccl`)."""

    def __init__(self, rank: int, size: int, group: Any = None) -> None:
        self.rank, self.size, self.group = rank, size, group

    @property
    def main(self) -> bool:
        return self.rank == 0

    def agree(self, flags: dict[str, Any]) -> dict[str, float]:
        import torch
        import torch.distributed as dist

        vector = torch.tensor([float(flags.get(name, False)) for name in FLAGS], dtype=torch.float64)
        if self.size > 1:
            dist.all_reduce(vector, group=self.group)
        return dict(zip(FLAGS, vector.tolist()))

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]


def shared(ranks: Ranks, agreed: dict[str, float], pending: dict[str, Any]) -> dict[str, Any]:
    """The commands every rank does at an agreed step: rank 0's settings, sent to every rank, and a
    save; a resample stays rank 0's (its preview)."""
    out: dict[str, Any] = {}
    if agreed["set"] > 0:
        out["set"] = ranks.broadcast(pending.get("set"))
    if "resample" in pending:
        out["resample"] = pending["resample"]
    if agreed["save"] > 0:
        out["save"] = None
    return out


def settle(ranks: Ranks, agreed: dict[str, float], pending: dict[str, Any], side: Side) -> bool:
    """What every rank does with what they agreed at one step; True: stop here (every rank)."""
    side.commands(shared(ranks, agreed, pending))
    if agreed["stop"] > 0:
        return True
    return agreed["pause"] > 0 and paused_together(ranks, side)


def paused_together(ranks: Ranks, side: Side) -> bool:
    """Every rank waits until rank 0 is resumed or any rank is stopped; a save or a setting asked
    meanwhile is done at once, on every rank. True: stopped."""
    controls = side.controls
    if ranks.main:
        side.announce(True)
    while True:
        if ranks.main:
            controls.wait(PAUSE_ANSWER)
        pending = controls.pending() if ranks.main else {}
        agreed = ranks.agree({"stop": controls.stopped, "pause": ranks.main and controls.paused,
                              "save": "save" in pending, "set": "set" in pending})
        side.commands(shared(ranks, agreed, pending))
        if agreed["stop"] > 0 or agreed["pause"] <= 0:
            break
    if ranks.main and agreed["stop"] <= 0:
        side.announce(False)
    return agreed["stop"] > 0
