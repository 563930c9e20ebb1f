"""`gantui [flags]`: the flags (from Config's fields and the penalties' registry), resolved, then the
dashboard or the headless run."""
from __future__ import annotations

import argparse
import dataclasses
import typing

from gantui.cli.parser import Parser, fail, images_arg
from gantui.cli.resolve import resolve, wants_ui
from gantui.config import Config, flag
from gantui.penalties import PENALTIES


def config_flag(p: argparse._ActionsContainer, knob: dataclasses.Field, kind: type) -> None:
    """One of Config's settings as a flag: its type, metavar and help from the field (config.knob).
    Every default is None, so that a resumed run keeps its own settings unless a flag is given."""
    help, metavar = knob.metadata["help"], knob.metadata["metavar"]
    if help is None:
        help = argparse.SUPPRESS
    elif knob.default is not None and knob.default is not False and knob.default != "" and "default" not in help:
        help += f" (default {knob.default})"
    name = f"--{flag(knob.name)}"
    if kind is bool:  # --no-NAME turns off what a resumed run or --config has on
        p.add_argument(name, action=argparse.BooleanOptionalAction, default=None, help=help)
    else:
        p.add_argument(name, type=kind, metavar=metavar or {int: "N", float: "X"}.get(kind, "VALUE"), help=help)


def train_parser() -> Parser:
    p = Parser(prog="gantui", description="Train a DCGAN and watch it learn in the terminal.",
               epilog="Sub-commands: `gantui watch [RUN | HOST:RUN]`, `gantui runs`, `gantui compare RUN ...`, "
                      "`gantui sweep --out SWEEP --space NAME=A,B ...`, `gantui stop RUN|SWEEP`, "
                      "`gantui sample CHECKPOINT --n N --out FILE`, "
                      "`gantui eval CHECKPOINT [--n N] [--json]`, `gantui eval --real`, `gantui relay RUN`, "
                      "`gantui gif RUN --out progress.gif`, `gantui interpolate CHECKPOINT --out walk.gif`.")
    recipe = p.add_argument_group("recipe (the default is the reference DCGAN)")
    hints = typing.get_type_hints(Config)
    for knob in dataclasses.fields(Config):
        if knob.name == "penalties":  # a weight each, where the field stands
            for penalty in PENALTIES.values():
                recipe.add_argument(f"--{flag(penalty.key)}", type=float, metavar="X", help=penalty.help)
        elif "help" in knob.metadata:
            kind = next(t for t in (bool, int, float, str) if t is hints[knob.name] or t in typing.get_args(hints[knob.name]))
            config_flag(recipe if knob.metadata["recipe"] else p, knob, kind)
    add = p.add_argument  # how to run it, not the run's config
    add("--config", metavar="PATH", help="another run's settings (its config.json or its directory) for this one; "
                                         "the flags given change them")
    add("--no-ui", action="store_true", help="no dashboard: plain log lines (also when stdout is not a terminal)")
    add("--ui", action="store_true", help="the dashboard under torchrun too: rank 0 draws it in torchrun's terminal "
                                          "(elsewhere the default in a terminal)")
    images_arg(p)
    add("--on-hangup", choices=("detach", "stop"), default="detach",
        help="when the dashboard's terminal goes away: detach (the run goes on; default) or stop (save, exit)")
    add("--nproc", metavar="N", help="train with N processes through torchrun (DDP; N or auto: one per visible GPU); "
                                     "under torchrun itself, leave it out")
    add("--clock-intervals", action="store_true", help=argparse.SUPPRESS)  # test hook: by the clock, as on CUDA
    return p


def train(argv: list[str]) -> int:
    from gantui.engine.distributed import from_env
    from gantui.run.rundir import RunDir

    args = train_parser().parse_args(argv)
    world = from_env()
    if args.nproc is not None:
        if world.many:
            fail("--nproc under torchrun: torchrun already started the processes")
        from gantui.cli.ranks import launch

        return launch(argv, args, wants_ui(args))
    if world.many:
        from gantui.cli.ranks import train_rank

        return train_rank(args, world)
    config, state, lock = resolve(args)  # the run directory's lock, held until the run ends
    from gantui.session import run_dashboard, run_headless

    if wants_ui(args):
        code = run_dashboard(config, state, on_hangup=args.on_hangup, images=args.images)
    else:
        code = run_headless(config, state)
    RunDir.unlock(lock)  # the run has ended (not on an exception: its trainer thread may still write)
    return code
