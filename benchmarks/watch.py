"""`gantui watch`: the first frame with a preview, and what crosses the link, at 120x40.

    python benchmarks/watch.py --json benchmarks/results/watch.json

Starts a headless run (CPU, default settings), then (1) `gantui watch RUN` in a fresh
pseudo-terminal, timed from its start to the first preview drawn (half blocks), several times;
(2) for `--seconds` each, the bytes that `gantui watch HOST:RUN` moves through its transport (a
local stand-in for ssh that counts what the relay writes), against the bytes the same dashboard,
drawn on the server, writes to its terminal (what an ssh session would carry instead). The relay
is measured three times in turn: a watcher drawing half blocks (16 levels a pixel), one drawing
sixel pictures (8 bits, `--images sixel`), and half blocks again (the A/A pair).
"""
from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
# TILE_HALF_BLOCKS: one full digit tile, as bench.py times the dashboard's first preview (the sparklines
# draw a few dozen half blocks of their own first)
from bench import TILE_HALF_BLOCKS, quit_in_pty, sized_pty  # noqa: E402

ENV = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
COUNTER = """#!/bin/sh
# a stand-in for ssh: runs the remote command here and counts the bytes it sends back
shift
sh -c "$*" | tee -a "$GANTUI_BENCH_COUNT"
"""


def in_pty(argv: list[str], seconds: float, size: tuple[int, int], env: dict[str, str]) -> tuple[float | None, int]:
    """Run argv in a pty of `size` for `seconds`; (seconds to the first preview, bytes drawn)."""
    main, child = sized_pty(*size)
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env, start_new_session=True)
    os.close(child)
    first, blocks, total = None, 0, 0
    while time.monotonic() - start < seconds:
        if select.select([main], [], [], 0.05)[0]:
            try:
                chunk = os.read(main, 1 << 20)
            except OSError:
                break
            total += len(chunk)
            blocks += chunk.decode("utf-8", "ignore").count("▄")
            if first is None and blocks >= TILE_HALF_BLOCKS:
                first = time.monotonic() - start
                if seconds == float("inf"):
                    break
    quit_in_pty(proc, main)
    return first, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60.0, help="seconds per bandwidth measurement (default 60)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    run_dir = tmp / "run"
    gantui = [sys.executable, "-m", "gantui"]
    run = subprocess.Popen([*gantui, "--no-ui", "--out", str(run_dir), "--device", "cpu"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (run_dir / "gantui.sock").exists() or not (run_dir / "metrics.jsonl").exists():
            time.sleep(0.2)
        time.sleep(5)  # the run is up and has a few intervals of history
        # --images blocks: a pseudo-terminal answers no query, and the probe would wait its 1.5 s for one
        watch = [*gantui, "watch", "--images", "blocks"]
        firsts = [in_pty([*watch, str(run_dir)], 30.0, (120, 40), ENV)[0] for _ in range(args.repeats)]
        _, local_bytes = in_pty([*watch, str(run_dir)], args.seconds, (120, 40), ENV)
        counter, count = tmp / "fake-ssh", tmp / "count"
        counter.write_text(COUNTER)
        counter.chmod(0o755)
        env = {**ENV, "GANTUI_SSH": str(counter), "GANTUI_BENCH_COUNT": str(count),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        relayed = {}
        for label, images in (("blocks", "blocks"), ("pictures", "sixel"), ("blocks_again", "blocks")):
            count.unlink(missing_ok=True)
            in_pty([*gantui, "watch", "--images", images, f"server:{run_dir}"], args.seconds, (120, 40), env)
            relayed[label] = count.stat().st_size if count.exists() else 0
        relay_bytes = relayed["blocks"]
    finally:
        run.terminate()
        run.wait(60)
    per_min = 60.0 / args.seconds
    result = {
        "first_preview_s": firsts, "first_preview_median_s": statistics.median(f for f in firsts if f is not None),
        "terminal_bytes_per_min": local_bytes * per_min, "relay_bytes_per_min": relay_bytes * per_min,
        "relay_bytes_per_min_pictures": relayed["pictures"] * per_min,
        "relay_bytes_per_min_blocks_again": relayed["blocks_again"] * per_min,
        "ratio": local_bytes / relay_bytes if relay_bytes else None, "seconds": args.seconds, "size": [120, 40],
        "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
    }
    print(f"gantui watch, first frame with a preview: {', '.join(f'{f:.2f}' for f in firsts)} s "
          f"(median {result['first_preview_median_s']:.2f} s)")
    print(f"120x40 dashboard over the link: relay {result['relay_bytes_per_min'] / 1e6:.2f} MB/min, "
          f"terminal drawn on the server {result['terminal_bytes_per_min'] / 1e6:.2f} MB/min "
          f"({result['ratio']:.1f}x)" if result["ratio"] else "relay: nothing counted")
    print(f"relay with pictures (8-bit previews): {result['relay_bytes_per_min_pictures'] / 1e6:.2f} MB/min; "
          f"half blocks again (A/A): {result['relay_bytes_per_min_blocks_again'] / 1e6:.2f} MB/min")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
