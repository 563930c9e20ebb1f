"""`gantui [flags]`: flags -> Config, then the dashboard or the headless run."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from gantui.cli.parser import Parser, fail
from gantui.config import AUGMENTS, LOSSES, NOISES, Config, ConfigError
from gantui.datasets import DATASETS, FOLDER


def train_parser() -> Parser:
    p = Parser(prog="gantui", description="Train a DCGAN and watch it learn in the terminal.",
               epilog="Sub-commands: `gantui watch [RUN | HOST:RUN]`, `gantui runs`, `gantui stop RUN`, "
                      "`gantui sample CHECKPOINT --n N --out FILE`, `gantui eval CHECKPOINT [--n N] [--json]`, "
                      "`gantui eval --real`, `gantui relay RUN`, `gantui gif RUN --out progress.gif`, "
                      "`gantui interpolate CHECKPOINT --out walk.gif`.")
    d = Config()
    add = p.add_argument
    # Defaults are None so that a resumed run keeps its own settings unless a flag is given.
    add("--dataset", help=f"training data: {', '.join(DATASETS)} (default {d.dataset}; the others are "
                          "downloaded on first use)")
    add("--data-root", metavar="DIR", help="where the datasets' files are, or go when downloaded (default: the user "
                                           "cache dir)")
    add("--data", metavar="DIR", help="train on a folder of images (png, jpg, jpeg, webp, bmp; found recursively)")
    add("--image-size", type=int, help="a folder's images are centre-cropped and resized to 32, 64 or 128 (default 64)")
    add("--channels", type=int, help="a folder's images as 1 (grey) or 3 (RGB) channels (default: grey only when all are)")
    add("--epochs", type=int, help=f"epochs to train (default {d.epochs})")
    add("--steps", type=int, help="stop after N steps in all; overrides --epochs")
    add("--batch-size", type=int, help=f"images per step and process (default {d.batch_size}); with N processes a "
                                       "step trains on N times as many")
    add("--lr", type=float, help=f"Adam learning rate for G and D (default {d.lr})")
    add("--lr-g", type=float, help="G's learning rate (two time-scale updates; default --lr)")
    add("--lr-d", type=float, help="D's learning rate (default --lr)")
    add("--beta1", type=float, help=f"Adam beta1 (default {d.beta1})")
    recipe = p.add_argument_group("recipe (the default is the reference DCGAN)")
    radd = recipe.add_argument
    radd("--loss", help=f"objective: {', '.join(LOSSES)} (default {d.loss}: non-saturating BCE)")
    radd("--gp", type=float, help="WGAN-GP gradient penalty weight (default 10 with wgan-gp, else 0)")
    radd("--r1", type=float, help="R1 penalty weight gamma on real images, lazily every 16 D steps (default 0)")
    radd("--spectral-norm", action="store_true", default=None, help="spectral normalisation on D's layers")
    radd("--ema", type=float, help="decay of an EMA of G for previews, grids, evaluation and sample (e.g. 0.999)")
    radd("--d-steps", type=int, help="D (critic) steps per G step, each on a new batch (default 1)")
    radd("--noise", help=f"latent distribution: {', '.join(NOISES)} (default {d.noise})")
    radd("--diffaug", metavar="POLICIES", help=f"differentiable augmentation for D: a comma list of {', '.join(AUGMENTS)}")
    radd("--conditional", action="store_true", default=None,
         help="class-conditional G and D (projection discriminator); previews one row per digit")
    radd("--on-collapse", help="when the mode-collapse warning fires: warn (default) or pause the run")
    add("--z-dim", type=int, help=f"latent size (default {d.z_dim})")
    add("--seed", type=int, help=f"random seed (default {d.seed})")
    add("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default auto)")
    add("--precision", help="auto (bf16 autocast on CUDA and on CPUs with AMX), bf16 or fp32 (default auto)")
    add("--compile", action="store_true", default=None,
        help="torch.compile the models: a slow first step, then faster ones")
    add("--out", help="run directory (default: a new one under the user data dir)")
    add("--log-every", type=int, help=f"steps per metrics line (default {d.log_every})")
    add("--sample-every", type=int, help=f"steps per PNG grid in samples/ (default {d.sample_every})")
    add("--save-every", type=int, help=f"steps per checkpoint (default {d.save_every})")
    add("--keep", type=int, help=f"periodic checkpoints kept beside last.pt (default {d.keep})")
    add("--eval-every", type=int, help="steps per quality evaluation, 0 for none (default 500; 2000 on CUDA)")
    add("--eval-n", type=int, help=f"images generated per evaluation (default {d.eval_n})")
    add("--resume", metavar="PATH", help="continue from a checkpoint file or a run directory")
    add("--no-ui", action="store_true", help="no dashboard: plain log lines (also when stdout is not a terminal)")
    add("--ui", action="store_true", help="the dashboard under torchrun too: rank 0 draws it in torchrun's terminal "
                                          "(elsewhere the default in a terminal)")
    add("--on-hangup", choices=("detach", "stop"), default="detach",
        help="when the dashboard's terminal goes away: detach (the run goes on; default) or stop (save, exit)")
    add("--sync-bn", action="store_true", default=None,
        help="with several processes on CUDA: batch norm over every process's batch (SyncBatchNorm)")
    add("--nproc", help="train with N processes through torchrun (DDP; N or auto: one per visible GPU); "
                        "under torchrun itself, leave it out")
    add("--fault-nan-step", type=int, help=argparse.SUPPRESS)  # test hook for the divergence guard
    add("--clock-intervals", action="store_true", help=argparse.SUPPRESS)  # test hook: by the clock, as on CUDA
    return p


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


def build_config(args: argparse.Namespace, world_size: int = 1) -> tuple[Config, dict[str, Any] | None]:
    """Defaults, then the resumed run's own config, then the flags given; validated. A checkpoint
    resumes with as many processes as wrote it (another number would re-shard the data order)."""
    from gantui.engine.checkpoint import load_checkpoint, resolve_checkpoint
    from gantui.run.rundir import default_run_dir, run_dir_of

    launch_only = ("no_ui", "ui", "on_hangup", "nproc", "clock_intervals")  # how to run it, not the run's config
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in launch_only}
    if args.data is not None and args.dataset is None:
        overrides["dataset"] = FOLDER
    if args.lr is not None:  # --lr sets both rates unless each is given
        overrides.setdefault("lr_g", args.lr)
        overrides.setdefault("lr_d", args.lr)
    base: dict[str, Any] = {}
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
    config = Config.from_dict({**base, **overrides}).validate()
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
    config.out = str(Path(config.out).expanduser().resolve()) if config.out else str(default_run_dir())
    if config.data:  # a resume from elsewhere finds it
        config.data = str(Path(config.data).expanduser().resolve())
    check_writable(Path(config.out))
    return config, state


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
    given (a resumed run keeps its own, less any flag given now); on other devices none."""
    from gantui.config import TIMED

    by_clock = device_type == "cuda" or getattr(args, "clock_intervals", False)
    timed = config.timed if args.resume else TIMED if by_clock else ()
    return tuple(kind for kind in timed if getattr(args, kind) is None)


