"""`gantui sweep`: a search for the recipe that works, on Optuna; every trial an ordinary run.
Everything it is given is checked before a trial starts: one line and exit 2 otherwise."""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
import time
from pathlib import Path

from gantui.cli.parser import Parser, fail, images_arg

STOP_TIMEOUT = 300.0  # seconds `gantui stop SWEEP` waits for every trial's save


def sweep_parser() -> Parser:
    from gantui.sweep.study import PRUNERS, SAMPLERS

    p = Parser(prog="gantui sweep", allow_abbrev=False, description="Search for the recipe that works: trials of gantui runs, on Optuna. "
                                                "Any other gantui flag is given to every trial.",
               epilog="e.g. gantui sweep --out SWEEP --trials 32 --jobs 2 --space loss=ns,hinge,wgan-gp,lsgan "
                      "--space lr=1e-5..1e-3:log --space ema=0,0.999 --objective fid")
    add = p.add_argument
    add("--out", type=Path, metavar="SWEEP", help="the sweep's directory: sweep.json, study.db, trials/")
    add("--resume", type=Path, metavar="SWEEP", help="continue a sweep whose process ended: trials left running "
                                                     "resume from their checkpoints")
    add("--join", metavar="SWEEP|URL", help="add this process's workers to a running sweep (its directory, or a "
                                           "storage URL with --study and --out)")
    add("--study", metavar="NAME", help="the study's name in the storage (default: the sweep directory's name)")
    add("--storage", metavar="URL", help="an Optuna storage: sqlite:///FILE, postgresql://..., mysql://..., or "
                                        "journal:FILE (default: SQLite in SWEEP/study.db)")
    add("--trials", type=int, metavar="N", help="trials in all, over every worker (default 16)")
    add("--jobs", default="1", metavar="N", help="trials at once here: N, or auto (one per visible GPU; default 1)")
    add("--space", action="append", default=[], metavar="NAME=A,B|LO..HI[:log]",
        help="a setting searched: values, or a range (on a log scale with :log); repeat for each")
    add("--objective", metavar="KEY[:min|:max][:last]",
        help="what the study optimises: fid (the best), fid:last, kl, or a training row's key with :min or :max")
    add("--sampler", choices=SAMPLERS, help="Optuna's sampler (default tpe)")
    add("--no-ui", action="store_true", help="a line per trial event, not the comparison view (also when stdout "
                                             "is not a terminal)")
    add("--pruner", choices=PRUNERS, help="Optuna's pruner, fed each evaluation (default median)")
    images_arg(p)  # the view's samples; the trials draw none
    return p


def jobs_count(text: str) -> tuple[int, list[str]]:
    from gantui.sweep.runner import visible_gpus

    gpus = visible_gpus()
    if text == "auto":
        return max(len(gpus), 1), gpus
    if not text.isdigit() or int(text) < 1:
        fail(f"--jobs {text}: the number of trials at once, 1 or more, or auto (one per visible GPU)")
    return int(text), gpus


NEW_SWEEP = ("trials", "space", "objective", "sampler", "pruner", "storage")  # what only a new sweep takes
DEFAULTS = {"trials": 16, "objective": "fid", "sampler": "tpe", "pruner": "median"}


