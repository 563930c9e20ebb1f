"""A torchrun job: two processes on the CPU (gloo), each test in fresh subprocesses."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gantui.engine.checkpoint import load_checkpoint
from support import (NEVER, Peer, gantui, gantui_traceback, metrics_rows, popen, read_until, refused, run_process,
                     torchrun, wait_for_step, wait_until, write_idx, write_images)

QUICK = ["--batch-size", "16", "--device", "cpu", "--log-every", "5", "--eval-every", "0"]


def rows(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "event" not in r]


def status(out: Path) -> dict:
    return json.loads((out / "status.json").read_text())


def two_machines(*args: str, env=lambda k: {}) -> list[subprocess.Popen]:
    """Two launchers as two machines of one process each (torchrun's static rendezvous);
    `env(k)`: what machine k's environment adds."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [popen(torchrun(*args, nproc=1, launcher=(
        "--nnodes", "2", "--node-rank", str(k), "--master-addr", "127.0.0.1", "--master-port", str(port))),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env(k)}) for k in (0, 1)]


def outputs_of(nodes: list[subprocess.Popen]) -> list[tuple[str, str]]:
    try:
        return [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()


def test_two_ranks_train_one_run_and_resume_it_exactly(tmp_path, capsys):
    whole, half = tmp_path / "whole", tmp_path / "half"
    done = run_process(torchrun("--steps", "20", "--save-every", "10", "--out", str(whole), *QUICK),
                       capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("gantui: training on cpu") == 1  # rank 0 prints; the other trains silently
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole"]  # one run directory
    got = rows(whole)
    assert [r["step"] for r in got] == [5, 10, 15, 20]
    assert all(len(r["rank_images_per_s"]) == 2 and r["images_per_s"] == pytest.approx(sum(r["rank_images_per_s"]))
               for r in got)
    state = load_checkpoint(whole)
    assert state["step"] == 20 and state["world_size"] == 2 and len(state["ranks"]) == 2
    assert not (state["ranks"][0]["torch"] == state["ranks"][1]["torch"]).all()  # seed + rank
    assert status(whole)["state"] == "done"

    first = run_process(torchrun("--steps", "10", "--save-every", "10", "--out", str(half), *QUICK),
                        capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_process(torchrun("--resume", str(half), "--steps", "20"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = {r["step"]: r for r in rows(half)}
    for step in (15, 20):  # fresh processes, the same world size: the same numbers
        for key in ("loss_g", "loss_d", "grad_g", "grad_d"):
            assert resumed[step][key] == pytest.approx(rows_at(got, step)[key], rel=1e-5, abs=1e-6), (step, key)

    # another number of processes: one line, exit 2, on every path
    alone = refused(capsys, "--resume", str(half), "--steps", "30", "--no-ui")
    assert alone.strip().count("\n") == 0 and "written by 2 processes, resumed by 1: resume it with --nproc 2" in alone


def rows_at(got: list[dict], step: int) -> dict:
    return next(r for r in got if r["step"] == step)


def test_a_watchers_pause_holds_every_rank_and_sigterm_stops_them_at_one_step(tmp_path):
    out = tmp_path / "run"
    job = popen(torchrun("--steps", NEVER, "--out", str(out), *QUICK), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_step(out, 10, timeout=180)
        peer = Peer(out)
        peer.read(), peer.read()  # hello, snapshot
        peer.cmd("pause")
        paused = peer.until(lambda m: m["type"] == "paused" and m["paused"], timeout=120)
        wait_until(lambda: status(out)["state"] == "paused", what="status.json to say paused")
        time.sleep(1.0)  # a window, not a wait: no row may come in it (the writer flushes rows once a second)
        assert rows(out)[-1]["step"] <= paused["step"]
        peer.cmd("resume")
        peer.until(lambda m: m["type"] == "paused" and not m["paused"], timeout=60)
        wait_for_step(out, paused["step"] + 5, timeout=120)  # every rank trains again (they step together)
        os.kill(job.pid, signal.SIGTERM)  # torchrun passes it to every rank
        _, err = job.communicate(timeout=180)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    final = status(out)
    assert final["state"] == "stopped", err[-2000:]
    state = load_checkpoint(out)
    assert state["step"] == final["step"] and state["step"] % 5 == 0  # one agreed step, a metrics boundary
    assert not gantui_traceback(err), err[-3000:]  # torchrun's launcher prints a traceback of its own on a signal


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_nproc_is_one_line_and_exit_2(capsys, value):
    err = refused(capsys, "--nproc", value, "--no-ui")
    assert err.count("\n") == 1 and "--nproc" in err


def test_gantui_nproc_launches_the_job_and_a_signal_ends_it_saved(tmp_path):
    out = tmp_path / "run"
    job = popen([sys.executable, "-m", "gantui", "--nproc", "2", "--steps", NEVER, "--out", str(out),
                *QUICK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(out, 10, timeout=180)
        job.send_signal(signal.SIGINT)  # Ctrl-C in its terminal
        _, err = job.communicate(timeout=180)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "Traceback" not in err
    final = status(out)
    assert final["state"] == "stopped" and load_checkpoint(out)["step"] == final["step"]


def worker_of_rank(agent: int, rank: int) -> int:
    """The pid of `rank` among torchrun's workers (children of its agent)."""
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            if int((pid / "stat").read_text().rsplit(")", 1)[1].split()[1]) != agent:
                continue
            env = (pid / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if f"RANK={rank}".encode() in env:
            return int(pid.name)
    raise AssertionError(f"no worker of rank {rank}")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_a_killed_rank_is_restarted_by_torchrun_and_the_run_resumes_from_its_checkpoint(tmp_path):
    """A budget the job cannot reach before the kill lands, however fast the machine; once the
    restarted round trains past its checkpoint, `gantui stop` ends it, saved, exit 0."""
    out = tmp_path / "run"
    job = popen(torchrun("--steps", NEVER, "--save-every", "10", "--out", str(out), *QUICK,
                         launcher=("--standalone", "--max-restarts", "1")), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_step(out, 15, timeout=180)
        os.kill(worker_of_rank(job.pid, 1), signal.SIGKILL)
        deadline = time.monotonic() + 300
        while not (resumed := [e for e in metrics_rows(out) if e.get("event") == "resume"]):
            assert time.monotonic() < deadline and job.poll() is None, "the job did not resume"
            time.sleep(0.1)
        wait_for_step(out, resumed[0]["step"] + 5, timeout=180)  # the restarted round trains on
        stopped = gantui("stop", str(out))
        _, err = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert stopped.returncode == 0 and job.returncode == 0, err[-3000:]
    assert "restart 1 of this torchrun job: resuming" in err
    assert resumed[0]["step"] >= 10 and resumed[0]["step"] % 10 == 0  # from the last checkpoint
    final = status(out)
    assert final["state"] == "stopped" and load_checkpoint(out)["step"] == final["step"] > resumed[0]["step"]


def test_two_launchers_as_two_machines_train_one_run_that_gantui_stop_ends(tmp_path):
    out = tmp_path / "run"
    nodes = two_machines("--steps", NEVER, "--out", str(out), *QUICK)
    try:
        wait_for_step(out, 10, timeout=180)
        stopped = run_process([sys.executable, "-m", "gantui", "stop", str(out)], capture_output=True, text=True,
                              timeout=300)
    finally:
        outputs = outputs_of(nodes)
    assert stopped.returncode == 0 and stopped.stdout.startswith("stopped run at step"), stopped.stderr
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "gantui: training on cpu" in outputs[0][0] and "gantui: training" not in outputs[1][0]  # rank 0's machine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert all(len(r["rank_images_per_s"]) == 2 for r in rows(out))
    state, final = load_checkpoint(out), status(out)
    assert state["world_size"] == 2 and final["state"] == "stopped" and state["step"] == final["step"]


def test_the_hardest_recipe_trains_under_two_processes(tmp_path):
    """WGAN-GP (the penalty's double backward through the raw D, beside D's DDP wrapper), two D
    steps a G step, EMA and a conditional G and D: every rank steps together to the end."""
    out = tmp_path / "run"
    done = run_process(torchrun("--steps", "4", "--log-every", "2", "--out", str(out), *QUICK[:4], "--eval-every",
                                "0", "--loss", "wgan-gp", "--d-steps", "2", "--ema", "0.99", "--conditional"),
                       capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = rows(out)
    assert [r["step"] for r in got] == [2, 4]
    assert all(r["loss_d"] is not None and r["loss_g"] is not None for r in got)
    assert status(out)["state"] == "done"


# The other recipes' DDP wrappings, in one fresh process: a process group of one (gloo), and the
# networks wrapped as a torchrun job wraps them (`ranks=2` is what asks GAN for its wrappers).
WRAPPED_ALONE = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from gantui.cli.resolve import build_config
    from gantui.cli.train import train_parser
    from gantui.engine.batches import BatchStream
    from gantui.engine.gan import GAN
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    recipes = [r.split() for r in sys.argv[2:]]
    for recipe in recipes:
        args = train_parser().parse_args(["--device", "cpu", "--batch-size", "16", "--out", sys.argv[1], *recipe])
        config, _ = build_config(args)
        torch.manual_seed(0)
        gan = GAN(config, torch.device("cpu"), bf16=False, classes=10, ranks=2)
        wrapped = [getattr(m, "_orig_mod", m) for m in (gan.G_fwd, gan.D_fwd)]
        assert all(isinstance(m, DDP) for m in wrapped), recipe
        before = [p.detach().clone() for p in (*gan.G.parameters(), *gan.D.parameters())]
        batches = BatchStream(torch.rand(128, 1, 28, 28) * 2 - 1, None, 16, 0)  # none is conditional
        for _ in range(2):
            gan.step(batches)
        figures = gan.read()
        assert all(v == v and abs(v) < 1e6 for v in figures.values()), (recipe, figures)
        after = [*gan.G.parameters(), *gan.D.parameters()]
        assert all(not torch.equal(a, b) for a, b in zip(before, after) if a.numel() > 1), recipe
        print("trained", " ".join(recipe))
    dist.destroy_process_group()
""")


def test_every_other_recipe_trains_through_its_ddp_wrappers(tmp_path):
    """Spectral norm, R1's lazy double backward, DiffAugment, uniform noise, LSGAN, minimax, and
    torch.compile around the wrappers: each steps through DDP (a group of one: the wrapping, the
    reducer's hooks and their bookkeeping are what fail; the hardest recipe runs on two ranks above)."""
    recipes = ["--loss hinge --r1 1 --spectral-norm --diffaug color,translation --noise uniform",
               "--loss lsgan --lr-g 1e-4", "--loss minimax --compile"]
    if importlib.util.find_spec("torch._dynamo") is None:
        recipes.pop()
    done = run_process([sys.executable, "-c", WRAPPED_ALONE, str(tmp_path / "run"), *recipes], capture_output=True,
                       text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"trained {recipe}" for recipe in recipes]


def test_sync_bn_in_one_process_is_one_line_and_exit_2(capsys):
    err = refused(capsys, "--sync-bn", "--no-ui", "--device", "cpu")
    assert err.count("\n") == 1 and "--sync-bn is for several processes" in err


def test_sync_bn_on_the_cpu_is_refused_on_every_rank(tmp_path):
    done = run_process(torchrun("--sync-bn", "--steps", "2", "--out", str(tmp_path / "run"), *QUICK),
                       capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "gantui: --sync-bn needs CUDA" in done.stderr
    assert not gantui_traceback(done.stderr), done.stderr[-3000:]


def test_a_folder_of_images_trains_under_two_processes_with_one_cache(tmp_path):
    write_images(tmp_path / "images", 300, size=(40, 36))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = run_process(torchrun("--data", str(tmp_path / "images"), "--image-size", "32", "--steps", "4",
                                "--log-every", "2", "--out", str(tmp_path / "run"), *QUICK[:4], "--eval-every", "0"),
                       capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("decoded and cached") == 1, done.stdout  # rank 0 says it; the others say nothing
    assert len({p.name.split(".")[0] for p in (tmp_path / "cache" / "gantui" / "folders").iterdir()}) == 1  # one key
    assert [r["step"] for r in rows(tmp_path / "run")] == [2, 4]


def test_two_machines_each_cache_their_folder_and_roll_back_together_from_rank_0s_checkpoint(tmp_path):
    """Two launchers as two machines, each with a cache of its own: each machine's first process
    decodes the folder; a NaN at step 7 rolls both back to rank 0's checkpoint of step 5."""
    write_images(tmp_path / "images", 300, size=(40, 36))
    out = tmp_path / "run"
    nodes = two_machines("--data", str(tmp_path / "images"), "--image-size", "32", "--steps", "15", "--save-every",
                         "5", "--fault-nan-step", "7", "--out", str(out), *QUICK,
                         env=lambda k: {"XDG_CACHE_HOME": str(tmp_path / f"cache{k}")})
    outputs = outputs_of(nodes)
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    for k in (0, 1):  # each machine's own cache
        assert len(list((tmp_path / f"cache{k}" / "gantui" / "folders").iterdir())) >= 1
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rollback = [e for e in events if e.get("event") == "rollback"]
    assert len(rollback) == 1 and rollback[0]["step"] == 10 and rollback[0]["to_step"] == 5
    assert status(out)["state"] == "done" and load_checkpoint(out)["step"] == 15
    assert [r["step"] for r in rows(out)][-2:] == [10, 15] and all(len(r["rank_images_per_s"]) == 2 for r in rows(out))


def test_each_machine_fetches_the_dataset_onto_its_own_disk_and_one_that_cannot_stops_the_job(tmp_path):
    """Two launchers as two machines with a cache of their own: rank 0's machine has the dataset's
    files, the other none and no network: that machine's line, on both, exit 2 on both."""
    write_idx(tmp_path / "cache0" / "gantui" / "datasets" / "FashionMNIST" / "raw")
    offline = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    nodes = two_machines("--dataset", "fashion-mnist", "--steps", "4", "--out", str(tmp_path / "run"), *QUICK,
                         env=lambda k: {**offline, "XDG_CACHE_HOME": str(tmp_path / f"cache{k}")})
    outputs = outputs_of(nodes)
    line = "gantui: rank 1's machine: fashion-mnist: not found and not downloaded"
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode != 0 and err.count(line) == 1, err[-2000:]
        assert not gantui_traceback(err), err[-3000:]
    assert str(tmp_path / "cache1" / "gantui" / "datasets" / "FashionMNIST" / "raw") in outputs[1][1]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_under_plain_torchrun_ui_has_rank_0_draw_the_dashboard_and_q_stops_every_rank_saved(tmp_path):
    import pty

    out = tmp_path / "run"
    main, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    job = popen(torchrun("--ui", "--steps", NEVER, "--out", str(out), *QUICK), stdin=child, stdout=child,
                stderr=child, env=env, start_new_session=True)
    os.close(child)
    screen = b""
    try:
        wait_for_step(out, 10, timeout=180)
        screen += read_until(main, lambda shown: b"TRAINING" in shown and b"batch 32 (2" in shown)
        os.write(main, b"q")  # the dashboard, with the global batch, is up: q
        screen += read_until(main, lambda _: job.poll() is not None, timeout=120)
        assert job.wait(timeout=5) == 0, screen[-3000:]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        os.close(main)
    final = status(out)
    assert final["state"] == "stopped" and load_checkpoint(out)["step"] == final["step"]
    assert load_checkpoint(out)["world_size"] == 2


def test_ui_and_no_ui_together_are_one_line_and_exit_2(capsys):
    assert refused(capsys, "--ui", "--no-ui").strip() == "gantui: error: --ui and --no-ui: choose one"


def test_a_jobs_metrics_rows_follow_rank_0s_clock(tmp_path):
    """As on CUDA, where the intervals follow the clock (the hidden flag asks for it on the CPU):
    rank 0's clock names the step of each next row, every rank takes it there."""
    out = tmp_path / "run"
    done = run_process(torchrun("--clock-intervals", "--steps", "40", "--out", str(out), *QUICK[:4],
                                "--eval-every", "0"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "by the clock: log every 0.5 s, sample every 60 s, save every 600 s" in done.stdout
    got = rows(out)
    steps, times = [r["step"] for r in got], [r["time"] for r in got]
    assert steps[0] == 10 and steps[-1] == 40 and len(steps) >= 4  # the first by steps, then rank 0's lead
    gaps = sorted(b - a for a, b in zip(times[1:-1], times[2:-1]))
    assert 0.25 < gaps[len(gaps) // 2] < 1.5, (steps, gaps)  # half a second apart, whatever the step rate
    assert all(len(r["rank_images_per_s"]) == 2 for r in got)
    assert status(out)["state"] == "done" and load_checkpoint(out)["step"] == 40
