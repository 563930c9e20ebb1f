"""What the tests share: subprocess helpers, waits on conditions, the app on a run in this process.
No test module imports another; they import this (the scripted runs are gantui.ui.demo's, which a
benchmark and a script draw too: neither imports a test module)."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import gantui
from gantui.run.client import LocalLink
from gantui.run.rundir import RunDir
from gantui.session import Session
from gantui.ui.app import GanApp

# CLI flags for quick subprocess runs: a run's final evaluation scores 100 images (2,000 by default
# took 4 of a short run's 9 CPU seconds), enough for the figures' keys and the path that makes them
FAST = ["--batch-size", "16", "--device", "cpu", "--log-every", "2", "--eval-n", "100"]
NEVER = "100000"  # a step budget no test reaches: a signal, a stop or a pause lands before the end, however fast
PACKAGE_DIRS = {Path(gantui.__file__).parent, Path(gantui.__file__).resolve().parent}  # as imported, and real


# -- fresh processes -------------------------------------------------------------------
def gantui_traceback(text: str) -> bool:
    """Whether `text` (a process's stderr) holds a frame of gantui's own code. Found by the package's
    directory, not by the word: a clone lives in a folder named gantui, and so does its venv."""
    return any(f'File "{root}{os.sep}' in text for root in PACKAGE_DIRS)


TORCH_FREE = {"stop", "relay", "watch", "runs", "compare", "sweep", "--help"}  # gantui's commands that start without torch
ENV_AT_START = dict(os.environ)  # the fork server's, whichever test starts it


class Forked(subprocess.Popen):
    """A `subprocess.Popen` of python (`-m MODULE`, `-c CODE` or a script) whose process is forked by
    tests/forkserver.py, where torch is imported already, instead of started from scratch: ~4 s of
    CPU less a run. It is not this process's child: its wait status comes from the server.

    Only a process that would import torch is forked (one that starts without it gains nothing and
    would show less). A test of an exact resume starts the resumed run from scratch (`fresh=True`):
    its claim is about a fresh interpreter (another hash seed, nothing imported)."""

    _server: subprocess.Popen | None = None
    _address = ""
    _starting = threading.Lock()

    @classmethod
    def serves(cls, args, kwargs) -> bool:
        if (os.environ.get("GANTUI_TESTS_EXEC") == "1" or len(args) < 2 or args[0] != sys.executable
                or not set(kwargs) <= {"stdin", "stdout", "stderr", "text", "env", "cwd",
                                                               "start_new_session"}):
            return False
        if args[1] == "-m":
            command = args[3] if len(args) > 3 else ""
            return args[2] == "torch.distributed.run" or (args[2] == "gantui" and command not in TORCH_FREE)
        if args[1] == "-c":
            return "torch" in args[2]
        return not str(args[1]).startswith("-")  # a script: the suite's import torch, or gantui's trainer

    @classmethod
    def _connect(cls) -> socket.socket:
        with cls._starting:
            if cls._server is None or cls._server.poll() is not None:
                cls._address = f"gantui-tests-forkserver-{os.getpid()}-{time.monotonic_ns()}"
                cls._server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py")),
                                                cls._address], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               text=True, env=ENV_AT_START, preexec_fn=signals_as_in_a_terminal())
                if cls._server.stdout.readline() != "ready\n":
                    raise RuntimeError("the fork server did not start")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect("\0" + cls._address)
        return conn

    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo, creationflags,
                       shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, restore_signals, gid, gids,
                       uid, umask, start_new_session, process_group=None):  # (3.10 passes no process_group)
        request = json.dumps({"argv": [os.fsdecode(a) for a in args[1:]], "env": dict(os.environ if env is None else env),
                              "cwd": os.path.abspath(os.fsdecode(cwd or os.getcwd())),
                              "session": bool(start_new_session)}).encode()
        fds = [p2cread if p2cread != -1 else 0, c2pwrite if c2pwrite != -1 else 1, errwrite if errwrite != -1 else 2]
        self._conn, self._server = self._connect(), Forked._server  # this process's server, if another follows
        socket.send_fds(self._conn, [request], fds)
        answer = self._conn.recv(4096)
        if not answer:
            raise RuntimeError("the fork server did not fork")
        self.pid = json.loads(answer)["pid"]
        self._child_created = True
        self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _try_wait(self, wait_flags):
        self._conn.setblocking(not wait_flags & os.WNOHANG)
        try:
            answer = self._conn.recv(4096)
        except BlockingIOError:
            return 0, 0
        if not answer:  # the server has gone: the status is lost (the process may live on; kill() still reaches it)
            if wait_flags & os.WNOHANG:
                return 0, 0
            raise RuntimeError(f"the fork server went away: the end of process {self.pid} is unknown")
        self._conn.close()
        return self.pid, json.loads(answer)["status"]

    def _internal_poll(self, _deadstate=None, **_):
        if self.returncode is None and self._waitpid_lock.acquire(False):
            try:
                if self.returncode is None:
                    pid, status = self._try_wait(os.WNOHANG)
                    if pid:
                        self._handle_exitstatus(status)
                    elif _deadstate is not None and self._server.poll() is not None:  # (from __del__)
                        self.returncode = _deadstate
            finally:
                self._waitpid_lock.release()
        return self.returncode


def signals_as_in_a_terminal():
    """A child's preexec_fn that gives it SIGINT and SIGHUP as a terminal's processes get them, where
    this process has them ignored (None elsewhere: a preexec_fn is not free where threads run). A
    suite started under nohup, or in the background by a shell that is not interactive, has them
    ignored, and a run leaves an ignored signal ignored (as nohup asks): a test that sent one waited."""
    ignored = [s for s in (signal.SIGINT, signal.SIGHUP) if signal.getsignal(s) == signal.SIG_IGN]
    if not ignored:
        return None

    def restore() -> None:
        for number in ignored:
            signal.signal(number, signal.SIG_DFL)

    return restore


STARTED: list[subprocess.Popen] = []  # this test's processes: conftest kills those left running


def popen(args: list, fresh: bool = False, **kwargs) -> subprocess.Popen:
    """`subprocess.Popen(ARGS)`, forked (`Forked`) where ARGS is python running something that
    imports torch, unless `fresh` or something asked for needs a process started from scratch.
    Either way the child gets SIGINT and SIGHUP as a terminal's processes do (the fork server's
    children from the server), and it does not outlive its test."""
    if Forked.serves(args, kwargs) and not fresh:
        proc = Forked(args, **kwargs)
    else:
        given, restore = kwargs.pop("preexec_fn", None), signals_as_in_a_terminal()

        def both() -> None:
            restore()
            given()

        proc = subprocess.Popen(args, preexec_fn=both if restore and given else restore or given, **kwargs)
    STARTED.append(proc)
    return proc


def run_process(args: list, *, input=None, capture_output: bool = False, timeout: float | None = None,
                check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(ARGS, ...)` through `popen` (`fresh=True`: from scratch)."""
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with popen(args, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:  # a timeout, or pytest-timeout's: the process goes too, as subprocess.run does
            proc.kill()
            raise
    done = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if check:
        done.check_returncode()
    return done


def gantui(*args: str, timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m gantui ARGS` to its end, in a process of its own (forked unless `fresh=True`: see
    `Forked`); `env` adds to this one's environment."""
    return run_process([sys.executable, "-m", "gantui", *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, **kwargs)


def refused(capsys, *argv: str, code: int = 2) -> str:
    """`gantui ARGV` in this process, for a refusal (each entry point keeps one fresh-process canary):
    asserts the exit code, returns what went to stderr."""
    import pytest

    from gantui.cli import main

    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    err = capsys.readouterr().err
    assert exited.value.code == code, err
    assert "Traceback" not in err
    return err


def start(out: Path, *args: str) -> subprocess.Popen:
    """A headless run into `out`, left running (FAST flags; later flags win)."""
    return popen([sys.executable, "-m", "gantui", "--no-ui", "--out", str(out), *FAST, *args],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def metrics_rows(out: Path) -> list[dict]:
    """The run's metrics.jsonl (rows and events) as written so far, read as gantui reads it: a line
    cut short (one still being written) is skipped; no file, no rows."""
    from gantui.run.rundir import RunDir

    return RunDir(out).read_metrics()


def last_step(out: Path) -> int:
    """The step of the run's last metrics row."""
    return max(r["step"] for r in metrics_rows(out) if "loss_d" in r)


class Peer:
    """A scripted client of a run's socket."""

    def __init__(self, out: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(out / "gantui.sock"))
        self.sock.settimeout(30)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, cmd: str, **fields) -> None:
        self.send(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")

    def read(self) -> dict | None:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def until(self, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.read()
            assert msg is not None, "the run closed the connection"
            if predicate(msg):
                return msg
        raise AssertionError("timed out")

    def close(self) -> None:
        self.sock.close()


# -- terminals ---------------------------------------------------------------------------
TERM = {"TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}


def drain(fd: int, seconds: float) -> bytes:
    """What a pseudo-terminal shows for `seconds` (read, so that a full terminal blocks nobody)."""
    data, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                data += os.read(fd, 65536)
            except OSError:
                break
    return data


def read_until(fd: int, condition, timeout: float = 60) -> bytes:
    """What a pseudo-terminal shows until `condition(shown)` holds or the terminal closes (read all
    along, so that a full terminal blocks nobody): a wait on the screen, not on the clock."""
    data, deadline = b"", time.monotonic() + timeout
    while not condition(data):
        assert time.monotonic() < deadline, f"timed out; the terminal showed ...{data[-300:]!r}"
        if select.select([fd], [], [], 0.05)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            data += chunk
    return data


def wait_until(condition, timeout: float = 60, what: str = "the condition") -> None:
    """Poll `condition` until it holds, with a deadline (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def dashboard_in_a_pty(out: Path, *args: str, entry: tuple[str, ...] = ("-m", "gantui"), env: dict | None = None,
                       **popen_kwargs) -> tuple[subprocess.Popen, int]:
    """A long dashboard run in a fresh pseudo-terminal, once it shows TRAINING and has logged step 2.
    `entry` is what python runs (a `-c` script that wraps gantui's main, for one); `env` adds to ours."""
    main, child = pty.openpty()
    proc = popen([sys.executable, *entry, "--out", str(out), *FAST, "--steps", NEVER, *args], stdin=child,
                 stdout=child, stderr=child, env={**os.environ, **TERM, **(env or {})}, **popen_kwargs)
    os.close(child)
    read_until(main, lambda screen: b"TRAINING" in screen, timeout=120)
    wait_for_step(out, 2)
    return proc, main


def controlling_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is its stdin, as under sshd or tmux."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def wait_for_step(out: Path, step: int, timeout: float = 120) -> None:
    """Wait until the run in `out` has logged metrics at `step` or later."""
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and any(row.get("step", 0) >= step for row in RunDir(out).read_metrics()):
            return
        time.sleep(0.05)
    raise AssertionError(f"training did not reach step {step}")


class AlwaysPreview:
    """A preview source that asks for `count` previews at every step (tests of the engine alone)."""

    def __init__(self, count: int = 16) -> None:
        self.count = count

    def previews_due(self) -> int:
        return self.count

    def preview_cost(self, seconds: float) -> None:
        pass


SESSIONS: list[Session] = []


def make_app(config) -> GanApp:
    """The dashboard on a run in this process (no socket), as `gantui` builds it; the test may read
    the trainer as `app.trainer` (the app itself never does)."""
    session = Session(config, serve=False)
    session.hub.pacer.floor = session.hub.pacer.interval = 0.1
    session.start()
    SESSIONS.append(session)  # stopped after the test, however it ended (conftest.py)
    app = GanApp(LocalLink(session.hub))
    app.trainer = session.trainer
    return app


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


# -- data on disk ----------------------------------------------------------------------------
def write_images(root: Path, n: int, size: tuple[int, int] = (80, 72), seed: int = 0, grey: bool = False) -> None:
    """Coloured discs on dark ground, half PNG and half JPEG, in two subfolders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size[1], :size[0]]
    for i in range(n):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        r, cx, cy = rng.integers(6, 20), rng.integers(15, size[0] - 15), rng.integers(15, size[1] - 15)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(60, 256, 3)
        sub = root / ("a" if i % 2 else "b" / Path("deeper"))
        sub.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image).convert("L" if grey else "RGB")
        picture.save(sub / (f"{i:05d}.png" if i % 2 else f"{i:05d}.jpg"))


def write_idx(raw: Path, n: int = 96, seed: int = 0) -> None:
    """The four files of an MNIST-like torchvision dataset, in IDX format, with `n` random images."""
    import numpy as np

    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


# -- torchrun ------------------------------------------------------------------------------
def torchrun(*args: str, nproc: int = 2, launcher: tuple[str, ...] = ("--standalone",),
             program: tuple[str, ...] = ("-m", "gantui")) -> list[str]:
    """The command line of a torchrun job of `python -m gantui ARGS` (gloo on the CPU); `program=()`:
    of ARGS, a script and its arguments."""
    return [sys.executable, "-m", "torch.distributed.run", *launcher, f"--nproc-per-node={nproc}",
            *program, *args]


def write_run(path: Path, settings: dict, steps: int = 40, fid: float = 300.0, state: str = "done",
              grids: tuple[int, ...] = (10, 20, 30, 40), seed: int = 0) -> RunDir:
    """A finished run's directory written by hand, the same at every call: config.json, status.json,
    training rows and evaluations, sample grids laid out as the trainer's (torchvision's padding)."""
    import math

    import numpy as np
    from PIL import Image

    run = RunDir(path).create()
    run.write_config({"dataset": "mnist", "batch_size": 64, "d_steps": 1, "image_shape": [1, 28, 28],
                      "producer": "gantui", **settings})
    run.write_status(state, step=steps, total_steps=steps)
    rng = np.random.default_rng(seed)
    lines = []
    for step in range(2, steps + 1, 2):
        lines.append({"step": step, "epoch": 1, "loss_g": 1.0 + seed * 0.3 + 0.5 * math.sin(step / 5 + seed),
                      "loss_d": 1.2 - 0.2 * math.cos(step / 7 + seed), "d_real": 0.6, "d_fake": 0.4,
                      "images_per_s": 1000.0 * (seed + 1), "time": 1_000_000.0 + step * (seed + 1)})
        if step % 10 == 0:
            lines.append({"event": "quality", "step": step, "fid": fid * 0.8 ** (step / 10), "fid_n": 2000,
                          "time": 1_000_000.0 + step * (seed + 1)})
    run.metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    for step in grids:
        tiles = rng.integers(0, 256, (4, 4, 28, 28), dtype=np.uint8)
        canvas = np.zeros((4 * 30 + 2, 4 * 30 + 2), np.uint8)
        for r in range(4):
            for c in range(4):
                canvas[2 + r * 30:2 + r * 30 + 28, 2 + c * 30:2 + c * 30 + 28] = tiles[r, c]
        Image.fromarray(canvas).save(run.sample_path(step))
    return run


TERM_ENV = {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}


class Terminal:
    """A command in a fresh pseudo-terminal; `screen` is everything it has drawn."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.main, child = pty.openpty()
        self.proc = popen([sys.executable, "-m", "gantui", *args], stdin=child, stdout=child, stderr=child,
                          env={**os.environ, **TERM_ENV, **(env or {})}, start_new_session=True)
        os.close(child)
        self.screen = b""

    def read(self, seconds: float = 0.2) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if select.select([self.main], [], [], 0.05)[0]:
                try:
                    self.screen += os.read(self.main, 1 << 20)
                except OSError:
                    return

    def wait_for(self, text: bytes, timeout: float = 60, since: int = 0) -> float:
        """Until `text` is drawn (after byte `since` of the output); the seconds it took."""
        start_time = time.monotonic()
        while text not in self.screen[since:]:
            assert time.monotonic() - start_time < timeout, f"{text!r} never appeared"
            assert self.proc.poll() is None, self.screen[-2000:]
            self.read(0.1)
        return time.monotonic() - start_time

    def press(self, keys: bytes) -> int:
        """Type `keys`; returns where the output stood, for `wait_for(..., since=)`."""
        os.write(self.main, keys)
        return len(self.screen)

    def exit_code(self, timeout: float = 30) -> int:
        """Its exit status, reading what it draws meanwhile (a full terminal would block its exit)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "it did not exit"
            self.read(0.1)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.main)
