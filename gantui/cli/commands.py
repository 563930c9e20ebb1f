"""`gantui watch`, `runs`, `stop` and `relay`: clients of runs, torch-free (they start in well
under a second; importing torch alone takes seconds)."""
from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
import zlib
from pathlib import Path

from gantui.cli.parser import Parser, fail, images_arg
from gantui.run.client import connect, read_messages
from gantui.run.rundir import RunDir
from gantui.run.runs import all_runs, resolve_run, run_state, summary, table

STOP_TIMEOUT = 300.0  # seconds `gantui stop` waits for the run's save and exit


def root_arg(p: Parser) -> None:
    p.add_argument("--root", type=Path, help="the runs directory (default: the user data dir's gantui/runs)")


def parse_run(prog: str, description: str, argv: list[str]) -> RunDir:
    """The one-run commands' arguments (RUN, --root), as the run directory they name."""
    p = Parser(prog=prog, description=description)
    p.add_argument("run", nargs="?", help="a run directory or a run's name (default: the newest running run)")
    root_arg(p)
    args = p.parse_args(argv)
    return resolve_run(args.run, args.root)


def is_remote(spec: str | None) -> bool:
    return bool(spec) and ":" in spec and not Path(spec).expanduser().exists()


def watch(argv: list[str]) -> int:
    p = Parser(prog="gantui watch", description="Watch and steer a run: live, replayed, or on another host.")
    p.add_argument("run", nargs="?", help="a run directory, a run's name, or HOST:RUN (over ssh); "
                                          "default: the newest running run, else the newest run")
    root_arg(p)
    images_arg(p)
    args = p.parse_args(argv)
    if not sys.stdout.isatty() or os.environ.get("TERM") == "dumb":
        fail("gantui watch draws a dashboard: it needs a terminal (for logs: tail RUN_DIR/metrics.jsonl)")
    from gantui.run.client import ReplayLink, relay_link, socket_link

    if is_remote(args.run):
        host, run = args.run.split(":", 1)
        link = relay_link(host, run)
    else:
        run_dir = resolve_run(args.run, args.root)
        path = run_dir.find_socket()
        from gantui.run.server import socket_answers

        link = socket_link(path) if path is not None and socket_answers(path) else ReplayLink(run_dir)
    from gantui.ui.app import GanApp
    from gantui.ui.pictures.terminal import detect

    app = GanApp(link, pictures=detect(args.images))
    code = app.run()
    if app.lost and app.started is None:
        fail(app.lost)
    return code if code is not None else app.leaving.exit_code()


