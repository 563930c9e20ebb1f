"""`gantui` as one rank of a torchrun job, and `gantui --nproc N`, which runs torchrun itself.

Rank 0 takes every decision a run starts with (the config, the run directory and its lock, the
dataset fetched or a folder looked over, the checkpoint to resume) and sends it to the others; an
error there is one line on rank 0 and exit 2 on every rank. Each other machine's first process
then fetches the data onto its own disk; a problem there is one line on that machine and rank 0's.
Rank 0 serves the run and prints the headless lines (with --ui in a terminal: the dashboard); the
others train silently.
"""
from __future__ import annotations

import argparse
import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gantui.cli.parser import fail


def train_rank(args: argparse.Namespace, world) -> int:
    from gantui.cli.resolve import resolve, wants_ui
    from gantui.common import GantuiError
    from gantui.config import Config
    from gantui.engine import distributed

    dashboard = world.main and args.ui and wants_ui(args)  # asked for; else rank 0 prints the lines
    distributed.start(world)
    outcome: tuple = ("error", "rank 0 did not answer", None)
    if world.main:
        try:
            restarted(args)
            config, state, lock = resolve(args, world.size)  # noqa: F841 (the lock: held until the process exits)
            outcome = ("ok", config.to_dict(), state)
        except GantuiError as err:
            outcome = ("error", str(err), None)
    outcome = distributed.broadcast(world, outcome)
    if outcome[0] == "error":
        if world.main:
            print(f"gantui: {outcome[1]}", file=sys.stderr, flush=True)
        distributed.stop()
        return 2
    config, state = Config.from_dict(outcome[1]), outcome[2]
    problems = distributed.all_gather(world, prepare_machine(outcome[1], world))
    if any(problems):
        rank, problem = next((r, p) for r, p in enumerate(problems) if p)
        if world.main or problems[world.rank]:
            print(f"gantui: rank {rank}'s machine: {problem}", file=sys.stderr, flush=True)
        distributed.stop()
        return 2
    from gantui.headless import HeadlessPrinter
    from gantui.session import Session

    session = Session(config, state, world=world)
    out = sys.stdout if world.main else open(os.devnull, "w")
    try:
        if dashboard:
            code = session.run_dashboard(args.on_hangup, args.images)
        else:
            code = session.run_headless(HeadlessPrinter(out, config.batch_size))
    finally:
        finished = session.finished
        # The trainer's DDP modules hold the process group, and reference cycles keep them until a
        # garbage collection: at the interpreter's exit, where gloo's threads can abort the process
        # (SIGABRT, "terminate called without an active exception", once in a full test run). Freed
        # here, before the group is destroyed.
        del session
        gc.collect()
        distributed.stop()
    if not world.main and finished is not None and finished.error:  # rank 0 says the rest
        print(f"gantui: rank {world.rank}: {finished.error}", file=sys.stderr, flush=True)
    return code


def prepare_machine(config: dict, world) -> str | None:
    """The first process of each machine but rank 0's fetches the dataset onto its own disk (or
    looks over the folder there: its cache is this machine's). The problem, or None."""
    from gantui.common import GantuiError
    from gantui.config import Config
    from gantui.engine.device import resolve_device
    from gantui.preparing import prepare_data

    if world.main or world.local_rank != 0:
        return None
    try:
        mine = Config.from_dict(config)
        prepare_data(mine, resolve_device(mine.device))
    except GantuiError as err:
        return str(err)
    return None


def restarted(args: argparse.Namespace) -> None:
    """A torchrun restart (`--max-restarts`, after a rank failed) resumes this job's run from its
    newest checkpoint: the run in --out, or the newest whose config.json names this job."""
    from gantui.engine.checkpoint import resolve_checkpoint
    from gantui.run.runs import all_runs

    count = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if count in ("", "0") or args.resume:
        return
    if args.out:
        found = [Path(args.out).expanduser()]
    else:
        job = os.environ.get("TORCHELASTIC_RUN_ID")
        found = [r.path for r in reversed(all_runs()) if job and r.read_config().get("job") == job][:1]
    for run in found:
        if (run / "checkpoints" / "last.pt").is_file():
            args.resume = str(resolve_checkpoint(run))
            args.out = args.config = None  # the checkpoint's own run, with its own settings
            print(f"gantui: restart {count} of this torchrun job: resuming {run}", file=sys.stderr, flush=True)


