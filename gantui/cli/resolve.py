"""A run's settings, resolved once before anything trains, by `gantui` in one process and by
rank 0 of a torchrun job alike: defaults, then a resumed run's own config, then the flags given;
the device; the intervals that follow the clock; the run directory taken and checked; the data
fetched or looked over. Every refusal is a GantuiError, and lets the directory go at once."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from gantui.cli.parser import fail
from gantui.config import Config, ConfigError
from gantui.datasets import FOLDER


class Resolved(NamedTuple):
    config: Config
    state: dict[str, Any] | None  # the checkpoint resumed from
    lock: int  # the run directory's (RunDir.lock): held until the run ends


def resolve(args: argparse.Namespace, world_size: int = 1) -> Resolved:
    from gantui.engine.device import resolve_device
    from gantui.preparing import prepare_data
    from gantui.run.rundir import RunDir

    config, state = build_config(args, world_size)
    device = resolve_device(config.device)
    if config.sync_bn and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA (SyncBatchNorm runs on GPUs only)")
    config = replace(config, timed=timed_intervals(config, args, device.type))  # rank 0's clock, in a job
    lock = RunDir(config.out).lock()
    try:
        check_not_another_run(config, args)
        config = prepare_data(config, device)
    except BaseException:
        RunDir.unlock(lock)
        raise
    return Resolved(config, state, lock)


def check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".gantui-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out {path}: not writable ({err.strerror or err})") from None


def check_not_another_run(config: Config, args: argparse.Namespace) -> None:
    """A fresh run (or a resume) must not write into a directory holding a different run: it would
    append to that run's metrics and prune its checkpoints."""
    from gantui.engine.checkpoint import resolve_checkpoint
    from gantui.run.rundir import RunDir, run_dir_of

    run_dir = RunDir(config.out)
    if not (run_dir.metrics.exists() or run_dir.last.exists()):
        return
    if args.resume and RunDir(run_dir_of(resolve_checkpoint(args.resume))).path == run_dir.path:
        return
    out = run_dir.path
    raise ConfigError(f"--out {out} already holds a run: continue it with --resume {out}, or choose another --out")


def settings_of(args: argparse.Namespace, world_size: int) -> dict[str, Any]:
    """Another run's settings (its config.json, or its directory's) for a new run, as its flags
    gave them: not where it lived or what it resumed, nor what is derived again here from what is
    given now (a penalty weight or learning rates its loss or --lr implied, a folder's size and
    channels when other images are given, --sync-bn in one process)."""
    import json

    from gantui.penalties import PENALTIES

    path = args.config
    if args.resume:
        raise ConfigError("--config and --resume: choose one (a resumed run keeps its own settings)")
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "config.json"
        if not file.exists():
            raise ConfigError(f"--config {path}: no config.json there (not a run's directory)")
    try:
        saved = json.loads(file.read_text())
    except OSError as err:
        raise ConfigError(f"--config {path}: {err.strerror or err}") from None
    except ValueError:
        raise ConfigError(f"--config {path}: not a run's config.json (not JSON)") from None
    if isinstance(saved, dict) and saved.get("producer", "gantui") != "gantui":
        raise ConfigError(f"--config {path}: a loop's run: its settings are the loop's own")
    known = set(Config.settings()) - {"out", "resume", "timed", "fault_nan_step", "penalties_on"}
    if not isinstance(saved, dict) or "dataset" not in saved:
        raise ConfigError(f"--config {path}: not a run's config.json (no dataset)")
    settings = {k: v for k, v in saved.items() if k in known}
    for key, penalty in PENALTIES.items():
        if key in settings and settings[key] == penalty.default_for(settings.get("loss", Config.loss)):
            del settings[key]  # the loss's own: another --loss implies its own
    for rate in ("lr_g", "lr_d"):
        if rate in settings and settings[rate] == settings.get("lr"):
            del settings[rate]  # --lr's: another --lr sets it
    if args.data is not None or args.dataset is not None:  # other images: what the old ones decided goes
        for key in ("dataset", "data", "image_size", "channels"):
            settings.pop(key, None)
    if world_size == 1:
        settings.pop("sync_bn", None)  # a job's; one process has no other batches
    return settings


