"""gantui on several processes (torchrun, DDP) against one, and what the ranks' agreement costs.

    python benchmarks/ranks.py speed --pairs 2      # 2 processes vs 1, images/s, with an A/A pair
    python benchmarks/ranks.py channel              # the interval's exchange vs a bare all-reduce
    python benchmarks/ranks.py loop --runs 3        # a user's loop: its agreement, its log() between

`speed`: the default recipe headless on the CPU for `--seconds`, one run after the other (a
2-process job cannot run beside a 1-process one on a 2-core machine without sharing its cores):
`gantui --nproc 2` (each process one thread: torchrun's default) against plain `gantui` (torch's
threads on every core), and plain against plain (A/A). images/s from the run's rows after a
warm-up. `channel`: two gloo processes time `distributed.exchange` (the metrics, each rank's
images/s and device figures, and the decisions: one all-reduce) against an all-reduce of the
metrics alone, the cost of agreeing on pause, stop, save, settings and the next row at each
interval, with the bare all-reduce timed twice (the A/A). `loop`: two gloo processes of a user's
loop (`gantui.init` on each) time one agreement (`LoopRanks.boundary` at an agreed step: rank 0's
commands drained, the flags' all-reduce on the ranks' own gloo group, the outcome done) against a
bare all-reduce of as many float64s on that group, the bare timed twice (the A/A); and, on each
rank, `run.log` between agreements (the boundary a compare) against `run.log` of a run with no
ranks, that timed twice (the A/A). Five interleaved rounds a run.
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
from bench import metric_rows  # noqa: E402

from gantui.run.agreement import FLAGS  # noqa: E402

CHANNEL = """
import os, time, torch, torch.distributed as dist
from gantui.engine import distributed
world = distributed.from_env()
distributed.start(world)
means = torch.rand(10)
own = [100.0, 50.0, 800.0, 16000.0, float("nan"), float("nan")]
def timed(fn, n=2000):
    for _ in range(50):
        fn()
    dist.barrier()
    began = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - began) / n
plain = again = exchange = 0.0
for _ in range(5):  # interleaved: the machine's noise falls on all three alike
    plain += timed(lambda: dist.all_reduce(means.clone()) or means.tolist())
    exchange += timed(lambda: distributed.exchange(world, means, own, {"stop": 0.0, "pause": 0.0, "row_in": 12.0}))
    again += timed(lambda: dist.all_reduce(means.clone()) or means.tolist())  # the A/A
if world.main:
    print(plain / 5 * 1e6, exchange / 5 * 1e6, again / 5 * 1e6)
distributed.stop()
"""

LOOP = """
import json, math, sys, time, torch, torch.distributed as dist, gantui
from gantui.run.agreement import FLAGS
dist.init_process_group("gloo")
run = gantui.init(name="bench", out=sys.argv[1], serve=False, quiet=True)
ranks = run._ranks
run.log({"loss": 0.0}, step=1)  # the first boundary: the ranks meet on a gloo group of their own
assert ranks.joined, "the ranks did not meet"
group, step = ranks.ranks.group, 1
def timed(fn, n):
    for _ in range(n // 20):
        fn()
    dist.barrier(group)
    began = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - began) / n
def agreement():
    global step
    step += 1
    ranks.next = -math.inf  # this step is an agreed one
    ranks.boundary(step)
def bare():
    vector = torch.tensor([0.0] * len(FLAGS), dtype=torch.float64)
    dist.all_reduce(vector, group=group)
    vector.tolist()
def logged(with_ranks):
    def call():
        global step
        step += 1
        run.log({"loss": 0.5}, step=step)
    def timing():
        run._ranks = ranks if with_ranks else None
        ranks.next = math.inf  # between agreements: the boundary is a compare
        took = timed(call, 100000)
        run._ranks, ranks.next = ranks, -math.inf
        return took
    return timing
sums = dict.fromkeys(("bare", "agreement", "bare_again", "log_ranks", "log_alone", "log_alone_again"), 0.0)
for _ in range(5):  # interleaved: the machine's noise falls on each alike
    sums["bare"] += timed(bare, 1000)
    sums["agreement"] += timed(agreement, 1000)
    sums["bare_again"] += timed(bare, 1000)  # the A/A
    sums["log_ranks"] += logged(True)()
    sums["log_alone"] += logged(False)()
    sums["log_alone_again"] += logged(False)()  # the A/A
mine = {k: v / 5 for k, v in sums.items()}
every = [None, None]
dist.all_gather_object(every, mine, group=group)
if dist.get_rank() == 0:
    print(json.dumps(every))
