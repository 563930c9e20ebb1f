"""A process that has imported torch once and forks, on request, a fresh `python -m MODULE ARGS`
(or `-c CODE`, or `SCRIPT ARGS`) from itself: the suite's runs skip the ~3 s import of torch and
the ~1.5 s of torch._dynamo (its optimizers import it at the first step) that a process started
from scratch pays. Started by tests/support.py (`Forked`), one per pytest worker;
`GANTUI_TESTS_EXEC=1` runs the whole suite without it.

Each request is one SOCK_SEQPACKET connection (an abstract socket: nothing on disk to clean up): a
JSON message (argv after the interpreter, env, cwd, whether to start a session) with the child's
stdin, stdout and stderr attached as file descriptors; the answers are the child's pid, then, once
it has ended, its wait status. The child is a process of its own (its pid, signals, session, files,
numpy and Python random streams) and runs its code in a `__main__` of its own, as python does; it
shares with its siblings what importing torch made (and any warning that import gave, here, not in
each child) and the interpreter's hash seed. Nothing here starts a thread, so the fork copies no
lock held elsewhere."""
from __future__ import annotations

import contextlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import types

import numpy  # imported here to be inherited: the point of this process
import PIL.Image  # noqa: F401
import torch  # noqa: F401
import torchvision  # noqa: F401

with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401


def serve(address: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd hears it
    children: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        ready = select.select([listener, wake_read, sys.stdin], [], [])[0]
        if sys.stdin in ready and not sys.stdin.buffer.read1(1):
            return  # the pytest worker that started this process has gone
        if wake_read in ready:
            os.read(wake_read, 4096)
            reap(children)
        if listener in ready:
            conn, _ = listener.accept()
            try:
                conn.settimeout(30)
                message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                request = json.loads(message)
            except (OSError, ValueError):  # a client that went away, or a message that is not one
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:  # the child: never returns, but exits as python would
                for held in (listener, conn, *children.values()):
                    held.detach()  # closed below, by number: no socket object may close a reused fd later
                become(request, fds)
            for fd in fds:
                os.close(fd)
            children[pid] = conn
            answer(children, pid, {"pid": pid})
            reap(children)  # a child may have ended before it was recorded


def answer(children: dict[int, socket.socket], pid: int, message: dict) -> None:
    try:
        children[pid].send(json.dumps(message).encode())
    except OSError:
        pass  # nobody waits for it any more


def reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            answer(children, pid, {"status": status})
            children.pop(pid).close()


def become(request: dict, fds: list[int]) -> None:
    """In the child: the files, session, directory, environment and arguments of the process asked
    for, then its code run as python runs it (in a fresh `__main__`, interpreter shutdown after)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if request["session"]:
        os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    sys.stdout.reconfigure(line_buffering=os.isatty(1))  # as the interpreter sets it at start
    numpy.random.seed()  # numpy's global stream was seeded when it was imported here: fresh entropy, as at a start
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    main = sys.modules["__main__"] = types.ModuleType("__main__")
    option, *rest = request["argv"]
    if option == "-m":
        sys.path[0] = os.getcwd()
        sys.argv = [option, *rest[1:]]
        runpy._run_module_as_main(rest[0])  # what `python -m` calls (it sets sys.argv[0] to the module's file)
    elif option == "-c":
        sys.path[0] = ""
        sys.argv = [option, *rest[1:]]
        exec(compile(rest[0], "<string>", "exec"), main.__dict__)
    else:  # a script, then its arguments
        sys.path[0] = os.path.dirname(os.path.abspath(option))
        sys.argv = [option, *rest]
        main.__file__ = option
        with open(option, "rb") as source:
            exec(compile(source.read(), option, "exec"), main.__dict__)
    raise SystemExit(0)  # not sys.exit: a user's loop may have wrapped it (gantui.init does) to see its own exits


if __name__ == "__main__":
    serve("\0" + sys.argv[1])  # the abstract namespace