def nproc_count(text: str) -> int:
    if text == "auto":
        import torch

        return max(torch.cuda.device_count(), 1)
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        fail(f"--nproc {text}: the number of processes, 1 or more, or auto (one per visible GPU)")
    return n


def without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc=") and arg != "--ui":  # the dashboard is the launcher's
            out.append(arg)
    return out


def launch(argv: list[str], args: argparse.Namespace, ui: bool) -> int:
    """torchrun's launcher as a child (`--standalone`: one machine), every rank headless; in a
    terminal, the dashboard drawn here as a client of rank 0's socket."""
    from gantui.run.rundir import default_run_dir

    n = nproc_count(args.nproc)
    rest = without_nproc(argv)
    out = Path(args.out).expanduser().resolve() if args.out else None
    if out is None and args.resume:
        from gantui.engine.checkpoint import resolve_checkpoint
        from gantui.run.rundir import run_dir_of

        out = Path(run_dir_of(resolve_checkpoint(args.resume)))
    if out is None:
        out = default_run_dir()
        rest += ["--out", str(out)]
    launcher = ["--standalone", f"--nproc-per-node={n}", "-m", "gantui", *rest, "--no-ui"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher]
    if not ui:
        return foreground(launcher)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "gantui.log", "ab")
    job = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        path = served(out, job)
    except KeyboardInterrupt:  # the job is this launcher's: a Ctrl-C before the dashboard stops it, saved
        job.terminate()  # torchrun passes it to every rank
        return ended(job) or 130
    if path is None:
        sys.stderr.write((out / "gantui.log").read_text(errors="replace")[-2000:])
        return job.returncode
    code = dashboard(path, out, args.images)
    if code == DETACHED:
        if job.poll() is not None:  # the job ended meanwhile: its own exit status
            return ended(job)
        print(f"gantui: detached; the job goes on ({n} processes). {how_to_reach(out)}", flush=True)
        return 0
    return ended(job) or code  # q: every rank stopped at one step and saved; the launcher ends with the job


def how_to_reach(out: Path) -> str:
    return f"Attach again: gantui watch {out}   Stop it, saved: gantui stop {out}"


def ended(job: subprocess.Popen) -> int:
    """The job's exit code, waited for. A Ctrl-C meanwhile stops every rank, saved (torchrun passes
    SIGTERM on); a second ends the job's processes at once. Never a traceback."""
    try:
        return job.wait()
    except KeyboardInterrupt:
        job.terminate()
    try:
        return job.wait()
    except KeyboardInterrupt:
        os.killpg(job.pid, signal.SIGKILL)  # the job's own session: torchrun and every rank
        job.wait()
        return 130


DETACHED = -1  # the dashboard left the job running (d, or its terminal hung up)


def served(out: Path, job: subprocess.Popen) -> Path | None:
    """Rank 0's socket once the run is written (its config) and served, found as `gantui watch`
    finds it: RUN/gantui.sock, or where RUN/gantui.sock.path says when that path is too long for a
    socket. None: the job ended first."""
    from gantui.run.rundir import RunDir
    from gantui.run.runs import is_run
    from gantui.run.server import socket_answers

    run_dir = RunDir(out)
    while job.poll() is None:
        path = run_dir.find_socket() if is_run(out) else None
        if path is not None and path.exists() and socket_answers(path):
            return path
        time.sleep(0.1)
    return None


def dashboard(path: Path, out: Path, images: str = "auto") -> int:
    """The job's dashboard, as its owner: q stops every rank, saved; d leaves the job running."""
    from gantui.run.client import socket_link
    from gantui.ui.app import GanApp
    from gantui.ui.pictures.terminal import detect

    app = GanApp(socket_link(path), job=True, pictures=detect(images))
    code = app.run()
    if app.lost and app.started is None:
        fail(f"{app.lost}; the job goes on. {how_to_reach(out)}")
    if app.leaving.detached:
        return DETACHED
    return code if code is not None else app.leaving.exit_code()


def foreground(launcher: list[str]) -> int:
    """torchrun's launcher in this process: a stop signal reaches every rank (each saves at the step
    they agree on) and ends the launcher without its traceback; a rank's failure is its exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    try:
        run(get_args_parser().parse_args(launcher))
    except SignalException as err:
        return 128 + int(err.sigval)
    except ChildFailedError as err:
        codes = [failure.exitcode for failure in err.failures.values()]
        code = next((c for c in codes if c > 0), 1)
        if code != 2:  # 2: rank 0 said why in one line already
            print(f"gantui: a process of the job failed (exit {code})", file=sys.stderr)
        return code
    return 0
