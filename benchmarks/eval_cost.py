"""What the live evaluation costs: seconds per evaluation, and its share of training time.

    python benchmarks/eval_cost.py                  # CPU or GPU, whichever `--device auto` finds
    python benchmarks/eval_cost.py --device cuda --json benchmarks/results/eval-cuda.json

Runs `gantui --no-ui` with an evaluation every --every steps, then reads metrics.jsonl: each
evaluation's own time (`eval_s`, generation + classifier + figures, measured by the trainer) and
the training rate of the intervals without one. The share is what the evaluation takes of a
run at the default --eval-every: eval_s / (eval_every x seconds per step + eval_s).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from gantui.config import Config, default_eval_every


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=Config.batch_size)
    p.add_argument("--n", type=int, default=Config.eval_n, help="images per evaluation")
    p.add_argument("--every", type=int, default=100, help="steps between evaluations in this measurement")
    p.add_argument("--evaluations", type=int, default=6)
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "gantui", "--no-ui", "--out", tmp, "--device", args.device,
                "--batch-size", str(args.batch_size), "--eval-n", str(args.n), "--eval-every", str(args.every),
                "--steps", str(args.every * args.evaluations), "--log-every", "10"]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        device = json.loads((Path(tmp) / "config.json").read_text())["resolved_device"]
    evals = [r for r in rows if r.get("event") == "quality"]
    eval_steps = {r["step"] for r in evals}
    train = [r for r in rows if "event" not in r and r["step"] not in eval_steps and r["step"] > 20]
    eval_s = statistics.median(r["eval_s"] for r in evals[1:])  # the first one loads the classifier
    step_s = args.batch_size / statistics.median(r["images_per_s"] for r in train)
    default = default_eval_every(device.split(":")[0])
    result = {
        "device": device, "batch_size": args.batch_size, "eval_n": args.n,
        "eval_s": eval_s, "first_eval_s": evals[0]["eval_s"], "step_s": step_s,
        "default_eval_every": default, "share_at_default": eval_s / (default * step_s + eval_s),
    }
    print(f"{device}: {args.n} images evaluated in {eval_s:.2f} s (median of {len(evals) - 1}; the first, "
          f"loading the classifier, {evals[0]['eval_s']:.2f} s); a training step {step_s * 1000:.1f} ms at batch "
          f"{args.batch_size}; at --eval-every {default}: {result['share_at_default']:.1%} of the time")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
