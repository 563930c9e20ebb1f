"""The run served on a Unix-domain socket, with stdlib asyncio in a thread of its own.

asyncio rather than a messaging library (ZeroMQ, as Jupyter uses): one reader and one writer
task per client are all this needs, `start_unix_server` takes a socket we bind ourselves (so its
mode and a stale file are handled before anyone can connect), and newline-delimited JSON can be
scripted with `socat`. The trainer never waits for a client: the hub hands each event to
`Client.push`, which only appends to that client's bounded queue (metrics rows coalesce, a newer
preview replaces an older one) and wakes its writer; a client that stops reading is dropped.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from gantui.run import events as ev
from gantui.common import HISTORY, finite_row
from gantui.run.rundir import SOCKET_POINTER, RunDir
from gantui.run import protocol
from gantui.run.hub import RunHub

MAX_EVENTS = 512  # queued events (not rows, not previews) before a client counts as too far behind
DRAIN_TIMEOUT = 20.0  # seconds a client may leave its data unread before it is dropped
COMMAND_RATE = 50.0  # commands a second a client may send on average...
COMMAND_BURST = 100  # ...and at once; past that each gets an error reply, and past 10x the burst it is dropped
SOL_LOCAL = 0  # the socket level of LOCAL_PEERCRED (macOS, the BSDs)


class NoPeerCheck(OSError):
    """This platform cannot tell who connects to a Unix socket: the run is not served."""


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end: SO_PEERCRED on Linux, LOCAL_PEERCRED (a struct
    xucred: version, uid, ...) on macOS and the BSDs."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    if hasattr(socket, "LOCAL_PEERCRED"):
        creds = sock.getsockopt(SOL_LOCAL, socket.LOCAL_PEERCRED, struct.calcsize("Ii") + 2 + 4 * 16)
        return struct.unpack_from("Ii", creds)[1]
    raise NoPeerCheck("this platform cannot tell who connects to a socket, so the run is not served "
                      "(gantui watch and stop need SO_PEERCRED or LOCAL_PEERCRED)")


def check_peer_credentials() -> None:
    """Before serving: NoPeerCheck where no peer check exists (never a socket anyone could steer)."""
    if not (hasattr(socket, "SO_PEERCRED") or hasattr(socket, "LOCAL_PEERCRED")):
        peer_uid(None)  # type: ignore[arg-type]


def socket_answers(path: Path) -> bool:
    """Whether a process is listening on `path` (a file left by a killed one does not answer)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class Client:
    """One connection: the hub pushes from the trainer's thread, the loop writes."""

    def __init__(self, server: RunServer, writer: asyncio.StreamWriter) -> None:
        self.server, self.writer = server, writer
        self.name = ""
        self._lock = threading.Lock()
        self._queue: deque[dict[str, Any] | ev.Started] = deque()  # messages to write, in order (a snapshot unencoded)
        self._rows: list[dict[str, Any]] | None = None  # the metrics message at the queue's end, still growing
        self._preview: ev.Preview | None = None
        self._overflow = False
        self.depth, self.count = 4, None  # the previews it asked for: bits a channel, tiles (None: all; 0: none)
        self._woken = False
        self.closing = False
        self._wake = asyncio.Event()
        self._tokens, self._refilled, self._refused = float(COMMAND_BURST), time.monotonic(), 0

    def push(self, event: ev.Event) -> None:
        """From any thread; never blocks, never raises."""
        with self._lock:
            if isinstance(event, ev.Preview):
                self._preview = event
            elif isinstance(event, ev.Metrics):
                if self._rows is None:
                    self._rows = []
                    self._queue.append({"type": "metrics", "rows": self._rows})
                if len(self._rows) < HISTORY:
                    self._rows.append(event.row)
                else:
                    self._overflow = True
            elif isinstance(event, ev.Started):  # a snapshot: encoded by the writer, outside the hub's lock
                self._queue.append(event)
                self._rows = None
            else:
                self._queue.append(protocol.encode(event))
                self._rows = None
                self._overflow |= len(self._queue) > MAX_EVENTS
            self._wake_writer()

    def reply(self, msg: dict[str, Any]) -> None:
        with self._lock:
            self._queue.append(msg)
            self._rows = None
            self._wake_writer()

    def _wake_writer(self) -> None:
        if not self._woken:
            self._woken = True
            self.server.loop.call_soon_threadsafe(self._wake.set)

    def take(self) -> tuple[list[dict[str, Any]], ev.Preview | None, bool]:
        with self._lock:
            queued, self._queue, self._rows = list(self._queue), deque(), None
            preview, self._preview = self._preview, None
            self._woken = False
            self._wake.clear()
            return queued, preview, self._overflow

    def stop_writing(self) -> None:
        """End the write loop at its next wake-up (cancelling it is not enough: Python 3.11's
        wait_for can swallow a cancellation that arrives as a drain completes)."""
        self.closing = True
        self._wake.set()

    async def write_loop(self) -> str:
        """Write what is queued until the client goes; returns why it went."""
        while True:
            await self._wake.wait()
            if self.closing:
                return "closing"
            queued, preview, overflow = self.take()
            if overflow:
                return "too far behind: dropped (it read too slowly)"
            messages = [m if isinstance(m, dict) else protocol.encode(m, self.depth, self.count) for m in queued]
            if preview is not None and self.count != 0:
                messages.append(protocol.encode(preview, self.depth, self.count))
            for message in messages:
                if message.get("type") == "metrics":
                    message["rows"] = [finite_row(row) for row in message["rows"]]
            try:
                self.writer.write(b"".join(protocol.dumps(m) for m in messages))
                await asyncio.wait_for(self.writer.drain(), DRAIN_TIMEOUT)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                return f"not reading: dropped after {DRAIN_TIMEOUT:.0f} s"
            except OSError:  # the client went away (a broken pipe, a reset)
                return "disconnected"

    def asked_previews(self, depth: int, count: int) -> None:
        """Previews at this depth and count from now on; the newest again where protocol.preview_again says."""
        changed = protocol.preview_again(self.depth, self.count, depth, count)
        self.depth, self.count = depth, count
        newest = self.server.hub.preview
        if changed and newest is not None:
            self.push(newest)

    def allow_command(self) -> bool:
        """A token bucket: a flood of commands gets error replies, not the trainer's attention."""
        now = time.monotonic()
        self._tokens = min(COMMAND_BURST, self._tokens + (now - self._refilled) * COMMAND_RATE)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self._refused += 1
        return False

    async def read_loop(self, reader: asyncio.StreamReader) -> str:
        while True:
            try:
                line = await reader.readline()
            except OSError:
                return "disconnected"
            except ValueError:  # asyncio's LimitOverrunError for a line past the reader's limit
                self.reply({"type": "error", "error": f"line over {protocol.MAX_LINE // 1024} KiB: disconnected"})
                return "line too long"
            if not line.endswith(b"\n"):  # EOF, possibly in the middle of a line: nothing to act on
                return "disconnected"
            if not line.strip():
                continue
            if not self.allow_command():
                if self._refused > 10 * COMMAND_BURST:
                    self.reply({"type": "error", "error": "too many commands: disconnected"})
                    return "command flood"
                self.reply({"type": "error", "error": f"too many commands (at most {COMMAND_RATE:.0f}/s)"})
                continue
            try:
                cmd = protocol.parse_command(line)
                self.server.hub.command(self.name, cmd)
                if cmd["cmd"] == "preview":
                    self.asked_previews(cmd["depth"], cmd["count"])
            except (protocol.ProtocolError, RuntimeError) as err:
                self.reply({"type": "error", "error": str(err)})
            else:
                self.reply({"type": "ok", "cmd": cmd["cmd"]})


