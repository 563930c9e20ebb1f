"""Many processes, one run: the world a torchrun job gives each process, and what its ranks agree on.

Rank 0 owns the run (its directory, its socket, its checkpoints); every decision that depends on one
process's view (a watcher's pause, stop, save or setting, a signal to any rank, a periodic
checkpoint) is exchanged at the metrics interval, in the same all-reduce as the metrics: one small
collective per interval, and every rank applies the outcome at the same step (run/agreement.py:
the protocol, which a user's loop under torch.distributed shares).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from gantui.run.agreement import FLAGS  # the decisions exchanged, shared with a user's loop

# How long a collective waits for a rank that does not come (a rank that died: torchrun then ends
# the others; a rank evaluating or writing a checkpoint for rank 0 takes seconds, not minutes).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.size > 1


def from_env() -> World:
    """The world torchrun describes in the environment (one process when it does not)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return World()
    return World(rank, size, local) if size > 1 else World()


def start(world: World) -> None:
    """The process group: NCCL for CUDA tensors, gloo for the CPU's; MASTER_ADDR/PORT from torchrun."""
    if not world.many or dist.is_initialized():
        return
    if torch.cuda.is_available():  # one GPU a process: `--device auto` and `cuda` mean this one
        torch.cuda.set_device(world.local_rank)
        backend = "cpu:gloo,cuda:nccl"  # CUDA tensors through NCCL; the pause's waits through gloo
    else:
        backend = "gloo"
    dist.init_process_group(backend, store=round_store(), rank=world.rank, world_size=world.size,
                            timeout=COLLECTIVE_TIMEOUT)


def round_store() -> dist.Store | None:
    """The store this round of the job meets in. torchrun's agent keeps one store for all its
    rounds: after a restart, gloo's keys from the failed round are still there, and a rank that
    reads a dead peer's address waits for it until the timeout, or fails (pytorch#135712; 2 of 2
    restarts here). Each round gets keys of its own, named by the restart count, which the ranks
    of one machine share. (Several machines whose agents count restarts differently: set
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 on each, and rank 0 serves a new store every round.)
    None: no agent store, the default (`env://`)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=COLLECTIVE_TIMEOUT)
    return dist.PrefixStore(f"gantui/round-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(world: World, value: Any) -> Any:
    """Rank 0's `value` on every rank (a config, a run directory, live settings)."""
    if not world.many:
        return value
    box = [value if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World, value: Any) -> list[Any] | None:
    """Every rank's `value` on rank 0 (their random states for a checkpoint); None elsewhere."""
    if not world.many:
        return [value]
    out = [None] * world.size if world.main else None
    dist.gather_object(value, out, dst=0)
    return out


def all_gather(world: World, value: Any) -> list[Any]:
    """Every rank's `value`, on every rank."""
    if not world.many:
        return [value]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def barrier(world: World) -> None:
    if world.many:
        dist.barrier()


def exchange(world: World, means: torch.Tensor, own: list[float], flags: dict[str, float]
             ) -> tuple[list[float], list[list[float]], dict[str, float]]:
    """One all-reduce, and the interval's one host read: the metrics' means averaged over the
    ranks, every rank's `own` figures (its images/s, its device's; NaN for one it has not), and
    the decisions (`flags`, summed: any rank's yes is everyone's)."""
    width = len(own)
    slots = torch.zeros(world.size, width, dtype=torch.float64)
    slots[world.rank] = torch.tensor(own, dtype=torch.float64)
    asked = [float(flags.get(name, False)) for name in FLAGS]
    tail = torch.cat((slots.reshape(-1), torch.tensor(asked, dtype=torch.float64))).to(means.device, means.dtype)
    vector = torch.cat((means.detach().reshape(-1), tail))
    if world.many:
        dist.all_reduce(vector)
    n = means.numel()
    values = vector.tolist()
    ranks = [values[n + r * width:n + (r + 1) * width] for r in range(world.size)]
    agreed = {name: values[n + world.size * width + i] for i, name in enumerate(FLAGS)}
    return [v / world.size for v in values[:n]], ranks, agreed

