"""`gantui compare`: several runs side by side, as a table, JSON lines or Markdown; torch-free."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gantui.cli.parser import Parser, fail, images_arg


def compare(argv: list[str]) -> int:
    from gantui.cli.commands import is_remote
    from gantui.run.compare import compare as entries_of, folder_of_runs, markdown, runs_named, text

    p = Parser(prog="gantui compare", description="Runs side by side: their state, FID, coverage and "
                                                  "throughput, and the settings that differ between them.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run directories or names, or a directory of runs "
                                                          "(a sweep's)")
    p.add_argument("--last", type=int, metavar="N", help="the newest N runs under the runs directory")
    p.add_argument("--root", type=Path, help="the runs directory (default: the user data dir's gantui/runs)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON object per run, a line each")
    shape.add_argument("--markdown", action="store_true", help="a Markdown table")
    shape.add_argument("--text", action="store_true", help="a plain table (the default where stdout is not a "
                                                           "terminal; in one, the comparison view)")
    images_arg(p)
    args = p.parse_args(argv)
    if not args.runs and args.last is None:
        fail("name the runs to compare (RUN ..., or a directory of runs) or --last N")
    if args.last is not None and args.last < 1:
        fail(f"--last must be a positive integer, got {args.last}")
    remote = [spec for spec in args.runs if is_remote(spec)]
    view = not (args.json or args.markdown or args.text) and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    if remote and not view:
        fail(f"{remote[0]}: a run on another host is compared in the terminal view only (here: "
             "`ssh HOST gantui compare RUN ... --json`)")
    runs = runs_named([spec for spec in args.runs if spec not in remote], args.last, args.root, allow_none=bool(remote))
    if view:
        from gantui.ui.compare.app import CompareApp
        from gantui.ui.pictures.terminal import detect

        folders = [f for f in map(folder_of_runs, args.runs) if f is not None]  # their new runs join the view
        return CompareApp([*runs, *remote], folders=folders, pictures=detect(args.images)).run() or 0
    entries = entries_of(runs)
    if args.json:
        for entry in entries:
            print(json.dumps(entry.to_json()))
    else:
        print(markdown(entries) if args.markdown else text(entries))
    return 0
