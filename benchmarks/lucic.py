"""A small version of Lucic et al. (2018, "Are GANs Created Equal?") on MNIST: a sweep a loss over
the learning rate and Adam's beta1, then each loss's min and median FID against the number of
trials (the paper's Figure 4 reads the same way: with enough search most losses meet).

    python benchmarks/lucic.py --out lucic                # the CPU size: 4 losses x 4 trials of 300 steps, ~35 min on 2 cores
    python benchmarks/lucic.py --out lucic --full         # the GPU size: 4 losses x 32 trials of 10 epochs
    python benchmarks/lucic.py --out lucic --table        # the table again, from the studies

Every sweep is an ordinary `gantui sweep` (its trials are runs: `gantui compare lucic/hinge`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

LOSSES = ("ns", "lsgan", "hinge", "wgan-gp")
SIZES = {  # trials a loss, and every trial's flags
    "cpu": (4, ["--steps", "300", "--batch-size", "64", "--eval-every", "150", "--eval-n", "1000", "--sample-every", "50", "--device", "cpu"]),
    "full": (32, ["--epochs", "10", "--eval-n", "10000"]),
}
SPACE = ["--space", "lr=1e-5..1e-3:log", "--space", "beta1=0,0.5,0.9"]


def run(out: Path, size: str, jobs: str) -> None:
    trials, flags = SIZES[size]
    for loss in LOSSES:
        if (out / loss / "sweep.json").exists():  # begun before: on to its count (a no-op when done)
            argv = ["--resume", str(out / loss), "--jobs", jobs]
        else:
            argv = ["--out", str(out / loss), "--trials", str(trials), "--jobs", jobs, "--pruner", "none",
                    "--sampler", "random", *SPACE, "--loss", loss, *flags]
        subprocess.run([sys.executable, "-m", "gantui", "sweep", "--no-ui", *argv], check=True)


def table(out: Path) -> str:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fids = {}
    for loss in LOSSES:
        if not (out / loss / "sweep.json").exists():
            raise SystemExit(f"lucic: no sweep of {loss} in {out}: run it first (without --table)")
        named = json.loads((out / loss / "sweep.json").read_text())
        study = optuna.load_study(study_name=named["study"], storage=named["storage"])
        fids[loss] = [t.value for t in sorted(study.trials, key=lambda t: t.number) if t.value is not None]
    budgets = sorted({1, 2, 4, 8, 16, 32} & set(range(1, max(len(v) for v in fids.values()) + 1)))
    lines = ["| loss | " + " | ".join(f"{k} trial{'s' * (k > 1)}: min / median" for k in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for loss, values in fids.items():
        cells = [f"{min(values[:k]):.1f} / {statistics.median(values[:k]):.1f}" if len(values) >= k else "-"
                 for k in budgets]
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--full", action="store_true", help="the GPU size")
    p.add_argument("--jobs", default="2", help="trials at once (auto: one per GPU)")
    p.add_argument("--table", action="store_true", help="only the table, from the studies in --out")
    args = p.parse_args()
    if not args.table:
        run(args.out, "full" if args.full else "cpu", args.jobs)
    print(table(args.out))


if __name__ == "__main__":
    main()
