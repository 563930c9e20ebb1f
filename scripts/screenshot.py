"""Save an SVG screenshot of the real dashboard training (optionally resumed from a run).

    python scripts/screenshot.py screenshots/dashboard.svg --resume RUN_DIR --seconds 25 --flags "--steps 100000"
    python scripts/screenshot.py screenshots/watch.svg --watch RUN_DIR --seconds 5   # gantui watch on a live run
    python scripts/screenshot.py docs/screenshots/compare.svg --compare SWEEP_DIR --width 160 --height 48 --seconds 3
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile

from gantui.run.rundir import RunDir
from gantui.run.client import LocalLink, socket_link
from gantui.ui.app import GanApp


async def shoot(args: argparse.Namespace) -> None:
    if args.compare:
        from gantui.run.compare import runs_named
        from gantui.ui.compare.app import CompareApp

        app = CompareApp(runs_named(args.compare))
    elif args.watch:
        app = GanApp(socket_link(RunDir(args.watch).find_socket()))
    else:
        from gantui.cli.resolve import build_config
        from gantui.cli.train import train_parser
        from gantui.session import Session

        flags = ["--out", tempfile.mkdtemp()] + (["--resume", args.resume] if args.resume else []) + args.flags.split()
        session = Session(*build_config(train_parser().parse_args(flags)), serve=False)
        session.start()
        app = GanApp(LocalLink(session.hub))
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
    parser.add_argument("--watch", help="a live run's directory: shoot `gantui watch` on it")
    parser.add_argument("--compare", nargs="+", help="runs, or a sweep's directory: shoot `gantui compare` on them")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flags", default="", help="more gantui flags, e.g. '--epochs 30 --eval-every 40'")
    parser.add_argument("--width", type=int, default=120)
    parser.add_argument("--height", type=int, default=36)
    asyncio.run(shoot(parser.parse_args()))


if __name__ == "__main__":
    main()
