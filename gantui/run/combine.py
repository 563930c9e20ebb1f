"""A fast loop's `log()` calls combined into rows over a short interval, read to the host at once.

Each call only checks its values and appends them: numbers as floats, one-element tensors as
they are (detached, still on their device). At most every COMBINE_INTERVAL seconds the pending
values become one row: the tensors are stacked and read with one `.tolist()` per device (the one
host-device sync of that interval, nanoGPT's rule), and each key's values are averaged over the
calls that logged it; `step` is the newest step, `steps` how many calls the row combines. So a
loop logging 2,000 steps a second writes about 4 rows a second (a day under 100 MB), and a slow
loop, whose calls are further apart than the interval, gets a row per call.
"""
from __future__ import annotations

import math
import numbers
import time
from typing import Any

COMBINE_INTERVAL = 0.25  # seconds of calls combined into one row, at most
RESERVED = ("step", "time", "event", "nonfinite", "steps", "steps_per_s")  # what a row says of itself


def number(key: str, value: Any) -> Any:
    """A value as a float, or a one-element tensor detached; TypeError naming the key otherwise."""
    kind = type(value)
    if kind is float or kind is int or kind is bool:
        return float(value)
    if kind.__module__.startswith("torch"):  # before the ABC check below, which is slow for a tensor
        if value.numel() == 1 and not value.is_complex():
            return value.detach()  # a view: no kernel, no sync, and the loop's graph is let go
    elif isinstance(value, numbers.Real):  # numpy's scalars, Fraction, Decimal...
        return float(value)
    size = getattr(value, "numel", None) or getattr(value, "size", None)
    size = size() if callable(size) else size
    if kind.__module__.startswith("numpy") and size == 1 and value.dtype.kind in "biuf":
        return float(value.reshape(()))
    what = f"a {kind.__name__} of {size} elements" if isinstance(size, int) and size != 1 else f"a {kind.__name__}"
    raise TypeError(f"gantui: log(): {key!r} is {what}, not a number (a float, an int, a numpy number "
                    "or a one-element tensor)")


class Combiner:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.values: dict[str, list[Any]] = {}
        self.calls = 0
        self.step = 0
        self.keys: list[str] = []  # every key logged so far, in the order first seen
        self._since = -math.inf  # the first call is a row of its own: the curves start at once
        self._last_row: tuple[int, float] | None = None  # (step, when) of the previous row

    def add(self, metrics: dict[str, Any], step: int) -> bool:
        """One call's values (checked before any is kept); True when a row is due."""
        checked = []
        for key, value in metrics.items():
            if not isinstance(key, str):
                raise TypeError(f"gantui: log(): the key {key!r} is not a string")
            if key in RESERVED:
                raise ValueError(f"gantui: log(): {key!r} is a name gantui gives its rows; call it something else")
            checked.append((key, number(key, value)))
        for key, value in checked:
            values = self.values.get(key)
            if values is None:
                values = self.values[key] = []
                if key not in self.keys:
                    self.keys.append(key)
            values.append(value)
        self.calls += 1
        self.step = step
        return self.clock() - self._since >= COMBINE_INTERVAL

    def row(self) -> dict[str, Any] | None:
        """The pending calls as one row (None when there are none); reads the tensors."""
        now = self.clock()
        if not self.calls:
            self._since = now
            return None
        row: dict[str, Any] = {"step": self.step, "steps": self.calls, **means(self.values)}
        if self._last_row is not None and now > self._last_row[1]:
            row["steps_per_s"] = max(self.step - self._last_row[0], 0) / (now - self._last_row[1])
        row["time"] = time.time()
        self._last_row = (self.step, now)
        self.values, self.calls, self._since = {}, 0, now
        return row


def means(values: dict[str, list[Any]]) -> dict[str, float]:
    """Each key's mean over the calls (a NaN or an inf among them shows as such). A key's tensors
    are averaged on their device, and every key's mean read with one `.tolist()` per device."""
    out: dict[str, float] = {}
    on_device: dict[Any, list[tuple[str, Any]]] = {}
    for key, vs in values.items():
        floats = [v for v in vs if type(v) is float]
        if len(floats) == len(vs):
            out[key] = math.fsum(floats) / len(floats) if all(map(math.isfinite, floats)) else sum(floats) / len(floats)
            continue
        import torch  # only when a tensor was logged: importing gantui loads no torch

        with torch.no_grad():
            device = next(v for v in vs if type(v) is not float).device
            stacked = torch.stack([torch.tensor(v, device=device) if type(v) is float else v if v.dim() == 0
                                   else v.reshape(()) for v in vs]).double()
            on_device.setdefault(stacked.device, []).append((key, stacked.mean()))
    for items in on_device.values():
        for (key, _), value in zip(items, torch.stack([m for _, m in items]).tolist()):
            out[key] = value
    return {key: out[key] for key in values}  # in the order first logged
