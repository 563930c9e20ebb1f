"""Torch-free names that the engine, the headless printer, the service and the dashboard share."""
from __future__ import annotations

import signal
from typing import Any

HISTORY = 2000  # metric rows kept in memory, in checkpoints and in snapshots, for the curves
RARE_SHARE = 0.01  # a digit under this share of the samples counts as missing
EXIT_CODES = {"error": 1, "diverged": 3}
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s)
STATES = ("starting", "training", "paused", "done", "stopped", "diverged", "error", "killed")


def rare_digits(hist: list[float]) -> list[int]:
    """The digits that hold under RARE_SHARE of the samples."""
    return [digit for digit, share in enumerate(hist) if share < RARE_SHARE]


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def eta_seconds(step: int, total_steps: int, batch_size: int, images_per_s: float) -> float | None:
    return max(total_steps - step, 0) * batch_size / images_per_s if images_per_s > 0 else None


def format_metrics(row: dict[str, Any], total_steps: int, batch_size: int) -> str:
    def num(key: str, fmt: str = ".3f") -> str:
        value = row.get(key)
        return "nan" if value is None else format(value, fmt)

    rate = row.get("images_per_s") or 0.0
    eta = eta_seconds(row["step"], total_steps, batch_size, rate)
    return (f"step {row['step']}/{total_steps} epoch {row['epoch']} | loss_d {num('loss_d')} loss_g {num('loss_g')}"
            f" | D(x) {num('d_real')} D(G(z)) {num('d_fake')} | acc real {num('acc_real', '.2f')}"
            f" fake {num('acc_fake', '.2f')} | {rate:,.0f} img/s | ETA {'?' if eta is None else format_duration(eta)}")


def format_quality(row: dict[str, Any]) -> str:
    return (f"quality at step {row['step']} | FID {row['fid']:.2f} (N={row['fid_n']}) | {row['classes']}/10 classes"
            f" KL {row['kl']:.3f} | confidence {row['confidence']:.3f} score {row['score']:.2f}"
            f" | took {row['eval_s']:.1f} s")
