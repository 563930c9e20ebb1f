"""Choosing the training device, its precision and its backend settings."""
from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

import torch

from gantui.common import GantuiError

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


class DeviceError(GantuiError, RuntimeError):
    """The requested device is not available; the message is one line."""


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; anything else must exist as asked."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps" if mps_ok else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available here")
        index = device.index if device.index is not None else torch.cuda.current_device()  # a rank's own
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)  # explicit index: the current device is per thread
    if device.type == "mps" and not mps_ok:
        raise DeviceError(f"device {name!r} requested but MPS is not available here")
    return device


def cpu_has_amx() -> bool:
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast where it pays: CUDA with bf16 support, and CPUs with AMX tiles
    (measured there: 1.2-1.3x the fp32 step; on CPUs without AMX bf16 is emulated and slower)."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_amx()


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for the next step instead of handing it back to the kernel.

    By default glibc maps blocks over 128 KB afresh (up to 32 MB, as it adapts) and trims its
    heap whenever the top is free, so each CPU training step faulted in 2600-3500 zeroed pages
    (10-14 MB; touching that many fresh pages took ~14 ms on the 2-core test machine); with these
    two settings a median of a few. The price: peak RSS about 90 MB higher (benchmarks/bench.py).
    True when glibc took the settings."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def cpu_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """The threads a CPU run takes: OMP_NUM_THREADS when it is set (torchrun sets 1 for several
    ranks a machine), else the cores this process may use shared among the job's ranks on this
    machine (torch counts the machine's cores, which oversubscribes a container, a `taskset` or
    two ranks: their threads wait on each other's, 3x slower measured on 2 cores beside one busy
    process); None where the cores cannot be known."""
    try:
        return max(int(environ["OMP_NUM_THREADS"]), 1)
    except (KeyError, ValueError):
        pass
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        ranks = max(int(environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        ranks = 1
    return max(len(os.sched_getaffinity(0)) // ranks, 1)


def configure_backend(device: torch.device) -> None:
    """TF32 and cuDNN autotuning on CUDA; on the CPU `cpu_threads` threads and freed memory
    kept for reuse."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    elif device.type == "cpu":
        threads = cpu_threads()
        if threads:
            torch.set_num_threads(threads)
        keep_freed_memory()
