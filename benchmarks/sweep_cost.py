"""What `gantui sweep` adds to each trial: the same trials run by hand, one after another, against
the sweep running them (one at a time), in wall-clock seconds.

    python benchmarks/sweep_cost.py --json benchmarks/results/sweep-cost.json

Each round runs the trials by hand (`gantui --no-ui --out DIR FLAGS --seed S`, as a script would),
then through `gantui sweep --jobs 1 --sampler grid --space seed=...` (the same commands, plus the
study in SQLite, the rows read for the pruner, the trial's start and end told to Optuna), then by
hand again: the two hand runs are the A/A pair. Overhead a trial = (sweep - hand) / trials.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ENV = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}  # both arms alike (the sweep sets it otherwise)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def by_hand(tmp: Path, name: str, seeds: list[int], flags: list[str]) -> float:
    return sum(timed([sys.executable, "-m", "gantui", "--no-ui", "--out", str(tmp / name / str(seed)), *flags,
                      "--seed", str(seed)]) for seed in seeds)


def swept(tmp: Path, name: str, seeds: list[int], flags: list[str]) -> float:
    return timed([sys.executable, "-m", "gantui", "sweep", "--no-ui", "--out", str(tmp / name), "--trials",
                  str(len(seeds)), "--jobs", "1", "--sampler", "grid", "--pruner", "none",
                  "--space", "seed=" + ",".join(map(str, seeds)), *flags])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    flags = ["--device", args.device, "--steps", str(args.steps), "--eval-every", str(args.steps // 2),
             "--batch-size", "64"]
    seeds = list(range(1, args.trials + 1))
    rounds = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for r in range(args.rounds):
            hand_a = by_hand(tmp, f"hand-a-{r}", seeds, flags)
            sweep = swept(tmp, f"sweep-{r}", seeds, flags)
            hand_b = by_hand(tmp, f"hand-b-{r}", seeds, flags)
            hand = (hand_a + hand_b) / 2
            rounds.append({"hand_a_s": hand_a, "sweep_s": sweep, "hand_b_s": hand_b,
                           "overhead_per_trial_s": (sweep - hand) / args.trials,
                           "sweep_vs_hand": sweep / hand, "aa": hand_b / hand_a})
            print(f"  round {r + 1}: by hand {hand_a:.1f} s and {hand_b:.1f} s, the sweep {sweep:.1f} s: "
                  f"{rounds[-1]['overhead_per_trial_s']:+.2f} s a trial", file=sys.stderr, flush=True)
    result = {"trials": args.trials, "steps": args.steps, "rounds": rounds,
              "overhead_per_trial_s": statistics.median(r["overhead_per_trial_s"] for r in rounds),
              "sweep_vs_hand": statistics.median(r["sweep_vs_hand"] for r in rounds),
              "aa": statistics.median(r["aa"] for r in rounds)}
    print(f"the sweep / by hand: {result['sweep_vs_hand']:.3f} ({result['overhead_per_trial_s']:+.2f} s a trial of "
          f"{args.steps} steps); by hand / by hand (A/A): {result['aa']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
