"""Checkpoints: written atomically, loaded without unpickling code, checked before use."""
from __future__ import annotations

import errno
import os
import pickle
import random
from pathlib import Path
from typing import Any

import torch

from gantui.common import GantuiError
from gantui.run.rundir import atomic_write, fsync_dir

FORMAT = "gantui-checkpoint"
VERSION = 2  # 2: the state of each engine part under its own key; 1: one flat dict (the first release)


class CheckpointError(GantuiError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    state = {"format": FORMAT, "version": VERSION, **state}
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except RuntimeError as err:  # torch's zip writer can report a failed write this way
        raise OSError(errno.EIO, f"write failed: {str(err).splitlines()[0][:100]}") from None


def link_latest(source: Path, latest: Path) -> None:
    """Point `latest` at `source` atomically: a hard link when the filesystem has them."""
    tmp = latest.with_name(f".{latest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
        os.replace(tmp, latest)
    except OSError:
        tmp.unlink(missing_ok=True)
        atomic_write(latest, lambda f: f.write(source.read_bytes()))
        return
    fsync_dir(latest.parent)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory / checkpoints folder standing for its last.pt."""
    path = Path(path).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{path}: no checkpoints/last.pt in this directory")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with weights_only=True onto the CPU; any failure becomes a one-line CheckpointError."""
    path = resolve_checkpoint(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "unpickling refused"
        raise CheckpointError(f"{path}: refused, holds more than plain tensors and data ({reason[:120]})") from None
    except Exception as err:  # a damaged file fails in many ways (EOFError, KeyError, RuntimeError, ...)
        raise CheckpointError(f"{path}: truncated or not a PyTorch file ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gantui checkpoint")
    version = state.get("version")
    if version == 1:
        return migrate_v1(state)
    if version != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} (this gantui reads 1 to {VERSION})")
    return state


def migrate_v1(state: dict[str, Any]) -> dict[str, Any]:
    """A first-release checkpoint in today's layout: the same run, resumed exactly."""
    rng = dict(state["rng"])
    data_rng = rng.pop("data")
    # Version 1 kept a rollback's halved rates only in the optimisers; now the config holds them.
    rates = {name: state[opt]["param_groups"][0]["lr"] for name, opt in (("lr_g", "opt_g"), ("lr_d", "opt_d"))}
    return {
        "format": FORMAT, "version": VERSION, "config": {**state["config"], **rates}, "step": state["step"],
        "history": state.get("history", []), "quality": state.get("quality", []), "sets": [],
        "gan": {key: state[key] for key in ("generator", "discriminator", "opt_g", "opt_d")},
        "batches": {"epoch": state["epoch"], "pos": state["pos"], "perm": state["perm"], "rng": data_rng},
        "guard": {"rollbacks": state.get("rollbacks", 0), "d_won": state.get("d_won", 0)},
        "monitor": {"collapsed": state.get("collapsed", 0), "collapse_armed": state.get("collapse_armed", False)},
        "fixed_noise": state["fixed_noise"], "rng": rng,
    }


def rank_state(trainer: Any) -> dict[str, Any]:
    """This process's random streams (each rank of a torchrun job has its own: seed + rank)."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                           "preview": trainer.samples.generator.get_state()}
    if trainer.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    return rng


def capture(trainer: Any) -> dict[str, Any]:
    """A trainer's state in this version's layout: each part's own, the RNGs, the run's past (a
    torchrun job's rank 0 adds `world_size` and every rank's random streams, `ranks`)."""
    rng = rank_state(trainer)
    return {"config": {**trainer.config.to_dict(), **trainer.gan.live.to_dict()}, "step": trainer.step, "history": list(trainer.history),
            "quality": list(trainer.quality), "sets": list(trainer.sets), "gan": trainer.gan.state_dict(),
            "batches": trainer.batches.state_dict(), "guard": trainer.guard.state_dict(),
            "monitor": trainer.monitor.state_dict(), "fixed_noise": trainer.samples.fixed_noise.clone(), "rng": rng}


def restore(trainer: Any, state: dict[str, Any], history: bool = True) -> None:
    """`capture`'s inverse; `history`: also the run's past and the guard's and monitor's state."""
    trainer.gan.load_state_dict(state["gan"])
    trainer.batches.load_state_dict(state["batches"])
    trainer.step = state["step"]
    world = getattr(trainer, "world", None)
    ranks = state.get("ranks")
    rng = ranks[world.rank] if world is not None and ranks and len(ranks) == world.size else state["rng"]
    trainer.samples.load_state_dict({"fixed_noise": state["fixed_noise"], "generator": rng["preview"]})
    torch.set_rng_state(rng["torch"])
    random.setstate((3, tuple(rng["python"]), None))
    if trainer.device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], trainer.device)
    if history:
        trainer.history.extend(state.get("history", []))
        trainer.quality.extend(state.get("quality", []))
        trainer.sets.extend(state.get("sets", []))
        trainer.guard.load_state_dict(state["guard"])  # the guard's limit holds across a resume
        trainer.monitor.load_state_dict(state["monitor"])
        rates = [row["images_per_s"] for row in trainer.history if "images_per_s" in row]
        trainer.clock.images_per_s = rates[-1] if rates else 0.0  # an estimate until the first interval
