"""A process that has imported torch once and forks, on request, a fresh `python -m MODULE ARGS`
(or `-c CODE`, or `SCRIPT ARGS`) from itself: the suite's runs skip the ~3 s import of torch and
the ~1.5 s of torch._dynamo (its optimizers import it at the first step) that a process started
from scratch pays. Started by tests/support.py (`Forked`), one per pytest worker;
`GANTUI_TESTS_EXEC=1` runs the whole suite without it.

Each request is one SOCK_SEQPACKET connection: a JSON message (argv after the interpreter, env, cwd,
whether to start a session) with the child's stdin, stdout and stderr attached as file descriptors;
the answers are the child's pid, then, once the child has ended, its wait status. The child is a
process of its own (its pid, signals, session, files, numpy and Python random streams); it shares
with its siblings only what importing torch made, and the interpreter's hash seed. Nothing here
starts a thread, so the fork copies no lock held elsewhere."""
from __future__ import annotations

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
import torch._dynamo  # noqa: F401
import torchvision  # noqa: F401


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd hears it
    children: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        ready = select.select([listener, wake_read, sys.stdin], [], [])[0]
        if sys.stdin in ready and not sys.stdin.buffer.read1(1):  # the pytest worker that started this has gone
            os.unlink(path)
            os.rmdir(os.path.dirname(path))
            return
        if wake_read in ready:
            os.read(wake_read, 4096)
            reap(children)
        if listener in ready:
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:  # the child: never returns, but exits as `python -m` would
                for held in (listener, conn, *children.values()):
                    held.detach()  # closed below, by number: no socket object may close a reused fd later
                become(request, fds)
            for fd in fds:
                os.close(fd)
            conn.send(json.dumps({"pid": pid}).encode())
            children[pid] = conn
            reap(children)  # a child may have ended before it was recorded


def reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                conn.send(json.dumps({"status": status}).encode())
            except OSError:
                pass  # nobody waits for it any more
            conn.close()


def become(request: dict, fds: list[int]) -> None:
    """In the child: the files, session, directory, environment and arguments of the process asked
    for, then the module run as `python -m` runs it."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGCHLD else signal.default_int_handler)
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
    option, target, *args = request["argv"]
    if option == "-m":
        sys.path[0] = os.getcwd()
        sys.argv = [option, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif option == "-c":
        sys.path[0] = ""
        sys.argv = [option, *args]
        main = sys.modules["__main__"] = types.ModuleType("__main__")
        exec(compile(target, "<string>", "exec"), main.__dict__)
    else:  # a script, then its arguments
        sys.path[0] = os.path.dirname(os.path.abspath(option))
        sys.argv = [option, target, *args]
        runpy.run_path(option, run_name="__main__")
    sys.exit(0)


if __name__ == "__main__":
    serve(sys.argv[1])