def runs(argv: list[str]) -> int:
    p = Parser(prog="gantui runs", description="The runs under the runs directory, oldest first.")
    root_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per run, a line each")
    args = p.parse_args(argv)
    rows = [summary(r) for r in all_runs(args.root)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif rows:
        print(table(rows))
    else:
        print("no runs yet", file=sys.stderr)
    return 0


def stop(argv: list[str]) -> int:
    if argv and (Path(argv[0]).expanduser() / "sweep.json").is_file():
        from gantui.cli.sweep import stop_sweep

        return stop_sweep(Path(argv[0]))
    run_dir = parse_run("gantui stop", "Save, then stop a running run; returns once it has stopped.", argv)
    sock = connect(run_dir)
    if sock is None:
        fail(f"{run_dir.path} is not running ({run_state(run_dir)})")
    deadline = time.monotonic() + STOP_TIMEOUT
    finished = None
    with sock:
        sock.sendall(b'{"cmd": "stop"}\n')
        for msg in read_messages(sock, deadline):
            if msg.get("type") == "error":
                fail(f"the run says: {msg.get('error')}")
            if msg.get("type") == "snapshot" and msg.get("finished"):  # ended already; a dashboard still shows it
                ended = msg["finished"]
                print(f"{run_dir.path.name} had already ended ({ended['reason']} at step {ended['step']})")
                return 0
            if msg.get("type") == "finished":
                finished = msg
                break
    while run_dir.is_locked() and time.monotonic() < deadline:  # the process saves, then exits
        time.sleep(0.1)
    if finished is None or run_dir.is_locked():
        fail(f"{run_dir.path} did not stop within {STOP_TIMEOUT:.0f} s", code=1)
    saved = f"; checkpoint {finished['checkpoint']}" if finished.get("checkpoint") else ""
    print(f"stopped {run_dir.path.name} at step {finished['step']}{saved}")
    return 0


def relay(argv: list[str]) -> int:
    """stdin/stdout <-> the run's socket: what `gantui watch HOST:RUN` runs on HOST over ssh."""
    zipped = "--zlib" in argv  # what crosses the network compressed as one zlib stream
    run_dir = parse_run("gantui relay", "Bridge stdin/stdout to a run's socket (for gantui watch HOST:RUN).",
                        [a for a in argv if a != "--zlib"])
    out = ZlibOut(sys.stdout.fileno()) if zipped else RawOut(sys.stdout.fileno())
    sock = connect(run_dir)
    if sock is None:
        return replay_to_stdout(run_dir, out)
    with sock:
        bridge(sock, out)
    return 0


class RawOut:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        """All of `data` (BrokenPipeError once the watcher's side has gone)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]


class ZlibOut(RawOut):
    """One zlib stream, flushed at each write so the watcher sees every message at once: JSON rows
    repeat their keys, and the run's events shrink several times over."""

    def __init__(self, fd: int) -> None:
        from gantui.run.protocol import ZLIB_MARK

        super().__init__(fd)
        self.zip = zlib.compressobj(9)
        super().write(ZLIB_MARK)

    def write(self, data: bytes) -> None:
        super().write(self.zip.compress(data) + self.zip.flush(zlib.Z_SYNC_FLUSH))


def bridge(sock: socket.socket, out: RawOut) -> None:
    stdin = sys.stdin.fileno()
    open_ends = {stdin, sock.fileno()}
    while open_ends:
        for fd in select.select(list(open_ends), [], [])[0]:
            data = os.read(fd, 1 << 16) if fd == stdin else sock.recv(1 << 16)
            if fd == stdin:
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    open_ends.discard(stdin)
                    continue
                sock.sendall(data)
            else:
                if not data:
                    return  # the run closed the connection
                try:
                    out.write(data)
                except BrokenPipeError:
                    return  # the watcher's side has gone


def replay_to_stdout(run_dir: RunDir, out: RawOut) -> int:
    """A run nobody serves: a hello and its replayed snapshot, then its samples again at the depth
    and count a preview request asks, where protocol.preview_again says (a watcher that draws
    pictures asks 8 bits), until the watcher leaves."""
    from gantui.run import protocol
    from gantui.run.replay import replay_snapshot

    snapshot = replay_snapshot(run_dir)
    out.write(protocol.dumps({"type": "hello", "protocol": protocol.PROTOCOL, "client": None, "replay": True}) +
              protocol.dumps(protocol.encode(snapshot)))
    depth, count = 4, None  # the snapshot's preview: every tile, in 16 levels (as a served run's first)
    for line in sys.stdin.buffer:
        try:
            cmd = protocol.parse_command(line)
        except protocol.ProtocolError as err:
            out.write(protocol.dumps({"type": "error", "error": str(err)}))
            continue
        if cmd["cmd"] != "preview":
            out.write(protocol.dumps({"type": "error", "error": "a replay is read-only"}))
            continue
        reply = protocol.dumps({"type": "ok", "cmd": "preview"})
        if snapshot.preview is not None and protocol.preview_again(depth, count, cmd["depth"], cmd["count"]):
            reply += protocol.dumps(protocol.encode(snapshot.preview, cmd["depth"], cmd["count"]))
        depth, count = cmd["depth"], cmd["count"]
        out.write(reply)
    return 0
