"""gantui side by side with a hand-written loop, and with itself with the dashboard on.

    python benchmarks/bench.py                      # CPU or GPU, whichever `--device auto` finds
    python benchmarks/bench.py --steps 300 --json benchmarks/results/cpu.json

Every measurement is a fresh process, and the runs being compared alternate (A B A B ...),
so a noisy shared machine slows both sides alike; each rate is the median of --repeats, each ratio
the median of the ratios of runs made back to back.
1. the reference loop (benchmarks/reference.py) vs `gantui --no-ui`: images/s and the ratio;
2. `gantui` with the dashboard in a real pseudo-terminal vs `gantui --no-ui`: the ratio; and
   again with both running at once on a core each, the cores swapped every 2 s (see
   `side_by_side`), which cancels the machine's drift; headless against headless the same way
   (A/A) shows what ratio the method gives when there is nothing to find;
3. seconds from starting `gantui` to the first frame that holds a preview, peak RSS of the
   process (and peak GPU memory on CUDA).
Images/s is the steady state: the images between the first and last metrics rows after
--warmup steps, over the wall time between them (each row is written after a device sync).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
TILE_HALF_BLOCKS = 14 * 28  # one full-size digit tile: the first frame with a preview holds at least this many


def pinned(core: int | None) -> Any:
    """A preexec_fn that pins the child to one core (gantui then runs torch on one thread)."""
    return None if core is None else (lambda: os.sched_setaffinity(0, {core}))


def run_process(argv: list[str], env: dict[str, str] | None = None, tty: bool = False,
                timeout: float = 1800, core: int | None = None,
                on_start: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run argv to the end; its output, wall time, peak RSS, and when (in a pty) a preview first showed.
    In a pty, `q` is pressed once the status line says DONE."""
    start = time.monotonic()
    first_preview = None
    if tty:
        main_fd, child_fd = pty.openpty()
        proc = subprocess.Popen(argv, stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env,
                                start_new_session=True, preexec_fn=pinned(core))
        os.close(child_fd)
        if on_start:
            on_start(proc.pid)
        blocks, output = 0, b""
        while time.monotonic() - start < timeout:
            if not select.select([main_fd], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(main_fd, 1 << 16)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            text = chunk.decode("utf-8", "ignore")
            blocks += text.count("▄")
            if "DONE" in text:  # the status line: training has finished; the dashboard waits for q
                os.write(main_fd, b"q")
            if first_preview is None and blocks >= TILE_HALF_BLOCKS:
                first_preview = time.monotonic() - start
            output = (output + chunk)[-4096:]
        os.close(main_fd)
        stdout = output.decode("utf-8", "replace")
    else:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                preexec_fn=pinned(core))
        if on_start:
            on_start(proc.pid)
        stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait: it gives this process's own peak RSS
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"bench: {' '.join(argv[:4])}... exited {code}:\n{stdout[-2000:]}")
    return {"stdout": stdout, "wall_s": time.monotonic() - start, "first_preview_s": first_preview,
            "peak_rss_mb": usage.ru_maxrss / 1024}


def metric_rows(run_dir: Path, warmup: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "event" not in r and r["step"] >= warmup]


def rate_between(rows: list[dict[str, Any]], batch_size: int, start: float = 0, end: float = float("inf")) -> float:
    rows = [r for r in rows if start <= r["time"] <= end]
    if len(rows) < 2:
        raise SystemExit("bench: too few metrics rows to measure; give more --steps")
    first, last = rows[0], rows[-1]
    return (last["step"] - first["step"]) * batch_size / (last["time"] - first["time"])


