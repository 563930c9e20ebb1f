"""Torch-free names that the engine, the headless printer, the service and the dashboard share."""
from __future__ import annotations

import math
import signal
import sys
from dataclasses import dataclass
from typing import Any, NamedTuple

HISTORY = 2000  # metric rows kept in memory, in checkpoints and in snapshots, for the curves
RARE_SHARE = 0.01  # a digit under this share of the samples counts as missing
EXIT_CODES = {"error": 1, "diverged": 3}
# Set by `gantui sweep` for its trials: the pid of the process whose end stops the run, saved (the
# headless loop looks). A parent-death signal would do it from the kernel, but a dying process's
# threads hand the child on to each other, each hand-over signalling it again, and a second stop
# signal means "leave now".
PARENT_ENV = "GANTUI_STOP_WITH_PARENT"
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s)
STATES = ("starting", "training", "paused", "done", "stopped", "diverged", "error", "killed")


class GantuiError(Exception):
    """What a user asked for that cannot be (a flag, a file, a device, a busy run directory): its
    message is one line, and `gantui.cli.main` turns it into `gantui: error: ...` and exit 2."""


def finite(value: Any) -> Any:
    """Strict JSON: a NaN or an infinity becomes null, at any depth. Only what changed is copied: a
    dict or list that holds none, however deep, is returned as it is (a row of thousands of keys,
    a trainer's row with its devices, a row cleaned already)."""
    if not nonfinite_in(value):
        return value
    if isinstance(value, float):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return [finite(v) for v in value]


def nonfinite_in(value: Any) -> bool:
    """Whether a NaN or an infinity is in `value`, at any depth (nothing is built to find out)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(nonfinite_in(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(nonfinite_in(v) for v in value)
    return False


def finite_row(row: dict[str, Any]) -> dict[str, Any]:
    """The one rule for a row (metrics.jsonl and the socket alike): `finite`, and its own keys whose
    value was not finite named in `nonfinite`."""
    cleaned = finite(row)
    if cleaned is row:
        return row
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    return {**cleaned, "nonfinite": bad} if bad else cleaned


def rare_digits(hist: list[float]) -> list[int]:
    """The digits that hold under RARE_SHARE of the samples."""
    return [digit for digit, share in enumerate(hist) if share < RARE_SHARE]


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Line(NamedTuple):
    """One figure a run reports: its key in the rows, its label, its format spec."""

    key: str
    label: str
    fmt: str


@dataclass(frozen=True)
class Pane:
    """Figures drawn together: a metric pane of the dashboard, a part of the headless line. On the
    wire and in config.json, {"title": ..., "lines": [[key, label, format], ...]}."""

    title: str
    lines: tuple[Line, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "lines": [list(line) for line in self.lines]}


def panes(raw: Any) -> list[Pane]:
    """A run's panes as announced (Panes, or their JSON from a peer or a config.json); what is not
    a pane of lines of three strings is left out."""
    found = []
    for pane in raw if isinstance(raw, list | tuple) else []:
        if isinstance(pane, Pane):
            found.append(pane)
        elif isinstance(pane, dict) and isinstance(pane.get("lines"), list | tuple):
            lines = tuple(Line(*map(str, line)) for line in pane["lines"]
                          if isinstance(line, list | tuple) and len(line) == 3)
            found.append(Pane(str(pane.get("title", "")), lines))
    return found


def panes_json(schema: list[Pane]) -> list[dict[str, Any]]:
    return [pane.to_json() for pane in schema]


# The panes of a run that does not announce its figures (a first-release run): the default recipe's.
DEFAULT_SCHEMA = [
    Pane("Losses", (Line("loss_g", "G loss", ".3f"), Line("loss_d", "D loss", ".3f"))),
    Pane("Discriminator", (Line("d_real", "D(x)", ".3f"), Line("d_fake", "D(G(z))", ".3f"),
                           Line("acc_real", "acc real", ".2f"), Line("acc_fake", "acc fake", ".2f"))),
]


def steps_per_s(row: dict[str, Any], batch_size: int) -> float:
    """A metrics row's training rate in steps (a step may take several D batches: --d-steps)."""
    if row.get("steps_per_s"):
        return row["steps_per_s"]
    return (row.get("images_per_s") or 0.0) / batch_size  # a first-release row


def eta_seconds(step: int, total_steps: int, rate: float) -> float | None:
    return max(total_steps - step, 0) / rate if rate > 0 else None


def format_metrics(row: dict[str, Any], total_steps: int, batch_size: int,
                   schema: list[Pane] | None = None) -> str:
    """A headless line: the figures the run announced, pane by pane."""
    def num(key: str, fmt: str) -> str:
        value = row.get(key)
        return "nan" if value is None else format(value, fmt)

    figures = " | ".join(" ".join(f"{label} {num(key, fmt)}" for key, label, fmt in pane.lines)
                         for pane in schema or DEFAULT_SCHEMA)
    rate = row.get("images_per_s") or 0.0
    eta = eta_seconds(row["step"], total_steps, steps_per_s(row, batch_size))
    epoch = f" epoch {row['epoch']}" if "epoch" in row else ""
    devices = f" | {'; '.join(device_lines(row))}" if row.get("devices") or row.get("devices_note") else ""
    return (f"step {row['step']}/{total_steps or '?'}{epoch} | {figures}"
            f" | {rate:,.0f} img/s | ETA {'?' if eta is None else format_duration(eta)}{devices}")


def device_lines(row: dict[str, Any]) -> list[str]:
    """A line per rank's device (the GPU pane, the headless line): a GPU's utilisation, memory,
    power and temperature; a CPU process's CPU use and memory; or why NVML gave none."""
    def part(value: Any, fmt: str, unit: str) -> str | None:
        return None if value is None else f"{value:{fmt}}{unit}"

    lines = []
    devices = row.get("devices") or []
    for i, d in enumerate(devices):
        name = f"{d.get('kind', 'GPU')}{i}" if len(devices) > 1 or d.get("kind") == "GPU" else d.get("kind", "CPU")
        memory = None
        if d.get("mem") is not None:
            total = f"/{d['mem_total'] / 1024:.0f}" if d.get("mem_total") and d.get("kind") == "GPU" else ""
            memory = f"{d['mem'] / 1024:.1f}{total} GiB"
        parts = [part(d.get("util"), ".0f", "%"), memory, part(d.get("power"), ".0f", " W"),
                 part(d.get("temp"), ".0f", "°C")]
        lines.append(" ".join([name, *(p for p in parts if p)]))
    if row.get("devices_note"):
        lines.append(str(row["devices_note"]))
    return lines


def format_quality(row: dict[str, Any]) -> str:
    return (f"quality at step {row['step']} | FID {row['fid']:.2f} (N={row['fid_n']}) | {row['classes']}/10 classes"
            f" KL {row['kl']:.3f} | confidence {row['confidence']:.3f} score {row['score']:.2f}"
            + (f" | {row['cond_acc']:.1%} drawn as asked" if row.get("cond_acc") is not None else "")
            + f" | took {row['eval_s']:.1f} s")


def say(line: str) -> None:
    """A line of gantui's to stderr, from a user's process too: a stderr that is gone (a pipe into
    `head` that ended, a closed file) loses the line, never raises into the caller's loop."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # a broken pipe; I/O on a closed file
        pass


# How samples are drawn (`--images`): pictures where the terminal draws them (gantui/ui/pictures), or half blocks.
PICTURE_PROTOCOLS = ("kitty", "sixel", "iterm")
IMAGE_MODES = ("auto", *PICTURE_PROTOCOLS, "blocks")
