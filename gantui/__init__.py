"""gantui: train a GAN in the terminal and watch it learn, or publish a loop of your own to it.

    import gantui
    run = gantui.init(name="dcgan", config=vars(opt))
    run.log({"Loss_D": errD, "Loss_G": errG}, step=step)

Importing gantui loads no torch: `init` and `Run` are looked up when first used.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Run", "init"]


def __getattr__(name: str) -> Any:
    if name == "init":
        from gantui.run.api import init

        return init
    if name == "Run":
        from gantui.run.loop import Run

        return Run
    raise AttributeError(f"module 'gantui' has no attribute {name!r}")
