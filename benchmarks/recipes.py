"""Every recipe: its cost per step against the default, side by side; and its quality after training.

    python benchmarks/recipes.py cost [--pairs 2] [--steps 150]
    python benchmarks/recipes.py quality [--epochs 5] [--only NAME ...]
    python benchmarks/recipes.py score NAME RUN_DIR [--epochs 30]

`cost`: each recipe runs headless beside the default recipe, one core each, the cores swapped
every 2 s (bench.py's method), with an A/A pair (default beside default); the ratio is the
default's rate over the recipe's, per step and per real image (with --d-steps a step takes several
batches), in the window both were past warm-up (above 1: slower); the default trains until the
recipe has done its --steps.
`quality`: each recipe trains --epochs from its defaults, two at a time on a core each, then
`gantui eval RUN --n 10000` scores the final G (its EMA when there is one); a Markdown table
(FID, digits, KL, coverage, conditioning accuracy, images/s, rollbacks) and a JSON file, whose rows
for other recipes from earlier the same day are kept.
`score`: the same row for a run trained by hand with the recipe's command (a 30-epoch run takes
~90 minutes a core here: start it in tmux, score it when it is done).
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

sys.path.insert(0, str(Path(__file__).parent))
from bench import pinned, two_at_once  # noqa: E402

RECIPES = {  # in the order `quality` trains them
    "default (ns)": [],
    "hinge + spectral norm": ["--loss", "hinge", "--spectral-norm"],
    "wgan-gp, 5 critic steps": ["--loss", "wgan-gp", "--d-steps", "5", "--lr", "1e-4", "--beta1", "0.0"],
    "ema 0.999": ["--ema", "0.999"],
    "conditional": ["--conditional"],
    "lsgan": ["--loss", "lsgan"],
    "r1 (gamma 1)": ["--r1", "1"],
    "diffaug": ["--diffaug", "color,translation,cutout"],
    "minimax": ["--loss", "minimax"],
    "lsgan + ema 0.999": ["--loss", "lsgan", "--ema", "0.999"],
}
# Costed, not trained for the table: the gradient penalty's double backward on its own.
COST_ONLY = {"gradient penalty (ns + --gp 10)": ["--gp", "10"], "wgan-gp, 1 critic step": ["--loss", "wgan-gp"]}
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def cost_pair(recipe: list[str], tmp: Path, name: str, args: argparse.Namespace) -> tuple[float, float]:
    """The recipe's time per step and per real image, over the default's, side by side: the
    default trains until the recipe has done its steps."""
    argv = [sys.executable, "-m", "gantui", "--no-ui", "--device", "cpu", "--eval-every", "0"]
    rows, start, end = two_at_once([argv + ["--steps", "1000000"], argv + ["--steps", str(args.warmup + args.steps),
                                                                         *recipe]],
                                   [tmp / f"{name}-base", tmp / f"{name}-recipe"], args.warmup, second_ends_both=True)
    (base_steps, base_images), (steps, images) = (rates(r, start, end) for r in rows)
    return base_steps / steps, base_images / images


def rates(rows: list[dict], start: float, end: float) -> tuple[float, float]:
    """Steps/s and real images/s between the first and last rows inside [start, end]."""
    inside = [r for r in rows if start <= r["time"] <= end]
    if len(inside) < 2:
        raise SystemExit("recipes: too few metrics rows in the common window; raise --steps")
    seconds = inside[-1]["time"] - inside[0]["time"]
    first, last = inside[0], inside[-1]
    steps = last["step"] - first["step"]
    per_step = (last["images_per_s"] / last["steps_per_s"]) if last.get("steps_per_s") else 64
    return steps / seconds, steps * per_step / seconds


def cost(args: argparse.Namespace) -> None:
    results = {}
    names = args.only or ["A/A (default beside default)", *[n for n in RECIPES if n != "default (ns)"], *COST_ONLY]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            recipe = {**RECIPES, **COST_ONLY}.get(name, [])
            pairs = [cost_pair(recipe, Path(tmp), f"{len(results)}-{i}", args) for i in range(args.pairs)]
            step, image = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
            results[name] = {"per_step": [p[0] for p in pairs], "per_image": [p[1] for p in pairs],
                             "median_per_step": step, "median_per_image": image, "flags": recipe}
            print(f"{name:32s} {step:.2f}x the default's time per step, {image:.2f}x per real image "
                  f"({', '.join(f'{p[0]:.2f}' for p in pairs)})", flush=True)
    save("recipes-cost", {"pairs": args.pairs, "steps": args.steps, "results": results})


def train_and_score(name: str, recipe: list[str], out: Path, core: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gantui", "--no-ui", "--out", str(out), "--device", "cpu", "--epochs",
           str(args.epochs), *recipe]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=pinned(core))


def score(name: str, recipe: list[str], out: Path, args: argparse.Namespace) -> dict:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    metrics = [r for r in rows if "loss_d" in r]
    done = subprocess.run([sys.executable, "-m", "gantui", "eval", str(out), "--n", "10000", "--json"],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"recipes: eval of {name} failed: {done.stderr}")
    figures = json.loads(done.stdout)
    rates = [r["images_per_s"] for r in metrics[len(metrics) // 10:]]
    return {"recipe": name, "flags": recipe, "epochs": args.epochs, "steps": metrics[-1]["step"],
            "status": json.loads((out / "status.json").read_text())["state"],
            "rollbacks": sum(r.get("event") == "rollback" for r in rows),
            "images_per_s": statistics.median(rates), **{k: figures.get(k) for k in
                                                            ("fid", "classes", "kl", "coverage", "density", "cond_acc")},
            "command": "gantui --no-ui --device cpu --epochs {} {}".format(args.epochs, " ".join(recipe)).strip()}


def quality(args: argparse.Namespace) -> None:
    names = args.only or list(RECIPES)
    cores = sorted(os.sched_getaffinity(0))[:2]
    root = Path(args.root or tempfile.mkdtemp(prefix="gantui-recipes-"))
    results = []
    queue = list(names)
    running: dict[int, tuple[str, Path, subprocess.Popen]] = {}
    while queue or running:
        for core in cores:
            if core not in running and queue:
                name = queue.pop(0)
                out = root / name.replace(" ", "_").replace(",", "").replace("+", "and")
                running[core] = (name, out, train_and_score(name, RECIPES[name], out, core, args))
                print(f"started {name} on core {core}: {out}", flush=True)
        time.sleep(5)
        for core, (name, out, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[core]
            if proc.returncode not in (0, 3):  # 3: diverged, which the table reports
                print(f"{name}: exited {proc.returncode}: {proc.stderr.read()[-500:]}", flush=True)
                continue
            results.append(score(name, RECIPES[name], out, args))
            print(json.dumps(results[-1]), flush=True)
    print(table(merge(args.epochs, results)))


def score_run(args: argparse.Namespace) -> None:
    out = Path(args.run)
    config = json.loads((out / "config.json").read_text())
    if config["epochs"] != args.epochs or config.get("steps"):
        raise SystemExit(f"recipes: {out} trained {config['epochs']} epochs (steps {config.get('steps')}), not "
                         f"{args.epochs}")
    print(table(merge(args.epochs, [score(args.name, RECIPES[args.name], out, args)])))


def merge(epochs: int, results: list[dict]) -> list[dict]:
    """Today's table at `epochs`, these rows replacing any of the same recipe."""
    path = RESULTS / f"recipes-quality-{epochs}ep-{time.strftime('%Y-%m-%d')}.json"
    mine = {r["recipe"] for r in results}
    kept = [r for r in json.loads(path.read_text())["results"] if r["recipe"] not in mine] if path.exists() else []
    merged = kept + results
    save(f"recipes-quality-{epochs}ep", {"epochs": epochs, "results": merged})
    return merged