def train(argv: list[str]) -> int:
    from gantui.engine.device import resolve_device
    from gantui.preparing import prepare_data
    from gantui.run.rundir import RunDir

    args = train_parser().parse_args(argv)
    from gantui.engine.distributed import from_env

    world = from_env()
    if args.nproc is not None:
        if world.many:
            fail("--nproc under torchrun: torchrun already started the processes")
        from gantui.cli.ranks import launch

        return launch(argv, args, wants_ui(args))
    if world.many:
        from gantui.cli.ranks import train_rank

        return train_rank(args, world)
    lock = None  # the run directory's, held until the run ends (a refusal lets it go at once)
    try:
        config, state = build_config(args)
        device = resolve_device(config.device)
        config.timed = timed_intervals(config, args, device.type)
        lock = RunDir(config.out).lock()
        check_not_another_run(config, args)
        prepare_data(config, device)
    except BaseException:  # a refusal (GantuiError, reported by main) lets the directory go at once
        if lock is not None:
            RunDir.unlock(lock)
        raise
    from gantui.session import run_dashboard, run_headless

    if wants_ui(args):
        code = run_dashboard(config, state, on_hangup=args.on_hangup)
    else:
        code = run_headless(config, state)
    RunDir.unlock(lock)  # the run has ended (not on an exception: its trainer thread may still write)
    return code