run.finish()
dist.destroy_process_group()
"""


def loop(args: argparse.Namespace) -> dict:
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                                   "--no-python", sys.executable, "-c", LOOP, str(Path(tmp) / "run")],
                                  capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        ranks = json.loads(done.stdout.strip().splitlines()[-1])
        first = ranks[0]
        row = {"bare_all_reduce_us": first["bare"] * 1e6, "agreement_us": first["agreement"] * 1e6,
               "aa_all_reduce_us": first["bare_again"] * 1e6,
               "log_call_ns": [{"with_ranks": r["log_ranks"] * 1e9, "without": r["log_alone"] * 1e9,
                                "aa_without": r["log_alone_again"] * 1e9} for r in ranks]}
        runs.append(row)
        logs = "; ".join(f"rank {k}: {c['with_ranks'] - c['without']:+.0f} ns "
                         f"(A/A {c['aa_without'] - c['without']:+.0f})" for k, c in enumerate(row["log_call_ns"]))
        print(f"run {i + 1}: a bare all-reduce of {len(FLAGS)} float64s {row['bare_all_reduce_us']:.0f} us, "
              f"again (A/A) {row['aa_all_reduce_us']:.0f} us; the loop's agreement {row['agreement_us']:.0f} us "
              f"({row['agreement_us'] - row['bare_all_reduce_us']:+.0f} us; A/A "
              f"{row['aa_all_reduce_us'] - row['bare_all_reduce_us']:+.0f} us); run.log between agreements, "
              f"with the ranks against without: {logs}", flush=True)
    return {"runs": runs, "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}


def run_speed(tmp: Path, name: str, nproc: int, args: argparse.Namespace) -> float:
    out = tmp / name
    cmd = [sys.executable, "-m", "gantui", "--no-ui", "--device", "cpu", "--out", str(out), "--eval-every", "0",
           "--steps", "1000000", "--log-every", "5"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + args.seconds + 120
    while time.monotonic() < deadline:
        rows = metric_rows(out, 0) if (out / "metrics.jsonl").exists() else []
        if rows and rows[-1]["time"] - rows[0]["time"] >= args.seconds:
            break
        time.sleep(1)
    job.send_signal(2)
    job.wait(120)
    rows = [r for r in metric_rows(out, 0) if r["time"] >= rows[0]["time"] + args.warmup]
    steps = rows[-1]["step"] - rows[0]["step"]
    seconds = rows[-1]["time"] - rows[0]["time"]
    per_step = json.loads((out / "config.json").read_text())["batch_size"] * nproc
    rate = steps * per_step / seconds
    print(f"  {name}: {rate:,.0f} images/s ({nproc} process{'es' * (nproc > 1)})", file=sys.stderr, flush=True)
    return rate


def speed(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ratios, aa = [], []
        for i in range(args.pairs):
            one = run_speed(tmp, f"one-{i}", 1, args)
            two = run_speed(tmp, f"two-{i}", 2, args)
            again = run_speed(tmp, f"one-again-{i}", 1, args)
            ratios.append(two / one)
            aa.append(again / one)
    result = {"two_vs_one": statistics.median(ratios), "pairs": ratios, "aa": statistics.median(aa), "aa_pairs": aa,
              "seconds": args.seconds, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    print(f"2 processes / 1, images/s: {result['two_vs_one']:.3f} ({', '.join(f'{r:.3f}' for r in ratios)}); "
          f"A/A {result['aa']:.3f} ({', '.join(f'{r:.3f}' for r in aa)})")
    return result


def channel(args: argparse.Namespace) -> dict:
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "--no-python", sys.executable, "-c", CHANNEL],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    plain, exchange, again = map(float, done.stdout.split())
    result = {"plain_all_reduce_us": plain, "exchange_us": exchange, "aa_all_reduce_us": again,
              "date": time.strftime("%Y-%m-%d")}
    print(f"an all-reduce of 10 metrics: {plain:.0f} us, and again (A/A): {again:.0f} us; the interval's exchange "
          f"(metrics, per-rank figures, decisions): {exchange:.0f} us ({exchange - plain:+.0f} us once an "
          f"interval; A/A {again - plain:+.0f} us)")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("speed", "channel", "loop"))
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--runs", type=int, default=1, help="loop: fresh jobs, one after the other")
    p.add_argument("--seconds", type=float, default=40.0, help="speed: seconds of rows per run")
    p.add_argument("--warmup", type=float, default=5.0, help="speed: seconds left out at the start")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    result = {"speed": speed, "channel": channel, "loop": loop}[args.what](args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
