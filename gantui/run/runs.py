"""Runs on disk, torch-free: which one a name means, what state each is in, a table of them."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gantui.common import GantuiError
from gantui.run.rundir import RunDir, runs_root

LIVE_STATES = ("starting", "training", "paused")


class RunNotFound(GantuiError, ValueError):
    """A run name or directory that holds no run; the message is one line."""


def is_run(path: Path) -> bool:
    return (path / "config.json").exists() or (path / "metrics.jsonl").exists()


def run_state(run_dir: RunDir) -> str:
    """The state status.json records, or `killed` when it says live but no process holds the run."""
    state = run_dir.read_status().get("state", "starting")
    locked = run_dir.is_locked()
    if state in LIVE_STATES and not locked:
        return "killed"
    if locked and state not in LIVE_STATES:
        return "training"  # the status file lags a resume that has just begun
    return state


def all_runs(root: Path | None = None) -> list[RunDir]:
    root = root or runs_root()
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and is_run(p)]
    return sorted(runs, key=lambda r: (r.path.stat().st_mtime, r.path.name))


def resolve_run(spec: str | None, root: Path | None = None) -> RunDir:
    """A run directory, a run's name under the runs directory, or (None) the newest running run,
    else the newest run."""
    root = root or runs_root()
    if spec:
        for path in (Path(spec).expanduser(), root / spec):
            if path.is_dir() and is_run(path):
                return RunDir(path)
        raise RunNotFound(f"no run at {spec} (nor under {root}); `gantui runs` lists them")
    runs = all_runs(root)
    if not runs:
        raise RunNotFound(f"no runs under {root}; start one with `gantui` or `gantui --no-ui`")
    live = [r for r in runs if r.is_locked()]
    return (live or runs)[-1]


def summary(run_dir: RunDir) -> dict[str, Any]:
    """One row of `gantui runs`."""
    status = run_dir.read_status()
    rows = run_dir.read_metrics_bounded(points=0)  # the end of the file: a run of any length in well under 1 s
    steps = [r["step"] for r in rows if "event" not in r and isinstance(r.get("step"), int)]
    fids = [r["fid"] for r in rows if r.get("event") == "quality" and r.get("fid") is not None]
    updated = max((p.stat().st_mtime for p in (run_dir.metrics, run_dir.status) if p.exists()), default=None)
    return {"name": run_dir.path.name, "path": str(run_dir.path), "status": run_state(run_dir),
            "step": max(steps, default=status.get("step", 0)), "total_steps": status.get("total_steps"),
            "fid": fids[-1] if fids else None, "started": status.get("started"), "updated": updated}


def when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else "-"


def table(rows: list[dict[str, Any]]) -> str:
    header = ("run", "status", "step", "FID", "started", "last update")
    lines = [(r["name"], r["status"], f"{r['step']}/{r['total_steps'] or '?'}",
              f"{r['fid']:.1f}" if r["fid"] is not None else "-", when(r["started"]), when(r["updated"]))
             for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in (header, *lines))