def two_at_once(argvs: list[list[str]], outs: list[Path], warmup: int,
                cwds: tuple[Path | None, Path | None] = (None, None),
                second_ends_both: bool = False) -> tuple[list[list[dict[str, Any]]], float, float]:
    """Two headless runs at once, one core each, the cores swapped every 2 s; their metrics rows past
    `warmup`, and the window (start, end) in which both were running. With `second_ends_both` the
    first runs until the second is done (then SIGTERM: it saves and stops)."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    procs = [subprocess.Popen([*argv, "--out", str(out)], cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, preexec_fn=pinned(core))
             for argv, out, core, cwd in zip(argvs, outs, cores, cwds)]
    swapper = CoreSwapper((procs[0].pid, procs[1].pid), cores, 2.0)
    swapper.start()
    if second_ends_both:
        procs[1].wait()
        procs[0].terminate()
    for i, proc in enumerate(procs):
        if proc.wait() != 0 and not (second_ends_both and i == 0 and proc.returncode == 128 + 15):  # saved, stopped
            raise SystemExit(f"bench: a run exited {proc.returncode}")
    swapper.done.set()
    rows = [metric_rows(out, warmup) for out in outs]
    return rows, max(r[0]["time"] for r in rows), min(r[-1]["time"] for r in rows)


def steady_rate(run_dir: Path, warmup: int, batch_size: int) -> tuple[float, dict[str, Any]]:
    rows = metric_rows(run_dir, warmup)
    return rate_between(rows, batch_size), rows[-1]


def gantui_argv(args: argparse.Namespace, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "gantui", "--out", str(out), "--steps", str(args.warmup + args.steps),
            "--batch-size", str(args.batch_size), "--device", args.device, *extra]


def terminal_env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor",
            "COLUMNS": str(args.size[0]), "LINES": str(args.size[1])}


def gantui(args: argparse.Namespace, tmp: Path, name: str, dashboard: bool, extra: list[str]) -> dict[str, Any]:
    out = tmp / name
    argv, env = gantui_argv(args, out, extra), terminal_env(args)
    if dashboard:
        result = run_process(argv, env=env, tty=True)
    else:
        result = run_process(argv + ["--no-ui"], env=env)
    result["images_per_s"], last = steady_rate(out, args.warmup, args.batch_size)
    result["gpu_mem_mb"] = last.get("gpu_mem_mb")
    return result


def reference(args: argparse.Namespace) -> dict[str, Any]:
    result = run_process([sys.executable, str(HERE / "reference.py"), "--steps", str(args.steps),
                          "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--device", args.device])
    return {**result, **json.loads(result["stdout"].strip().splitlines()[-1])}


def pin_all_threads(pid: int, core: int) -> None:
    """Move every thread of a process (the UI, the trainer, torch's) to one core."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # it has exited
        return
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {core})
        except OSError:
            pass


class CoreSwapper(threading.Thread):
    """Every `period` seconds, swap the cores of two processes: neither keeps the faster core.
    `companions` (a watcher) move with the first process."""

    def __init__(self, pids: tuple[int, int], cores: list[int], period: float) -> None:
        super().__init__(daemon=True)
        self.pids, self.cores, self.period, self.done = pids, cores, period, threading.Event()
        self.companions: list[int] = []

    def run(self) -> None:
        turn = 0
        while not self.done.wait(self.period):
            turn += 1
            cores = self.cores if turn % 2 == 0 else self.cores[::-1]
            for pid, core in zip(self.pids, cores):
                pin_all_threads(pid, core)
            for pid in self.companions:
                pin_all_threads(pid, cores[0])


def sized_pty(cols: int, rows: int) -> tuple[int, int]:
    """A pseudo-terminal (main, child) of that size."""
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return main_fd, child_fd


def quit_in_pty(proc: subprocess.Popen, main_fd: int) -> None:
    """Press q, give it 10 s to go, then close the terminal."""
    os.write(main_fd, b"q")
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    os.close(main_fd)


def attach_watcher(args: argparse.Namespace, run_dir: Path, swapper: CoreSwapper, stop: threading.Event) -> None:
    """`gantui watch RUN` (or `compare`: --watcher) in a pty of --size, once the run serves its socket;
    its output is read and dropped, and it shares the watched run's core (a watcher on the same
    machine: the worst case)."""
    while not (run_dir / "gantui.sock").exists() and not stop.is_set():
        time.sleep(0.1)
    main_fd, child_fd = sized_pty(*args.size)
    proc = subprocess.Popen([sys.executable, "-m", "gantui", args.watcher, str(run_dir)], stdin=child_fd, stdout=child_fd,
                            stderr=child_fd, env=terminal_env(args), start_new_session=True)
    os.close(child_fd)
    swapper.companions.append(proc.pid)
    while proc.poll() is None and not stop.is_set():
        if select.select([main_fd], [], [], 0.2)[0]:
            try:
                os.read(main_fd, 1 << 20)
            except OSError:
                break
    quit_in_pty(proc, main_fd)


