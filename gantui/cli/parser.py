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
