"""The built-in trainer's step rate while checkpoints go to a slow disk, against no checkpoints.

    python benchmarks/checkpoint.py --pairs 2 --json benchmarks/results/checkpoint.json

A slow disk is simulated: each `torch.save` sleeps `--delay` seconds first (a sleep releases the
GIL, as a write does). One run saves every `--save-every` steps, the other never; both headless
at once, one core each, the cores swapped every 2 s (bench.py's method), with an A/A pair (no
checkpoints against no checkpoints) beside each ratio. Checkpoints are written by a thread of
their own from a CPU copy, so the ratio should be the A/A's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench import rate_between, two_at_once  # noqa: E402

SLOW_DISK = """
import sys, time, torch
real_save = torch.save
def slow_save(*args, **kwargs):
    time.sleep(float(sys.argv[1]))
    return real_save(*args, **kwargs)
torch.save = slow_save
from gantui.cli import main
sys.exit(main(sys.argv[2:]))
"""


def argv(args: argparse.Namespace, save_every: int) -> list[str]:
    return [sys.executable, "-c", SLOW_DISK, str(args.delay), "--no-ui", "--device", "cpu", "--eval-every", "0",
            "--steps", str(args.warmup + args.steps), "--save-every", str(save_every)]


def pair(tmp: Path, name: str, saves: tuple[int, int], args: argparse.Namespace) -> float:
    rows, start, end = two_at_once([argv(args, saves[0]), argv(args, saves[1])],
                                   [tmp / f"{name}-a", tmp / f"{name}-b"], args.warmup)
    a, b = (rate_between(r, 64, start, end) for r in rows)
    print(f"  {name}: {b:,.1f} / {a:,.1f} img/s = {b / a:.3f} ({end - start:.0f} s in common)", file=sys.stderr,
          flush=True)
    return b / a


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--delay", type=float, default=1.0, help="seconds each checkpoint write waits (the slow disk)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    never = 10**9
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ab, aa = [], []
        for i in range(args.pairs):
            ab.append(pair(tmp, f"saving/none #{i + 1}", (never, args.save_every), args))
            aa.append(pair(tmp, f"none/none (A/A) #{i + 1}", (never, never), args))
    result = {"saving_vs_none": statistics.median(ab), "pairs": ab, "aa": statistics.median(aa), "aa_pairs": aa,
              "save_every": args.save_every, "delay_s": args.delay}
    print(f"checkpoints every {args.save_every} steps to a disk {args.delay:g} s slow / none: "
          f"{result['saving_vs_none']:.3f} ({', '.join(f'{r:.3f}' for r in ab)}); "
          f"A/A {result['aa']:.3f} ({', '.join(f'{r:.3f}' for r in aa)})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
