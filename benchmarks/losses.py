"""Every recipe's figures, to the bit: a refactor that claims to change no behaviour shows it here.

Each recipe of `recipes.py` trains 24 steps from seed 0 on the CPU on one thread, each in a fresh
process, logging every step; what it logged (every figure but the clock's and the machine's) is
hashed. Run it before a change with `--save FILE` and after with `--check FILE`: the same machine
and thread count give the same bits, so any difference is the change's.

    python benchmarks/losses.py --save before.json    # then, after the change:
    python benchmarks/losses.py --check before.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from recipes import COST_ONLY, RECIPES

CLOCK = {"time", "images_per_s", "steps_per_s", "devices"}  # the machine's figures, not the run's


def figures(recipe: list[str], out: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "gantui", "--no-ui", "--device", "cpu", "--steps", "24", "--batch-size", "16",
           "--log-every", "1", "--eval-every", "0", "--seed", "0", "--out", str(out), *recipe]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in CLOCK} for row in rows if "event" not in row]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--save", type=Path, help="write each recipe's hash and last row here")
    what.add_argument("--check", type=Path, help="compare with a file --save wrote; exit 1 on any difference")
    args = p.parse_args()
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, recipe) in enumerate({**RECIPES, **COST_ONLY}.items()):
            rows = figures(recipe, Path(tmp) / str(i))
            digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
            found[name] = {"flags": recipe, "sha256": digest, "rows": len(rows), "last": rows[-1]}
            print(f"{name:34s} {digest[:16]}  {len(rows)} rows", flush=True)
    if args.save:
        args.save.write_text(json.dumps(found, indent=1) + "\n")
        return 0
    before = json.loads(args.check.read_text())
    differ = [name for name in before.keys() | found.keys()
              if before.get(name, {}).get("sha256") != found.get(name, {}).get("sha256")]
    for name in sorted(differ):
        print(f"differs: {name}: {before.get(name, {}).get('last')} -> {found.get(name, {}).get('last')}")
    print("the same, to the bit" if not differ else f"{len(differ)} of {len(found)} recipes differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
