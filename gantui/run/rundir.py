"""The run directory: config.json, status.json, metrics.jsonl, samples/, checkpoints/, the socket.

Torch-free: `gantui runs`, `watch` and `stop` read run directories without importing torch.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from gantui.common import GantuiError, finite_row

SOCKET_NAME = "gantui.sock"
SOCKET_POINTER = "gantui.sock.path"  # holds the socket's path when RUN_DIR/gantui.sock is too long
TAIL_BYTES = 1 << 20  # the end of metrics.jsonl read in full by `gantui runs` and replays...
SAMPLED_LINES = 2000  # ...and lines read from the rest of a large one
SAMPLE_CHUNK = 4096  # bytes read at each sampled offset (a row is a few hundred)
SUN_PATH_MAX = 107  # bytes of a Unix socket path on Linux (108 with the NUL)


def runs_root() -> Path:
    from platformdirs import user_data_path

    return user_data_path("gantui") / "runs"


def default_run_dir() -> Path:
    return runs_root() / time.strftime("%Y%m%d-%H%M%S")


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Any) -> None:
    """Write through a temp file in the same folder, fsync, rename over `path`, fsync the folder.

    A crash at any point leaves either the old file or the new one, never half of one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def parse_rows(data: bytes) -> list[dict[str, Any]]:
    """JSON lines as dicts; a line cut short by a killed process (or any unreadable one) is skipped."""
    rows = []
    for line in data.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class Tail:
    """A growing file's new whole lines, from where the last look stopped (a line still being
    written waits for the next)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path, self.offset, self.partial = path, offset, b""

    def lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return lines


def by_step(paths: Any) -> list[tuple[int, Path]]:
    """Files named step-N.*, as (N, path) sorted by N (the numbers, not the names)."""
    found = []
    for path in paths:
        try:
            found.append((int(path.stem.split("-", 1)[1]), path))
        except (IndexError, ValueError):
            continue
    return sorted(found)


_held: dict[int, tuple[int, int]] = {}  # the run locks this process holds: fd -> (device, inode)


def _drop_inherited_locks() -> None:
    """In a forked child (a DataLoader worker): close the copies of the parent's run locks, so a
    child that outlives its run does not keep it "training". Closing a copy releases nothing of
    the parent's (flock: the lock lives while any copy is open); an fd no longer the lock file's
    (closed and reused since) is left alone."""
    for fd, identity in list(_held.items()):
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) == identity:
                os.close(fd)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class RunDirBusy(GantuiError, RuntimeError):
    """Another process holds the run directory."""


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.metrics = self.path / "metrics.jsonl"
        self.last = self.checkpoints / "last.pt"
        self.status = self.path / "status.json"
        self.log = self.path / "gantui.log"  # a detached dashboard's log lines
        self.identity: tuple[int, int] | None = None  # the directory's (device, inode) once created

    def lock(self) -> int:
        """Hold the run directory for this process; a second gantui on it gets RunDirBusy.

        The lock lives as long as the returned file descriptor (the kernel drops it when the
        process dies, so a crash leaves no stale lock).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirBusy(f"{self.path} is in use by another gantui process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        info = os.fstat(fd)
        _held[fd] = (info.st_dev, info.st_ino)
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        """Release what `lock` returned."""
        _held.pop(fd, None)
        os.close(fd)

    def is_locked(self) -> bool:
        """Whether a live gantui process holds this run directory (it is training or serving it)."""
        try:
            fd = os.open(self.path / ".lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def create(self) -> RunDir:
        for folder in (self.path, self.checkpoints, self.samples):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self.checkpoints.glob(".*.tmp"):  # left by a process killed mid-save
            stale.unlink(missing_ok=True)
        info = self.path.stat()
        self.identity = (info.st_dev, info.st_ino)
        return self

    def still_ours(self) -> bool:
        """False once the directory was removed, or removed and made again (by another run): a
        detached run must not write into a newer run's files."""
        if self.identity is None:
            return True
        try:
            info = self.path.stat()
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.identity

    def write_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path / "config.json", lambda f: f.write(text.encode()))

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "config.json").read_text())
        except (OSError, ValueError):
            return {}

    def write_status(self, state: str, **fields: Any) -> None:
        """The run's state (common.STATES) as of now: `gantui runs` and replays read it."""
        if not self.still_ours():
            raise FileNotFoundError(f"{self.path} was removed or replaced")
        status = {"state": state, "pid": os.getpid(), "updated": time.time(), **fields}
        old = self.read_status()
        status["started"] = old.get("started") or time.time()  # the first start, kept over resumes
        text = json.dumps(finite_row(status), allow_nan=False) + "\n"
        atomic_write(self.status, lambda f: f.write(text.encode()))

    def read_status(self) -> dict[str, Any]:
        try:
            status = json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row; a line cut short by a killed process (or any unreadable line) is skipped."""
        try:
            with open(self.metrics, "rb") as f:
                return parse_rows(f.read())
        except OSError:
            return []

    def read_metrics_bounded(self, tail: int = TAIL_BYTES, points: int = SAMPLED_LINES) -> list[dict[str, Any]]:
        """The rows of a file of any size in bounded time: all of a small file; of a large one, the
        last `tail` bytes in full and `points` lines spread evenly over the rest (a curve's shape
        and its recent past, without reading millions of rows)."""
        try:
            with open(self.metrics, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size <= tail + points * SAMPLE_CHUNK:
                    return parse_rows(f.read())
                rows = []
                for i in range(points):
                    f.seek((size - tail) * i // points)
                    chunk = f.read(SAMPLE_CHUNK)
                    lines = chunk.split(b"\n")
                    rows += parse_rows(lines[0 if i == 0 else 1])  # the first whole line at that offset
                f.seek(size - tail)
                return rows + parse_rows(f.read().split(b"\n", 1)[-1])
        except OSError:
            return []

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.pt"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step-{step:08d}.png"

    def grids(self) -> list[tuple[int, Path]]:
        """The saved sample grids, by step."""
        return by_step(self.samples.glob("step-*.png"))

    def prune_checkpoints(self, keep: int) -> None:
        """Oldest first by step (not by name: past 10^8 steps the names outgrow their zero padding)."""
        for _, old in self.checkpoint_steps()[:-keep]:
            old.unlink(missing_ok=True)

    def checkpoint_steps(self) -> list[tuple[int, Path]]:
        return by_step(self.checkpoints.glob("step-*.pt"))

    # -- the socket the run is served on ----------------------------------------------
    def socket_path(self) -> Path:
        """RUN_DIR/gantui.sock, or one under the user's runtime directory when that is too long
        for a socket address (the run directory then records where, in gantui.sock.path)."""
        path = self.path / SOCKET_NAME
        if len(os.fsencode(path)) <= SUN_PATH_MAX:
            return path
        from platformdirs import user_runtime_path

        digest = hashlib.sha256(os.fsencode(self.path)).hexdigest()[:16]
        return user_runtime_path("gantui") / f"{digest}.sock"

    def find_socket(self) -> Path | None:
        """Where a live process serves this run, if the run directory says so."""
        pointer = self.path / SOCKET_POINTER
        if pointer.exists():
            try:
                return Path(pointer.read_text().strip())
            except OSError:
                return None
        path = self.path / SOCKET_NAME
        return path if path.exists() else None