class RunServer:
    def __init__(self, hub: RunHub, run_dir: RunDir) -> None:
        self.hub, self.run_dir = hub, run_dir
        self.path = run_dir.socket_path()
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self.clients: set[Client] = set()
        self.handlers: set[asyncio.Task] = set()

    def start(self) -> Path:
        """Bind (mode 0600, replacing a socket a killed process left) and serve in a daemon thread."""
        check_peer_credentials()
        self.run_dir.path.mkdir(parents=True, exist_ok=True)
        if self.path.parent != self.run_dir.path:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.run_dir.path / SOCKET_POINTER).write_text(f"{self.path}\n")
        if self.path.exists() or self.path.is_symlink():
            if socket_answers(self.path):
                raise OSError(f"{self.path}: another process serves this run")
            self.path.unlink()  # left by a process that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the file is born 0600: no window in which others may connect
        try:
            sock.bind(os.fspath(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="gantui-service", daemon=True)
        self._thread.start()
        return self.path

    def _serve(self, sock: socket.socket) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main(sock))

    async def _main(self, sock: socket.socket) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_unix_server(self._handle, sock=sock, limit=protocol.MAX_LINE)
        await self._stopped.wait()
        server.close()
        for client in list(self.clients):  # each handler then ends by itself: its reader sees the end
            client.stop_writing()
            client.writer.transport.abort()
        handlers = [task for task in self.handlers if not task.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(self, writer)
        self.handlers.add(asyncio.current_task())
        try:
            if peer_uid(writer.get_extra_info("socket")) != os.getuid():
                writer.write(protocol.dumps({"type": "error", "error": "refused: this run belongs to another user"}))
                await asyncio.wait_for(writer.drain(), 1.0)
                return
            self.clients.add(client)
            client.name = self.hub.new_name()
            client.reply({"type": "hello", "protocol": protocol.PROTOCOL, "client": client.name, "pid": os.getpid(),
                          "run_dir": str(self.run_dir.path)})
            self.hub.subscribe(client.push, name=client.name)  # the snapshot comes next
            tasks = [asyncio.ensure_future(client.read_loop(reader)), asyncio.ensure_future(client.write_loop())]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            client.stop_writing()
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=2.0)
            first = next(iter(done))
            reason = "error" if first.exception() else first.result()
            if reason not in ("disconnected", "closing"):  # say why, after what was still queued (an error reply)
                self.hub.unsubscribe(client.name)
                self.hub.publish(ev.Notice(f"a watcher ({client.name}) was dropped: {reason}", "warning"))
                with contextlib.suppress(Exception):
                    queued, _, _ = client.take()
                    writer.write(b"".join(protocol.dumps(m) for m in queued if isinstance(m, dict) and m.get("type") != "metrics"))
                    writer.write(protocol.dumps({"type": "bye", "reason": reason}))
                    await asyncio.wait_for(writer.drain(), 1.0)
        except Exception:  # a client's failure is the client's alone: never the trainer's
            pass
        finally:
            self.handlers.discard(asyncio.current_task())
            if client.name:
                self.hub.unsubscribe(client.name)
            self.clients.discard(client)
            with contextlib.suppress(Exception):
                if writer.transport.get_write_buffer_size():
                    writer.transport.abort()  # a client that does not read would hold a closing transport open
                else:
                    writer.close()

    def close(self) -> None:
        """Stop serving and remove the socket file (from any thread)."""
        if self._stopped is not None:
            self.loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(2.0)
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            (self.run_dir.path / SOCKET_POINTER).unlink()