def table(results: list[dict]) -> str:
    lines = ["| recipe | FID (classifier, N=10k) | digits | KL | coverage | cond. acc. | img/s | rollbacks | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cond = f"{r['cond_acc']:.1%}" if r.get("cond_acc") is not None else ""
        lines.append(f"| {r['recipe']} | {r['fid']:.1f} | {r['classes']} | {r['kl']:.3f} | {r['coverage']:.2f} | "
                     f"{cond} | {r['images_per_s']:,.0f} | {r['rollbacks']} | {r['status']} |")
    return "\n".join(lines)


def save(stem: str, data: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stem}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--pairs", type=int, default=2)
    c.add_argument("--steps", type=int, default=150)
    c.add_argument("--warmup", type=int, default=20)
    c.add_argument("--only", nargs="*", choices=["A/A (default beside default)", *RECIPES, *COST_ONLY])
    q = sub.add_parser("quality")
    q.add_argument("--epochs", type=int, default=5)
    q.add_argument("--only", nargs="*", choices=list(RECIPES))
    q.add_argument("--root", help="where the runs go (default: a new temporary directory, kept)")
    s = sub.add_parser("score")
    s.add_argument("name", choices=list(RECIPES))
    s.add_argument("run", help="the run directory")
    s.add_argument("--epochs", type=int, default=30)
    args = p.parse_args()
    {"cost": cost, "quality": quality, "score": score_run}[args.mode](args)


if __name__ == "__main__":
    main()
