"""A fast loop's `log()` calls combined into rows over a short interval, read to the host at once.

Each call checks its values and adds them to a running sum per key: numbers (and CPU tensors,
read at once: there is no device to wait for) in Python, one-element tensors on a GPU into a
float64 tensor on their own device (`add_`: an asynchronous kernel, no sync, and
nothing of the loop's kept alive: holding the tensors themselves until the row cost a 0.14 ms CPU
step a quarter of its speed, in allocator churn). At most every COMBINE_INTERVAL seconds the sums
become one row, each key the mean over the calls that logged it: every key's tensor sum is read
with one `.tolist()` per device (the one host-device sync of that interval, nanoGPT's rule).
`step` is the newest step, `steps` how many calls the row combines. So a loop logging 2,000 steps
a second writes about 4 rows a second (a day under 100 MB), and a slow loop, whose calls are
further apart than the interval, gets a row per call.

Not thread-safe by itself: `gantui.Run` holds a lock around `add` and `take`. `take` only swaps the
sums out; `read` turns them into a row, on whichever thread can afford the sync (a background
flush reads a quiet loop's last row on its own thread, on the stream the loop summed on).
"""
from __future__ import annotations

import math
import numbers
import time
from contextlib import nullcontext
from typing import Any, NamedTuple

COMBINE_INTERVAL = 0.25  # seconds of calls combined into one row, at most
READ_CPU_AT_ONCE = True  # False: CPU tensors take a GPU's path (the tests of that path, without a GPU)
RESERVED = ("step", "time", "event", "nonfinite", "steps", "steps_per_s")  # what a row says of itself
NO_FLOAT64 = ("mps",)  # device types without float64 (Apple's MPS: pytorch#122602): sums in float32


def sum_dtype(device_type: str) -> Any:
    """The dtype of a key's running sum on a device of this type: float64 where it exists."""
    import torch

    return torch.float32 if device_type in NO_FLOAT64 else torch.float64


def number(key: str, value: Any) -> Any:
    """A value as a float, or a one-element tensor on a GPU, detached; TypeError naming the key otherwise."""
    kind = type(value)
    if kind is float or kind is int or kind is bool:
        return float(value)
    if kind.__module__.startswith("torch"):  # before the ABC check below, which is slow for a tensor
        if value.is_cpu and READ_CPU_AT_ONCE:
            # read at once: no device to wait for. tolist() reads a tensor that requires grad without
            # a warning, and with less of torch's code than detach() + item(): after a step has left
            # the caches cold, 4 us against 12 (add_ on the device's sum would be 3.5 us more)
            got = value.tolist()
            while type(got) is list and len(got) == 1:
                got = got[0]
            if type(got) is float or type(got) is int or type(got) is bool:
                return float(got)
        elif value.numel() == 1 and not value.is_complex():
            return value.detach() if value.requires_grad else value  # the loop's graph is not added to
    elif isinstance(value, numbers.Real):  # numpy's scalars, Fraction, Decimal...
        return float(value)
    size = getattr(value, "numel", None) or getattr(value, "size", None)
    size = size() if callable(size) else size
    if kind.__module__.startswith("numpy") and size == 1 and value.dtype.kind in "biuf":
        return float(value.reshape(()))
    what = f"a {kind.__name__} of {size} elements" if isinstance(size, int) and size != 1 else f"a {kind.__name__}"
    raise TypeError(f"gantui: log(): {key!r} is {what}, not a number (a float, an int, a numpy number "
                    "or a one-element tensor)")


def check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"gantui: log(): the key {key!r} is not a string")
    if key in RESERVED:
        raise ValueError(f"gantui: log(): {key!r} is a name gantui gives its rows; call it something else")


class Taken(NamedTuple):
    """A row's sums, taken out of the combiner and not yet read (tensors may still be summing)."""

    head: dict[str, Any]  # step, steps, steps_per_s, time
    totals: dict[str, float]
    tensors: dict[str, Any]
    counts: dict[str, int]
    streams: dict[str, Any]  # a CUDA sum's stream: read on it, from whatever thread reads


