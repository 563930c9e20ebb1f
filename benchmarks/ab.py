"""Two gantui source trees, headless, side by side: did a change slow the trainer?

    python benchmarks/ab.py OLD_TREE NEW_TREE --pairs 3

Each pair runs `python -m gantui --no-ui` from each tree at once, one core each, the cores swapped
every 2 s (bench.py's method); the ratio NEW/OLD is over the window both were past warm-up. An
A/A pair (OLD against OLD) beside each shows the method's noise.
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


def pair(a: Path, b: Path, tmp: Path, name: str, args: argparse.Namespace) -> float:
    argv = [sys.executable, "-m", "gantui", "--no-ui", "--device", args.device, "--steps", str(args.warmup + args.steps)]
    rows, start, end = two_at_once([argv, argv], [tmp / f"{name}-a", tmp / f"{name}-b"], args.warmup, cwds=(a, b))
    rate_a, rate_b = (rate_between(r, 64, start, end) for r in rows)
    print(f"  {name}: {rate_b:,.0f} / {rate_a:,.0f} img/s = {rate_b / rate_a:.3f} ({end - start:.0f} s in common)",
          file=sys.stderr, flush=True)
    return rate_b / rate_a


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ab, aa = [], []
        for i in range(args.pairs):
            ab.append(pair(args.old, args.new, tmp, f"new/old #{i + 1}", args))
            aa.append(pair(args.old, args.old, tmp, f"old/old (A/A) #{i + 1}", args))
    result = {"new_vs_old": statistics.median(ab), "pairs": ab, "aa": statistics.median(aa), "aa_pairs": aa}
    print(f"new / old, side by side: {result['new_vs_old']:.3f} ({', '.join(f'{r:.3f}' for r in ab)}); "
          f"A/A {result['aa']:.3f} ({', '.join(f'{r:.3f}' for r in aa)})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
