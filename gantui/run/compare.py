"""Several runs side by side, from their directories: each one's state, step, best and last FID,
coverage and throughput, and the settings that differ between them (from config.json). What
`gantui compare --json` and `--markdown` print; torch-free.

A run's whole metrics.jsonl is scanned for its quality rows (one an evaluation) without parsing
the training rows around them (a substring test a line); the last training row comes from the
file's tail.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gantui.run.rundir import RunDir
from gantui.run import events as ev
from gantui.run.rundir import runs_root
from gantui.run.runs import RunNotFound, all_runs, is_run, resolve_run, run_state

# What config.json holds that is where and how a run lived, not how it trains: never a difference.
NOT_SETTINGS = {"out", "resume", "resolved_device", "schema", "capabilities", "image_shape", "evaluation",
                "class_names", "job", "timed", "penalties_on", "settings", "locked", "producer", "name", "tunable",
                "total_steps", "fault_nan_step", "data_root"}


@dataclass
class Entry:
    """One run, as a comparison shows it."""

    dir: str
    name: str
    state: str
    step: int
    best_fid: float | None
    last_fid: float | None
    coverage: float | None
    images_per_s: float | None
    settings: dict[str, Any] = field(repr=False)  # what it trains with (a loop's: its own config)
    scored_by: tuple[Any, Any] | None = field(default=None, repr=False)  # (dataset, images an FID is of)
    diff: dict[str, Any] = field(default_factory=dict)  # the settings that differ from another run's

    def to_json(self) -> dict[str, Any]:
        return {"dir": self.dir, "name": self.name, "state": self.state, "step": self.step, "best_fid": self.best_fid,
                "last_fid": self.last_fid, "coverage": self.coverage, "images_per_s": self.images_per_s,
                "diff": self.diff}


def runs_named(specs: list[str], last: int | None = None, root: Path | None = None,
               allow_none: bool = False) -> list[RunDir]:
    """Run directories or names, a directory holding runs (a sweep's: its `trials/`), or the
    newest `last` runs; each once, in the order given."""
    found: list[RunDir] = []
    if last is not None:
        found.extend(all_runs(root)[-last:] if last > 0 else [])
    for spec in specs:
        if (folder := folder_of_runs(spec)) is not None:
            runs = runs_in(folder)
            if not runs:
                raise RunNotFound(f"no runs in {spec}")
            found.extend(runs)
        else:
            found.append(resolve_run(spec, root))
    if not found and not allow_none:
        raise RunNotFound(f"no runs under {root or runs_root()}")
    unique: dict[Path, RunDir] = {}
    for run in found:
        unique.setdefault(run.path.resolve(), run)
    return list(unique.values())


def folder_of_runs(spec: str) -> Path | None:
    """The folder holding runs that `spec` names (a sweep's: its `trials/`), or None: not one."""
    path = Path(spec).expanduser()
    inner = path / "trials" if (path / "trials").is_dir() else path
    return inner if path.is_dir() and not is_run(path) and inner.is_dir() else None


def runs_in(folder: Path) -> list[RunDir]:
    """The runs in a folder, by name (a sweep's trials in the order they started)."""
    try:
        return [RunDir(p) for p in sorted(folder.iterdir()) if p.is_dir() and is_run(p)]
    except OSError:
        return []


def quality_rows(run: RunDir) -> list[dict[str, Any]]:
    """Every evaluation of the run, in order (the lines that name one, parsed alone)."""
    rows = []
    try:
        with open(run.metrics, "rb") as lines:
            for line in lines:
                if b'"quality"' in line:
                    try:
                        row = json.loads(line)
                    except ValueError:  # a line cut by a crash
                        continue
                    if isinstance(row, dict) and row.get("event") == "quality":
                        rows.append(row)
    except OSError:
        return rows
    return rows


def settings_of(config: dict[str, Any]) -> dict[str, Any]:
    """How a run trains: the recipe's settings, or a loop's own config, its keys under `config.`
    (a loop's `lr` is not the recipe's)."""
    if not ev.Capabilities.read(config.get("capabilities"), config.get("producer")).recipe:
        own = config.get("config")
        return {f"config.{key}": value for key, value in own.items()} if isinstance(own, dict) else {}
    return {key: value for key, value in config.items() if key not in NOT_SETTINGS}


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def entry(run: RunDir) -> Entry:
    rows = run.read_metrics_bounded(points=0)  # the tail: the last training row
    trained = [r for r in rows if "event" not in r and isinstance(r.get("step"), int)]
    status = run.read_status()
    quality = quality_rows(run)
    fids = [f for f in (number(r.get("fid")) for r in quality) if f is not None]
    coverage = [c for c in (number(r.get("coverage")) for r in quality) if c is not None]
    config = run.read_config()
    return Entry(dir=str(run.path), name=run.path.name, state=run_state(run),
                 step=max((r["step"] for r in trained), default=status.get("step", 0) or 0),
                 best_fid=min(fids) if fids else None, last_fid=fids[-1] if fids else None,
                 coverage=coverage[-1] if coverage else None,
                 images_per_s=number(trained[-1].get("images_per_s")) if trained else None,
                 settings=settings_of(config),
                 scored_by=(config.get("dataset"), quality[-1].get("fid_n")) if quality else None)


def compare(runs: list[RunDir]) -> list[Entry]:
    """Each run's entry, its `diff` holding the settings whose values are not the same in every
    run (a setting one run lacks counts as different: None there)."""
    return with_diff([entry(run) for run in runs])


def with_diff(entries: list[Entry]) -> list[Entry]:
    """The entries, each one's `diff` set."""
    keys = sorted({key for e in entries for key in e.settings})
    differing = [k for k in keys if len({json.dumps(e.settings.get(k), sort_keys=True) for e in entries}) > 1]
    for e in entries:
        e.diff = {key: e.settings.get(key) for key in differing}
    return entries


def best(entries: list[Entry]) -> Entry | None:
    """The run with the lowest best FID; None where no run was evaluated, or where their FIDs are not
    comparable (of other datasets, or of other numbers of images: FID falls as the number grows)."""
    scored = [e for e in entries if e.best_fid is not None]
    if not scored or len({e.scored_by for e in scored}) > 1:
        return None
    return min(scored, key=lambda e: e.best_fid)


def shown(value: Any, digits: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return format(value, digits)
    return str(value)


def columns(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows: the figures, then each differing setting; the best run marked."""
    top = best(entries)
    keys = list(entries[0].diff) if entries else []
    header = ["run", "state", "step", "best FID", "last FID", "coverage", "img/s", *keys]
    rows = [[e.name + (" *" if e is top else ""), e.state, str(e.step), shown(e.best_fid, ".2f"),
             shown(e.last_fid, ".2f"), shown(e.coverage, ".3f"), shown(e.images_per_s, ",.0f"),
             *(shown(e.diff[k]) for k in keys)] for e in entries]
    return header, rows


def markdown(entries: list[Entry]) -> str:
    header, rows = columns(entries)
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + ("\n\n" + note(entries).replace("*", "\\*", 1) if note(entries) else "")


def text(entries: list[Entry]) -> str:
    header, rows = columns(entries)
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in (header, *rows)]
    return "\n".join(lines) + ("\n" + note(entries) if note(entries) else "")


def note(entries: list[Entry]) -> str:
    if best(entries):
        return "* the lowest FID"
    if any(e.best_fid is not None for e in entries):
        return "no run marked: their FIDs are of other datasets or numbers of images (--eval-n)"
    return ""
