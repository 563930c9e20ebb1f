"""The dashboard's ways to a run, torch-free: in this process (the hub), over a socket or a relay
(`gantui watch`), or replayed from its directory. Each posts events and takes commands."""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gantui.run import events as ev
from gantui.run.rundir import RunDir
from gantui.run import protocol

Post = Callable[[Any], Any]
READ_LIMIT = 256 * 2**20  # a snapshot with the whole history is one line of a few MB
MAX_FOREIGN = 100  # lines before the hello that are not gantui's (an ssh banner) skipped at most
TRANSPORT_ENV = "GANTUI_SSH"  # the command `watch HOST:RUN` runs instead of ssh (tests, jump hosts)


@dataclass(frozen=True)
class ConnectionLost:
    """The link to a live run is gone (the run ended, or the network or the relay did)."""

    reason: str


class LocalLink:
    """A run in this process: the hub delivers on the trainer's thread; `post` must not block."""

    live, owner = True, True

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.name: str | None = None

    def start(self, post: Post) -> None:
        self.name = self.hub.subscribe(post)

    def send(self, cmd: dict[str, Any]) -> None:
        self.hub.command(self.name, cmd)

    def report_cost(self, seconds: float) -> None:
        """The dashboard's CPU time: it shares this process's GIL with the trainer."""
        self.hub.pacer.spent(seconds)

    def close(self) -> None:
        if self.name is not None:
            self.hub.unsubscribe(self.name)


Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class StreamLink:
    """A run in another process, over newline-delimited JSON (a Unix socket, or a relay's pipes)."""

    live, owner = True, False

    def __init__(self, opener: Opener, where: str) -> None:
        self.opener, self.where = opener, where
        self.name: str | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.stderr: Callable[[], Awaitable[bytes]] | None = None  # a relay's error output
        self.foreign = 0  # lines that were not messages

    async def run(self, post: Post) -> None:
        """Read until the run or the link goes away; every message becomes events for `post`."""
        try:
            reader, self.writer = await self.opener()
            hello = None
            for _ in range(MAX_FOREIGN):  # a login banner may come first over ssh
                line = await reader.readline()
                hello = self._parse(line, post) if line else None
                if hello is not None or not line:
                    break
        except (OSError, ValueError) as err:
            post(ConnectionLost(f"cannot reach the run at {self.where}: {err}"))
            return
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            post(ConnectionLost(await self._why(hello)))
            return
        if hello.get("protocol") != protocol.PROTOCOL:
            post(ConnectionLost(f"the run speaks protocol {hello.get('protocol')}, this gantui {protocol.PROTOCOL}"))
            return
        self.name = hello.get("client")
        while True:
            try:
                line = await reader.readline()
            except (OSError, ValueError) as err:
                post(ConnectionLost(f"connection lost: {err}"))
                return
            if not line:
                post(ConnectionLost("the run closed the connection"))
                return
            msg = self._parse(line, post)
            if msg is None:
                continue
            if msg.get("type") == "error":
                post(ev.Notice(f"the run says: {msg.get('error')}", "error"))
                continue
            decoded = protocol.decode(msg)
            for event in decoded if isinstance(decoded, list) else [decoded]:
                if event is not None:
                    post(event)

    def _parse(self, line: bytes, post: Post) -> dict[str, Any] | None:
        """A message, or None for a line that is not one (said once, with the line)."""
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        if isinstance(msg, dict):
            return msg
        self.foreign += 1
        if self.foreign == 1:
            text = line.decode(errors="replace").strip()[:80]
            post(ev.Notice(f"skipped a line that is not gantui's (a login banner?): {text!r}", "warning"))
        return None

    async def _why(self, first: Any) -> str:
        if isinstance(first, dict) and first.get("type") == "error":
            return f"refused: {first.get('error')}"
        text = (await self.stderr()).decode(errors="replace").strip() if self.stderr else ""
        return text.splitlines()[-1] if text else f"no gantui run answered at {self.where}"

    def send(self, cmd: dict[str, Any]) -> None:
        if self.writer is None or self.writer.is_closing():
            raise RuntimeError("not connected to the run")
        self.writer.write(protocol.dumps(cmd))

    def report_cost(self, seconds: float) -> None:
        pass  # another process: it does not hold the trainer's GIL

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def socket_link(path: os.PathLike[str] | str) -> StreamLink:
    return StreamLink(lambda: asyncio.open_unix_connection(os.fspath(path), limit=READ_LIMIT), str(path))


def relay_link(host: str, run: str) -> StreamLink:
    """`ssh HOST gantui relay RUN`: only the run's events cross the network."""
    command = [*shlex.split(os.environ.get(TRANSPORT_ENV, "ssh")), host, "gantui", "relay", "--zlib", shlex.quote(run)]
    link: StreamLink

    async def opener() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        proc = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, limit=READ_LIMIT)
        link.stderr = proc.stderr.read
        return inflated(proc.stdout), proc.stdin

    link = StreamLink(opener, f"{host}:{run}")
    return link


def inflated(compressed: asyncio.StreamReader) -> asyncio.StreamReader:
    """The relay's zlib stream as the plain one. What comes before the relay's protocol.ZLIB_MARK (a line a
    login shell printed) passes through as it is, for the reader to skip and say so."""
    plain = asyncio.StreamReader(limit=READ_LIMIT)

    async def pump() -> None:
        unzip, before = None, b""
        try:
            while chunk := await compressed.read(1 << 16):
                if unzip is None:
                    before += chunk
                    if protocol.ZLIB_MARK not in before:
                        continue
                    foreign, chunk = before.split(protocol.ZLIB_MARK, 1)
                    plain.feed_data(foreign)
                    unzip = zlib.decompressobj()
                plain.feed_data(unzip.decompress(chunk))
        except Exception as err:  # the link broke (or the stream is damaged): the reader says so
            plain.set_exception(err)
            return
        if unzip is None:
            plain.feed_data(before)
        plain.feed_eof()

    plain._pump = asyncio.ensure_future(pump())  # type: ignore[attr-defined]  (kept alive with the reader)
    return plain


class ReplayLink:
    """A run nobody serves: what its directory holds, read-only."""

    live, owner = False, False

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self.name = None

    def start(self, post: Post) -> None:
        from gantui.run.replay import replay_snapshot

        post(replay_snapshot(self.run_dir))

    def send(self, cmd: dict[str, Any]) -> None:
        if cmd["cmd"] != "preview":
            raise RuntimeError("a replay is read-only")

    def report_cost(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


# -- one command, from a process that is not a dashboard (`gantui stop`, the comparison view) --
def connect(run_dir: RunDir) -> socket.socket | None:
    """A connection to the process serving the run, or None when nobody answers."""
    path = run_dir.find_socket()
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(os.fspath(path))
    except OSError:
        sock.close()
        return None
    return sock


def read_messages(sock: socket.socket, deadline: float):
    """Messages from the run until it closes the connection or the deadline passes."""
    buffer = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            return
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