def given_settings(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings the flags given set (--no-ui, --nproc, --config... say how to run it, not what):
    --lr sets both rates unless each is given, now or in `base` (--config's run)."""
    given = {name: getattr(args, name) for name in Config.settings() if getattr(args, name, None) is not None}
    if args.data is not None and args.dataset is None:
        given["dataset"] = FOLDER
    if args.lr is not None:
        for rate in ("lr_g", "lr_d"):
            if rate not in (base or {}):
                given.setdefault(rate, args.lr)
    return given


def build_config(args: argparse.Namespace, world_size: int = 1) -> tuple[Config, dict[str, Any] | None]:
    """Defaults, then the resumed run's own config, then the flags given; validated. A checkpoint
    resumes with as many processes as wrote it (another number would re-shard the data order)."""
    from gantui.engine.checkpoint import load_checkpoint, resolve_checkpoint
    from gantui.run.rundir import default_run_dir, run_dir_of

    base: dict[str, Any] = settings_of(args, world_size) if getattr(args, "config", None) else {}
    overrides = given_settings(args, base)
    state = None
    if args.resume:
        state = load_checkpoint(args.resume)
        wrote = state.get("world_size", 1)
        if wrote != world_size:
            raise ConfigError(f"--resume {args.resume}: written by {wrote} process{'es' * (wrote > 1)}, resumed by "
                              f"{world_size}: resume it with --nproc {wrote} (another number would re-shard the data)")
        base = dict(state["config"])
        base["out"] = str(run_dir_of(resolve_checkpoint(args.resume)))
        base["resume"] = args.resume
    try:
        config = Config.from_dict({**base, **overrides}).validate()
    except TypeError as err:  # a hand-edited config.json: a setting of the wrong kind
        raise ConfigError(f"--config {args.config}: a setting of the wrong type ({err})") from None
    if config.sync_bn and world_size == 1:
        raise ConfigError("--sync-bn is for several processes (--nproc N, or torchrun)")
    if state is not None:
        saved = Config.from_dict(state["config"])  # an older run's config lacks the newer keys: defaults

        def shown(value: Any) -> str:
            return ("on" if value else "off") if isinstance(value, bool) else str(value)

        for key in Config.SHAPE_KEYS:
            if getattr(saved, key) != getattr(config, key):
                raise ConfigError(f"--{key.replace('_', '-')} {shown(getattr(config, key))} does not match the "
                                  f"checkpoint's {shown(getattr(saved, key))}")
        check_penalties_on(saved.validate(), config)
    config = replace(config, out=str(Path(config.out).expanduser().resolve()) if config.out else str(default_run_dir()),
                     data=config.data and str(Path(config.data).expanduser().resolve()))  # a resume from elsewhere finds it
    check_writable(Path(config.out))
    return config, state


def check_penalties_on(saved: Config, config: Config) -> None:
    """A penalty turned on at a resume is computed from then on; one that wants D without batch
    norm (a gradient penalty) cannot be, where the checkpoint's D has batch norm (every layout but
    the 28x28 one): it would not load."""
    from gantui.datasets import describe
    from gantui.penalties import PENALTIES

    if saved.d_batch_norm == config.d_batch_norm:
        return
    if describe(config.dataset, config.image_size, config.channels).shape[1:] == (28, 28):
        return  # that D has no batch norm either way
    key = next((k for k in config.penalties_on or () if k not in (saved.penalties_on or ()) and not PENALTIES[k].batch_norm),
               "gp")
    raise ConfigError(f"--{key.replace('_', '-')}: this run's D was built with batch norm ({key} was off at its "
                      f"start), and {key} needs one without: start a new run with its settings, "
                      f"gantui --config RUN --{key.replace('_', '-')} W")


def wants_ui(args: argparse.Namespace) -> bool:
    if args.no_ui:
        if args.ui:
            fail("--ui and --no-ui: choose one")
        return False
    if not sys.stdout.isatty() or os.environ.get("TERM") == "dumb":
        print("gantui: no terminal on stdout (or TERM=dumb): running headless, as with --no-ui", file=sys.stderr)
        return False
    return True


def timed_intervals(config: Config, args: argparse.Namespace, device_type: str) -> tuple[str, ...]:
    """The intervals that follow the clock (engine/intervals.py): on CUDA those whose flag was not
    given (a resumed run keeps its own, less any flag given now; with --config, a value other than
    the default counts as given); on other devices none."""
    from gantui.config import TIMED

    by_clock = device_type == "cuda" or getattr(args, "clock_intervals", False)
    timed = config.timed if args.resume else TIMED if by_clock else ()
    default = Config()
    given = {kind for kind in TIMED if getattr(args, kind) is not None
             or getattr(args, "config", None) and getattr(config, kind) != getattr(default, kind)}
    return tuple(kind for kind in timed if kind not in given)
