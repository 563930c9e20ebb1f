"""What every sub-command shares: an argparse whose errors are one line, and `fail`."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    print(f"gantui: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def images_arg(p: argparse.ArgumentParser) -> None:
    from gantui.common import IMAGE_MODES

    p.add_argument("--images", choices=IMAGE_MODES, default="auto",
                   help="how samples are drawn: auto (what the terminal answers it draws: Kitty graphics, sixel, "
                        "iTerm2 inline images at full resolution; else half blocks), a protocol forced, or blocks")
