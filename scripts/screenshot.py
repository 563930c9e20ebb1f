"""Save an SVG screenshot of the real dashboard training (optionally resumed from a run).

    python scripts/screenshot.py screenshots/dashboard.svg --resume RUN_DIR --seconds 20 --flags "--epochs 30"
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile

from gantui.cli import build_config, train_parser
from gantui.engine.trainer import Trainer
from gantui.ui.app import PREVIEW_INTERVAL, GanApp


async def shoot(args: argparse.Namespace) -> None:
    flags = ["--out", tempfile.mkdtemp()] + (["--resume", args.resume] if args.resume else []) + args.flags.split()
    config, state = build_config(train_parser().parse_args(flags))
    app = GanApp(lambda emit: Trainer(config, emit, resume_state=state, preview_interval=PREVIEW_INTERVAL),
                 config.batch_size)
    async with app.run_test(size=(args.width, args.height)) as pilot:
        await pilot.pause(args.seconds)
        app.clear_notifications()
        await pilot.pause(0.3)
        app.save_screenshot(args.out)
        await pilot.press("q")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--resume")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flags", default="", help="more gantui flags, e.g. '--epochs 30 --eval-every 40'")
    parser.add_argument("--width", type=int, default=120)
    parser.add_argument("--height", type=int, default=36)
    asyncio.run(shoot(parser.parse_args()))


if __name__ == "__main__":
    main()