def side_by_side(args: argparse.Namespace, tmp: Path, i: int, extra: list[str], ui: bool = True,
                 watched: bool = False) -> dict[str, Any]:
    """Two runs at the same time, one core each (so torch runs one thread in each), their cores swapped
    every --swap-every seconds: whatever slows the machine or one core slows both alike. `ui` False
    runs headless against headless: the method's own noise (the ratio should be 1); `watched` a
    headless run with `gantui watch` attached against one without. The ratio is of their rates over
    the wall-clock window in which both were past warm-up."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    ui = ui and not watched
    kind = "watched" if watched else "dashboard" if ui else "aa"
    head_out, dash_out = tmp / f"sbs-{kind}-headless-{i}", tmp / f"sbs-{kind}-{i}"
    # Headless gets steps to spare, so it runs for as long as the dashboard does; it is stopped after.
    head_argv = gantui_argv(args, head_out, extra) + ["--no-ui", "--steps", str(args.warmup + 3 * args.steps)]
    headless = subprocess.Popen(head_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=pinned(cores[1]))
    dash_argv = gantui_argv(args, dash_out, extra) + ([] if ui else ["--no-ui"])
    swapper: CoreSwapper | None = None
    stop_watcher = threading.Event()

    def started(pid: int) -> None:
        nonlocal swapper
        swapper = CoreSwapper((pid, headless.pid), cores, args.swap_every)
        swapper.start()
        if watched:
            threading.Thread(target=attach_watcher, args=(args, dash_out, swapper, stop_watcher), daemon=True).start()

    run_process(dash_argv, env=terminal_env(args), tty=ui, core=cores[0], on_start=started)
    stop_watcher.set()
    swapper.done.set()
    headless.send_signal(signal.SIGTERM)  # saves and exits 128 + 15
    if headless.wait() not in (0, 128 + signal.SIGTERM):
        raise SystemExit(f"bench: side-by-side headless run exited {headless.returncode}")
    dash_rows, head_rows = metric_rows(dash_out, args.warmup), metric_rows(head_out, args.warmup)
    start = max(dash_rows[0]["time"], head_rows[0]["time"])
    end = min(dash_rows[-1]["time"], head_rows[-1]["time"])
    dash, head = rate_between(dash_rows, args.batch_size, start, end), rate_between(head_rows, args.batch_size, start, end)
    name = {"watched": "headless + watcher", "dashboard": "dashboard", "aa": "headless (A/A)"}[kind]
    print(f"  side by side #{i + 1}: {name} {dash:,.0f}, headless {head:,.0f} img/s, ratio {dash / head:.3f},"
          f" {end - start:.0f} s in common", file=sys.stderr, flush=True)
    return {kind: dash, "headless": head, "ratio": dash / head, "window_s": end - start}


def alternate(repeats: int, **runs: Any) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for i in range(repeats):
        for name, run in runs.items():
            results[name].append(run(i))
            print(f"  {name} #{i + 1}: {results[name][-1]['images_per_s']:,.0f} img/s", file=sys.stderr, flush=True)
    return results


def median(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def pair_ratio(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    return statistics.median(x["images_per_s"] / y["images_per_s"] for x, y in zip(a, b))


def machine() -> dict[str, Any]:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    p = argparse.ArgumentParser(description="gantui vs a reference loop, and the dashboard's cost")
    p.add_argument("--steps", type=int, default=300, help="measured steps per run (default 300)")
    p.add_argument("--warmup", type=int, default=20, help="steps before measuring (default 20)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3, help="runs of each kind, alternated (default 3)")
    p.add_argument("--size", type=int, nargs=2, default=(120, 40), metavar=("COLS", "ROWS"),
                   help="terminal size for the dashboard runs (default 120 40)")
    p.add_argument("--gantui-args", default="", help="extra gantui flags, e.g. '--compile' or '--precision fp32'")
    p.add_argument("--skip-reference", action="store_true", help="only the dashboard-vs-headless comparison")
    p.add_argument("--side-by-side", type=int, default=None, metavar="N",
                   help="also run the dashboard and headless at once on a core each, N times (default: --repeats; "
                        "0 for none; needs 2 cores)")
    p.add_argument("--swap-every", type=float, default=2.0, metavar="S",
                   help="seconds between core swaps in the side-by-side runs (default 2)")
    p.add_argument("--aa", type=int, default=None, metavar="N",
                   help="also run headless against headless side by side, N times: the ratio the method gives "
                        "when there is no difference to find (default: as many as --side-by-side)")
    p.add_argument("--watched", type=int, default=0, metavar="N",
                   help="also N side-by-side pairs of a headless run with `gantui watch` attached (at --size) "
                        "against one without (default 0)")
    p.add_argument("--watcher", choices=("watch", "compare"), default="watch",
                   help="what --watched attaches: `gantui watch RUN` (default) or `gantui compare RUN`")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    extra = args.gantui_args.split()
    # Metrics rows every 10 steps (the default) give the steady-state clock enough ticks.
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runs: dict[str, Any] = {}
        if not args.skip_reference:
            runs["reference"] = lambda i: reference(args)
        runs["headless"] = lambda i: gantui(args, tmp, f"headless-{i}", False, extra)
        runs["dashboard"] = lambda i: gantui(args, tmp, f"dashboard-{i}", True, extra)
        print(f"bench: {args.repeats} x {list(runs)}, {args.steps} steps of {args.batch_size}", file=sys.stderr)
        results = alternate(args.repeats, **runs)
        pairs = args.repeats if args.side_by_side is None else args.side_by_side
        aa_pairs = pairs if args.aa is None else args.aa
        if len(os.sched_getaffinity(0)) < 2:
            pairs = aa_pairs = 0
        watched_pairs = args.watched if len(os.sched_getaffinity(0)) >= 2 else 0
        together, aa, watched = [], [], []
        for i in range(max(pairs, aa_pairs, watched_pairs)):  # the A/A runs interleaved with the real ones
            if i < pairs:
                together.append(side_by_side(args, tmp, i, extra))
            if i < watched_pairs:
                watched.append(side_by_side(args, tmp, i, extra, watched=True))
            if i < aa_pairs:
                aa.append(side_by_side(args, tmp, i, extra, ui=False))

    rate = {name: median(r, "images_per_s") for name, r in results.items()}
    summary = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": " ".join(sys.argv),
        "batch_size": args.batch_size, "steps": args.steps, "gantui_args": args.gantui_args,
        "images_per_s": rate,
        # Ratios are the median of the per-repeat ratios: each pair ran back to back.
        "headless_vs_reference": pair_ratio(results["headless"], results["reference"]) if "reference" in rate else None,
        "dashboard_vs_headless": pair_ratio(results["dashboard"], results["headless"]),
        "dashboard_vs_headless_side_by_side": statistics.median(r["ratio"] for r in together) if together else None,
        "side_by_side": together,
        "watched_vs_headless_side_by_side": statistics.median(r["ratio"] for r in watched) if watched else None,
        "watched_runs": watched,
        "watcher": args.watcher,
        "aa_side_by_side": statistics.median(r["ratio"] for r in aa) if aa else None,
        "aa_runs": aa,
        "first_preview_s": median(results["dashboard"], "first_preview_s"),
        "peak_rss_mb": {name: max(x["peak_rss_mb"] for x in r) for name, r in results.items()},
        "gpu_mem_mb": {name: median(r, "gpu_mem_mb") for name, r in results.items()},
        "runs": {name: [{k: v for k, v in x.items() if k != "stdout"} for x in r] for name, r in results.items()},
    }
    print(table(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


def ratios(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['ratio']:.3f}" for r in runs)


def table(s: dict[str, Any]) -> str:
    m = s["machine"]
    lines = [f"{s['date']}  {m.get('gpu') or m['cpu']}  ({m['cores']} cores)  torch {m['torch']}",
             f"batch {s['batch_size']}, {s['steps']} measured steps, median of the runs; {s['gantui_args'] or 'default flags'}",
             "", "| run | images/s | peak RSS | GPU memory |", "|---|---:|---:|---:|"]
    for name, rate in s["images_per_s"].items():
        gpu = s["gpu_mem_mb"].get(name)
        lines.append(f"| {name} | {rate:,.0f} | {s['peak_rss_mb'][name]:,.0f} MB | "
                     f"{'-' if gpu is None else f'{gpu:,.0f} MB'} |")
    lines.append("")
    if s["headless_vs_reference"] is not None:
        lines.append(f"gantui headless / reference loop: {s['headless_vs_reference']:.2f}x")
    lines.append(f"dashboard / headless:             {s['dashboard_vs_headless']:.3f}")
    if s["dashboard_vs_headless_side_by_side"] is not None:
        lines.append(f"  the same, side by side, 1 core each: {s['dashboard_vs_headless_side_by_side']:.3f}"
                     f"  (runs: {ratios(s['side_by_side'])})")
    if s.get("watched_vs_headless_side_by_side") is not None:
        lines.append(f"  headless + gantui {s.get('watcher', 'watch')} / headless:  {s['watched_vs_headless_side_by_side']:.3f}"
                     f"  (runs: {ratios(s['watched_runs'])}; the watcher on the watched run's core)")
    if s.get("aa_side_by_side") is not None:
        lines.append(f"  headless / headless, the same way:   {s['aa_side_by_side']:.3f}"
                     f"  (runs: {ratios(s['aa_runs'])}; the method's noise)")
    first = s["first_preview_s"]
    lines.append(f"first frame with a preview:       {'-' if first is None else f'{first:.1f} s'}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