def sweep(argv: list[str]) -> int:
    from gantui.sweep.space import check_flags, parse_objective, parse_space
    from gantui.sweep.study import Spec, SweepDir, default_storage, grid_size, open_study, sampler_for, spec_of_study

    args, flags = sweep_parser().parse_known_args(argv)
    if importlib.util.find_spec("optuna") is None:
        fail("gantui sweep runs on Optuna: pip install 'gantui[sweep]' (or optuna)")
    modes = [m for m in ("out", "resume", "join") if getattr(args, m) is not None]
    if not modes or (len(modes) > 1 and modes != ["out", "join"]):
        fail("start a sweep with --out SWEEP, continue one with --resume SWEEP, or join one with --join")
    jobs, gpus = jobs_count(args.jobs)
    if args.out is not None and args.join is None:  # a new sweep
        for key, value in DEFAULTS.items():
            setattr(args, key, value if getattr(args, key) is None else getattr(args, key))
        if not args.space:
            fail("--space: name at least one setting to search (e.g. --space loss=ns,hinge)")
        if args.trials < 1:
            fail(f"--trials {args.trials}: 1 or more")
        if given := sweep_args(flags):
            fail(f"{given}: the sweep says where each trial lives and how it runs")
        flags = [*flags, *comparable_steps(flags, gpus)]
        base = check_flags(flags, "gantui sweep")
        params = parse_space(args.space, flags)
        objective = parse_objective(args.objective, base)
        sweep_dir = SweepDir(args.out)
        if sweep_dir.exists():
            fail(f"--out {sweep_dir.path} holds a sweep already: continue it with gantui sweep --resume "
                 f"{sweep_dir.path}, or choose another --out")
        sampler_for(args.sampler, params)  # a grid of ranges refused before anything is written
        if args.sampler == "grid" and args.trials > grid_size(params):
            print(f"gantui sweep: the grid holds {grid_size(params)} settings: {grid_size(params)} trials",
                  file=sys.stderr)
            args.trials = grid_size(params)
        spec = Spec(storage=args.storage or default_storage(sweep_dir), study=args.study or sweep_dir.path.name,
                    trials=args.trials, space=tuple(args.space), objective=args.objective, sampler=args.sampler,
                    pruner=args.pruner, flags=tuple(flags))
        sweep_dir.make()  # before its SQLite file is opened there
        study = open_study(spec, params, objective, create=True)
        sweep_dir.write(spec.storage, spec.study)
        return work(sweep_dir, spec, study, params, objective, jobs, gpus, adopt=False, view=wants_view(args))
    if flags:
        fail(f"{flags[0]}: a sweep's trials keep the flags it started with")
    if given := [f"--{k}" for k in NEW_SWEEP if getattr(args, k) not in (None, [])]:
        fail(f"{given[0]}: a sweep keeps what it started with (--resume and --join take --jobs)")
    if args.resume is not None:
        if args.study is not None:
            fail("--study: a sweep's directory names its study")
        sweep_dir = SweepDir(args.resume)
        url, name = sweep_dir.read()
        if pids := sweep_dir.live_workers():
            fail(f"{sweep_dir.path} is running (pid {pids[0]}): gantui sweep --join {sweep_dir.path} adds workers")
    elif SweepDir(args.join).exists():
        if args.study is not None or args.out is not None:
            fail(f"--join {args.join}: a sweep's directory names its study, and its trials go there")
        sweep_dir = SweepDir(args.join)
        url, name = sweep_dir.read()
    else:
        if args.study is None or args.out is None:
            fail(f"--join {args.join}: not a sweep's directory; to join from a storage URL, give --study NAME "
                 "and --out DIR (where this machine's trials go)")
        sweep_dir, url, name = SweepDir(args.out), args.join, args.study
        if sweep_dir.exists() and sweep_dir.read() != (url, name):
            fail(f"--out {sweep_dir.path} holds another sweep: choose another --out")
    spec = spec_of_study(url, name)
    params = parse_space(list(spec.space), list(spec.flags))
    objective = parse_objective(spec.objective, check_flags(list(spec.flags), "gantui sweep"))
    study = open_study(spec, params, objective, create=False)
    if not sweep_dir.exists():
        sweep_dir.write(url, name)
    return work(sweep_dir, spec, study, params, objective, jobs, gpus, adopt=args.resume is not None,
                view=wants_view(args))


