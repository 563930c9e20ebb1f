"""Choosing the training device."""
from __future__ import annotations

import torch


class DeviceError(RuntimeError):
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
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)  # explicit index: the current device is per thread
    if device.type == "mps" and not mps_ok:
        raise DeviceError(f"device {name!r} requested but MPS is not available here")
    return device
