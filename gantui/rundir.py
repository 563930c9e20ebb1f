"""The run directory: config.json, status.json, metrics.jsonl, samples/, checkpoints/, the socket.

Torch-free: `gantui runs`, `watch` and `stop` read run directories without importing torch.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

SOCKET_NAME = "gantui.sock"
SOCKET_POINTER = "gantui.sock.path"  # holds the socket's path when RUN_DIR/gantui.sock is too long
SUN_PATH_MAX = 107  # bytes of a Unix socket path on Linux (108 with the NUL)


def runs_root() -> Path:
    from platformdirs import user_data_path

    return user_data_path("gantui") / "runs"


def default_run_dir() -> Path:
    return runs_root() / time.strftime("%Y%m%d-%H%M%S")


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats become null plus a `nonfinite` list naming them: strict JSON lines."""
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bad:
        return row
    return {**{k: (None if k in bad else v) for k, v in row.items()}, "nonfinite": bad}


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


class RunDirBusy(RuntimeError):
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
        return fd

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
        return self

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
        status = {"state": state, "pid": os.getpid(), "updated": time.time(), **fields}
        old = self.read_status()
        status["started"] = old.get("started") or time.time()  # the first start, kept over resumes
        text = json.dumps(json_safe(status), allow_nan=False) + "\n"
        atomic_write(self.status, lambda f: f.write(text.encode()))

    def read_status(self) -> dict[str, Any]:
        try:
            status = json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    def append_metrics(self, row: dict[str, Any]) -> None:
        line = json.dumps(json_safe(row), allow_nan=False) + "\n"
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(line)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row; a line cut short by a killed process (or any unreadable line) is skipped."""
        if not self.metrics.exists():
            return []
        rows = []
        with open(self.metrics, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
        return rows

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.pt"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step-{step:08d}.png"

    def grids(self) -> list[tuple[int, Path]]:
        """The saved sample grids, by step."""
        found = []
        for path in self.samples.glob("step-*.png"):
            try:
                found.append((int(path.stem.split("-")[1]), path))
            except (IndexError, ValueError):
                continue
        return sorted(found)

    def prune_checkpoints(self, keep: int) -> None:
        for old in sorted(self.checkpoints.glob("step-*.pt"))[:-keep]:
            old.unlink(missing_ok=True)

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
