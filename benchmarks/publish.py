"""What publishing costs a loop of the user's own (`gantui.init` + `run.log`).

    python benchmarks/publish.py calls                 # log() calls a second, a loop doing nothing else
    python benchmarks/publish.py loop --pairs 3        # a ~0.7 ms step with and without publishing

`calls`: run.log() with three floats, then with three one-element CPU tensors, N calls each (the
floor is 20,000 a second: 50 us a call). `loop`: the pace of a fast GPU loop simulated on the CPU,
a ~0.7 ms step (a matmul on one torch thread, its side calibrated on the spot, and its mean as
the loss); two processes at once, one core each, the
cores swapped every 2 s (bench.py's method): with publishing against without, and an A/A pair
(without against without) beside each ratio. A watcher is attached to the publishing loop, so
its previews and rows are sent as they would be.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench import CoreSwapper, metric_rows, pinned  # noqa: E402

CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
out, publish, seconds, size = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3]), int(sys.argv[4])
a, b = torch.randn(size, size), torch.randn(size, size)
images = torch.rand(64, 1, 28, 28) * 2 - 1
w = torch.zeros((), requires_grad=True)
if publish:
    import gantui
    run = gantui.init(out=out, quiet=True)
else:
    import os
    os.makedirs(out, exist_ok=True)
    rows = open(out + "/metrics.jsonl", "w")
end = time.time() + seconds
step, mark = 0, 0.0
while True:
    step += 1
    loss = (a @ b).mean() + w  # a loss: a reduction, part of a graph
    if publish:
        run.log({"loss_d": loss, "loss_g": loss, "d_x": 0.5}, step=step)
        if step % 10 == 0:
            run.log_images(images, step=step)
    now = time.time()
    if now - mark >= 0.25:  # the unpublished loop's own clock (what the published one writes anyway)
        mark = now
        if not publish:
            rows.write(json.dumps({"step": step, "time": now}) + "\\n")
            rows.flush()
        if now > end:
            break
if publish:
    run.finish()
"""


def step_time(size: int) -> float:
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(50):
        a @ b
    began = time.perf_counter()
    for _ in range(500):
        a @ b
    return (time.perf_counter() - began) / 500


def calibrate(target_ms: float) -> int:
    """The matmul side whose step takes about `target_ms` here (the machine's speed varies)."""
    low, high = 32, 1024
    while high - low > 8:
        mid = (low + high) // 2
        low, high = (mid, high) if step_time(mid) * 1e3 < target_ms else (low, mid)
    return low


def calls(args: argparse.Namespace) -> dict:
    """Each kind `--repeat` times, alternating, each in a run of its own; the median call, in the
    calling thread's CPU time (what the loop pays; a shared machine's waits left out). Two trees
    (before/after a change) are compared by running this under each, interleaved, from outside the
    checkout (PYTHONPATH=TREE), an A/A pair of one tree beside them."""
    import torch

    import gantui

    taken: dict[str, list[float]] = {"floats": [], "tensors": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for kind in taken:
                run = gantui.init(out=Path(tmp) / f"{kind}-{i}", quiet=True)
                values = [0.5, 0.25, 0.75] if kind == "floats" else [torch.tensor(v) for v in (0.5, 0.25, 0.75)]
                began = time.thread_time()  # the loop's thread's CPU time: a busy machine's preemptions left out
                for step in range(1, args.n + 1):
                    run.log({"loss_d": values[0], "loss_g": values[1], "d_x": values[2]}, step=step)
                taken[kind].append((time.thread_time() - began) / args.n)
                run.finish()
    result = {}
    for kind, seconds in taken.items():
        call = statistics.median(seconds)
        result[kind] = 1 / call
        print(f"run.log() with three {kind}: {1 / call:,.0f} calls/s ({call * 1e6:.2f} us a call, median of "
              f"{len(seconds)}: {', '.join(f'{s * 1e6:.2f}' for s in seconds)})")
    return result


def watch(out: Path, stop: threading.Event) -> None:
    """A watcher on the publishing loop: previews asked for, everything read."""
    path = out / "gantui.sock"
    while not path.exists() and not stop.is_set():
        time.sleep(0.05)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(b'{"cmd": "preview", "count": 16}\n')
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                if not sock.recv(1 << 20):
                    return
            except TimeoutError:
                continue


def pair(tmp: Path, name: str, publish: tuple[bool, bool], args: argparse.Namespace) -> float:
    """Steps a second of the second process over the first's, in the window both ran."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    outs = [tmp / f"{name}-{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(out), "1" if p else "0", str(args.seconds),
                               str(args.size)], preexec_fn=pinned(core), stderr=subprocess.DEVNULL)
             for out, p, core in zip(outs, publish, cores)]
    stop = threading.Event()
    watchers = [threading.Thread(target=watch, args=(out, stop), daemon=True) for out, p in zip(outs, publish) if p and not args.no_watcher]
    for w in watchers:
        w.start()
    swapper = CoreSwapper((procs[0].pid, procs[1].pid), cores, 2.0)
    swapper.start()
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"publish: a loop exited {proc.returncode}")
    swapper.done.set()
    stop.set()
    rows = [metric_rows(out, 0) for out in outs]
    start, end = max(r[0]["time"] for r in rows) + args.warmup, min(r[-1]["time"] for r in rows)
    rates = []
    for r in rows:
        inside = [row for row in r if start <= row["time"] <= end]
        rates.append((inside[-1]["step"] - inside[0]["step"]) / (inside[-1]["time"] - inside[0]["time"]))
    print(f"  {name}: {rates[1]:,.0f} / {rates[0]:,.0f} steps/s = {rates[1] / rates[0]:.3f} "
          f"({end - start:.0f} s in common)", file=sys.stderr, flush=True)
    return rates[1] / rates[0]


def loop(args: argparse.Namespace) -> dict:
    args.size = args.size or calibrate(args.step_ms)
    print(f"a step: {step_time(args.size) * 1e3:.2f} ms (a {args.size}x{args.size} matmul on one thread)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ab, aa = [], []
        for i in range(args.pairs):
            ab.append(pair(tmp, f"published/plain #{i + 1}", (False, True), args))
            aa.append(pair(tmp, f"plain/plain (A/A) #{i + 1}", (False, False), args))
    result = {"published_vs_plain": statistics.median(ab), "pairs": ab, "aa": statistics.median(aa), "aa_pairs": aa,
              "step_ms": step_time(args.size) * 1e3}
    print(f"published / plain, side by side: {result['published_vs_plain']:.3f} ({', '.join(f'{r:.3f}' for r in ab)}); "
          f"A/A {result['aa']:.3f} ({', '.join(f'{r:.3f}' for r in aa)})")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("calls", "loop"))
    p.add_argument("--n", type=int, default=200_000, help="calls: log() calls of each kind")
    p.add_argument("--repeat", type=int, default=5, help="calls: runs of each kind, the median taken")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0, help="loop: how long each process runs")
    p.add_argument("--warmup", type=float, default=3.0, help="loop: seconds left out at the start")
    p.add_argument("--step-ms", type=float, default=0.7, help="loop: the step's time to calibrate the matmul to")
    p.add_argument("--size", type=int, help="loop: the matmul's side (default: calibrated to --step-ms)")
    p.add_argument("--no-watcher", action="store_true", help="loop: nobody watches the published loop")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    result = calls(args) if args.what == "calls" else loop(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
