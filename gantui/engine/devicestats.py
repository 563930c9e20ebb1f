"""What this process's device is doing, for the GPU pane: a GPU's utilisation, memory, power and
temperature through NVML (nvidia-ml-py, module `pynvml`), or on the CPU the process's CPU use and
memory. Polled by a thread of its own every POLL_INTERVAL seconds (NVML's utilisation is sampled by
the driver over 1/6-1 s: faster shows nothing new); the training thread only reads the latest.
One `nvmlInit`, the handle cached, every call guarded: a figure NVML cannot give is None.
The board is found by its UUID: CUDA numbers devices fastest first, NVML by PCI bus, so on a server
with mixed GPUs CUDA's index is another board's in NVML. Torch is imported only to ask CUDA for it.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from typing import Any

POLL_INTERVAL = 1.5
FIELDS = ("util", "mem", "mem_total", "power", "temp")  # %, MiB, MiB, W, degrees C


def cuda_uuid(index: int) -> str | None:
    """CUDA's device `index` as NVML names it (GPU-..., or MIG-... for a MIG instance); None where
    torch cannot say (no CUDA, a torch without `uuid`)."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:
        return None
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def physical_gpu(index: int) -> str | int:
    """Without a UUID from CUDA: CUDA's device `index`'s entry in CUDA_VISIBLE_DEVICES (an index, or
    a GPU-/MIG- UUID), or the index itself when that is not set (right only where CUDA's order is
    the bus's: CUDA_DEVICE_ORDER=PCI_BUS_ID, or GPUs all alike)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if index >= len(visible):
        return index
    entry = visible[index]
    return int(entry) if entry.isdigit() else entry


class DeviceStats:
    def __init__(self, kind: str, index: int | None = None, interval: float = POLL_INTERVAL) -> None:
        """`kind`, `index`: the torch device's type and index ("cuda", 0; "cpu", None)."""
        self.kind, self.interval = kind, interval
        self.latest: dict[str, float | None] | None = None
        self.unavailable: str | None = None  # "NVML unavailable: why", on a GPU without it
        self._nvml: Any = None
        self._handle: Any = None
        self._cpu_mark = (time.monotonic(), self._cpu_seconds())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if kind == "cuda":
            self._open_nvml([gpu for gpu in (cuda_uuid(index or 0), physical_gpu(index or 0)) if gpu is not None])

    def _open_nvml(self, gpus: list[str | int]) -> None:
        """The first of `gpus` (UUIDs or NVML indices) that NVML finds."""
        try:
            import pynvml
        except ImportError:
            self.unavailable = "NVML unavailable: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
        except Exception as err:  # NVMLError: no driver...
            self.unavailable = f"NVML unavailable: {err}"
            return
        for gpu in gpus:
            try:
                self._handle = (pynvml.nvmlDeviceGetHandleByIndex(gpu) if isinstance(gpu, int)
                                else pynvml.nvmlDeviceGetHandleByUUID(gpu))
                break
            except Exception as err:  # NVMLError: no such GPU...
                self.unavailable = f"NVML unavailable: {err}"
        else:
            return
        self.unavailable = None
        self._nvml = pynvml

    def start(self) -> DeviceStats:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="gantui-devicestats", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        if self.kind != "cuda":
            self.latest = self._cpu()
            return
        nvml = self._nvml  # read once: `close` may clear it from another thread meanwhile
        self.latest = self._gpu(nvml) if nvml is not None else None

    def _gpu(self, nvml: Any) -> dict[str, float | None]:
        handle = self._handle
        util = guarded(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        memory = guarded(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power = guarded(lambda: nvml.nvmlDeviceGetPowerUsage(handle))  # mW
        temp = guarded(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        return {"util": None if util is None else float(util),
                "mem": memory.used / 2**20 if memory else None,
                "mem_total": memory.total / 2**20 if memory else None,
                "power": None if power is None else power / 1000,
                "temp": None if temp is None else float(temp)}

    def _cpu(self) -> dict[str, float | None]:
        now, seconds = time.monotonic(), self._cpu_seconds()
        then, before = self._cpu_mark
        self._cpu_mark = (now, seconds)
        util = 100 * (seconds - before) / (now - then) if now > then else None
        return {"util": util, "mem": rss_mib(), "mem_total": total_mib(), "power": None, "temp": None}

    @staticmethod
    def _cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


def guarded(read: Any) -> Any:
    """What `read()` gives, or None when NVML refuses (NotSupported on some boards, a driver gone)."""
    try:
        return read()
    except Exception:
        return None


def rss_mib() -> float | None:
    """This process's resident memory now (Linux /proc; elsewhere its peak, from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 2**10


def total_mib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (OSError, ValueError):
        return None