def comparable_steps(flags: list[str], gpus: list[str]) -> list[str]:
    """Every trial evaluates and logs at the same steps (on CUDA, intervals left to gantui follow the
    clock, each trial's at its own steps, and a pruner compares values at the same step)."""
    from gantui.config import Config, default_eval_every

    given = {f.split("=", 1)[0] for f in flags}
    added = []
    if "--eval-every" not in given:
        added += ["--eval-every", str(default_eval_every("cuda" if gpus else "cpu"))]
    if "--log-every" not in given:
        added += ["--log-every", str(Config.log_every)]
    return added


def wants_view(args) -> str | None:
    """The comparison view's --images where the sweep shows one (a terminal, no --no-ui), else None."""
    return args.images if not args.no_ui and sys.stdout.isatty() and os.environ.get("TERM") != "dumb" else None


def sweep_args(flags: list[str]) -> str | None:
    """A flag that is the sweep's to give each trial, not the user's (abbreviated or not)."""
    from gantui.cli.train import train_parser

    parser = train_parser()
    parser.exit_on_error = False
    try:
        args, _ = parser.parse_known_args(flags)
    except (argparse.ArgumentError, SystemExit):
        return None  # check_flags says what is wrong with them
    for name in ("out", "resume", "config", "nproc"):
        if getattr(args, name) is not None:
            return f"--{name}"
    if args.ui or args.on_hangup != "detach" or args.no_ui:
        return "--ui" if args.ui else "--no-ui" if args.no_ui else "--on-hangup"
    return None


def work(sweep_dir, spec, study, params, objective, jobs: int, gpus: list[str], adopt: bool,
         view: str | None) -> int:
    """The sweep's workers here; in a terminal (`view`: its --images), its trials in the comparison
    view meanwhile."""
    from gantui.sweep.runner import Sweep
    from gantui.sweep.study import safe

    printing = threading.Lock()

    def say(line: str) -> None:
        with printing:
            print(line, flush=True)

    lock = sweep_dir.hold()
    try:
        say(f"sweep {sweep_dir.path}: study {spec.study!r} in {safe(spec.storage)}; {jobs} at once"
            + (f" (GPUs {','.join(gpus)})" if gpus else ""))
        if view is None:
            return Sweep(sweep_dir, spec, study, params, objective, jobs, gpus, say).run(adopt)
        from gantui.run.compare import runs_in
        from gantui.ui.compare.app import CompareApp
        from gantui.ui.pictures.terminal import detect

        pictures = detect(view)  # before the trials start: the terminal is asked in raw mode
        said: list[str] = []  # while the view is up: printed once it is gone
        sweep = Sweep(sweep_dir, spec, study, params, objective, jobs, gpus, said.append)
        sweep.start(adopt)
        app = CompareApp(runs_in(sweep_dir.trials), sweep=sweep, pictures=pictures)
        try:
            app.run()
        finally:
            sweep.say = say
            for line in said:
                say(line)
            if app.choice != "leave":
                sweep.stop()  # `stop`, a signal, or the view gone on an error: the trials saved
        return sweep.wait()
    finally:
        os.close(lock)


def stop_sweep(path: Path) -> int:
    """`gantui stop SWEEP`: every worker of the sweep on this host saves its trials and stops."""
    from gantui.sweep.study import SweepDir

    sweep_dir = SweepDir(path)
    pids = sweep_dir.live_workers()
    if not pids:
        fail(f"{sweep_dir.path}: the sweep is not running here (gantui sweep --resume {sweep_dir.path} continues it)")
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError:
            fail(f"{sweep_dir.path}: its worker (pid {pid}) is another user's")
    deadline = time.monotonic() + STOP_TIMEOUT
    while sweep_dir.live_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    if sweep_dir.live_workers():
        fail(f"{sweep_dir.path} did not stop within {STOP_TIMEOUT:.0f} s", code=1)
    print(f"stopped the sweep {sweep_dir.path}: its trials are saved (gantui sweep --resume {sweep_dir.path} "
          "continues it)", file=sys.stdout)
    return 0