class Combiner:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.totals: dict[str, float] = {}  # the pending calls' sums: numbers here,
        self.tensors: dict[str, Any] = {}  # tensors on their device (added to totals when read)
        self.streams: dict[str, Any] = {}  # the CUDA stream each tensor sum was made on
        self.counts: dict[str, int] = {}  # how many calls logged each key
        self.calls = 0
        self.step = 0
        self.last_call = -math.inf  # when add() was last called (a quiet loop's row is flushed for it)
        self.keys: list[str] = []  # every key logged so far, in the order first seen
        self._listed: set[str] = set()  # the same keys, to look up (a list's `in` made wide rows quadratic)
        self._known: set[str] = set()  # keys already checked (a name, not a reserved one)
        self._since = -math.inf  # the first call is a row of its own: the curves start at once
        self._last_row: tuple[int, float] | None = None  # (step, when) of the previous row

    def add(self, metrics: dict[str, Any], step: int) -> bool:
        """One call's values (checked before any is kept); True when a row is due. Plain loops, no
        calls per value: after a step has left the caches cold each call costs a loop microseconds."""
        known, values = self._known, []
        for key, value in metrics.items():
            if key not in known:
                check_key(key)
                known.add(key)
            values.append(value if type(value) is float else number(key, value))
        totals, counts = self.totals, self.counts
        for key, value in zip(metrics, values):
            if key in counts:
                counts[key] += 1
            else:
                counts[key], totals[key] = 1, 0.0
                if key not in self._listed:
                    self._listed.add(key)
                    self.keys.append(key)
            if type(value) is float:
                totals[key] += value
            else:
                self._add_tensor(key, value)
        self.calls += 1
        self.step = step
        self.last_call = now = self.clock()
        return now - self._since >= COMBINE_INTERVAL

    def _add_tensor(self, key: str, value: Any) -> None:
        """Into the key's sum on the value's device (an asynchronous kernel, no sync)."""
        total = self.tensors.get(key)
        if total is None:
            import torch  # only once a tensor is logged: importing gantui loads no torch

            device = value.device
            total = self.tensors[key] = torch.zeros((), dtype=sum_dtype(device.type), device=device)
            if device.type == "cuda":  # once a key an interval: a few microseconds
                self.streams[key] = torch.cuda.current_stream(device)
        total.add_(value.reshape(()) if value.dim() else value)

    def take(self) -> Taken | None:
        """The pending calls' sums, swapped out for empty ones (None when there are none); reads nothing."""
        now = self.clock()
        if not self.calls:
            self._since = now
            return None
        head: dict[str, Any] = {"step": self.step, "steps": self.calls}
        if self._last_row is not None and now > self._last_row[1]:
            head["steps_per_s"] = max(self.step - self._last_row[0], 0) / (now - self._last_row[1])
        head["time"] = time.time()
        self._last_row = (self.step, now)
        taken = Taken(head, self.totals, self.tensors, self.counts, self.streams)
        self.totals, self.tensors, self.counts, self.streams, self.calls, self._since = {}, {}, {}, {}, 0, now
        return taken

    def row(self) -> dict[str, Any] | None:
        """The pending calls as one row (None when there are none); reads the tensors."""
        taken = self.take()
        return None if taken is None else read(taken)


def read(taken: Taken) -> dict[str, Any]:
    """A taken row's values: its step, how many calls it combines, each key's mean."""
    step = taken.head["step"]
    return {"step": step, "steps": taken.head["steps"],
            **means(taken.totals, taken.tensors, taken.counts, taken.streams),
            **{k: v for k, v in taken.head.items() if k not in ("step", "steps")}}


def means(totals: dict[str, float], tensors: dict[str, Any], counts: dict[str, int],
          streams: dict[str, Any] | None = None) -> dict[str, float]:
    """Each key's mean (a NaN or an inf among its values shows as such); every tensor sum read
    with one `.tolist()` per device (and stream: a CUDA sum is read on the stream it was summed on,
    so a thread other than the loop's reads it after the loop's additions)."""
    out = dict(totals)
    streams = streams or {}
    groups: dict[Any, list[tuple[str, Any]]] = {}
    for key, total in tensors.items():
        groups.setdefault((total.device, streams.get(key)), []).append((key, total))
    for (_, stream), items in groups.items():
        import torch

        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            values = torch.stack([t for _, t in items]).tolist()
        for (key, _), value in zip(items, values):
            out[key] += value
    return {key: out[key] / counts[key] for key in counts}
