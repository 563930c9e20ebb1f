"""`gantui compare`: runs of different recipes side by side, one of them still training, as JSON
lines, Markdown and a table; the differences named and nothing else; bad input in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from gantui.run.rundir import RunDir
from support import FAST, gantui, popen, refused, start, wait_until

SHORT = ("--steps", "6", "--batch-size", "8", "--log-every", "2", "--eval-n", "100")


def test_three_runs_of_different_recipes_compared_one_of_them_live(tmp_path):
    done = [popen([sys.executable, "-m", "gantui", "--no-ui", *FAST, *SHORT, "--out", str(tmp_path / name), *recipe],
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for name, recipe in (("ns", ("--eval-every", "3")),
                                 ("hinge", ("--eval-every", "3", "--loss", "hinge", "--spectral-norm")))]
    live = start(tmp_path / "lsgan", "--loss", "lsgan", "--steps", "100000", "--batch-size", "8", "--eval-every", "0")
    try:
        for proc in done:
            assert proc.wait(300) == 0, proc.stderr.read()
        wait_until(lambda: RunDir(tmp_path / "lsgan").read_status().get("state") == "training", 120, "the live run")
        shown = gantui("compare", *(str(tmp_path / n) for n in ("ns", "hinge", "lsgan")), "--json")
        assert shown.returncode == 0, shown.stderr
        entries = {e["name"]: e for e in map(json.loads, shown.stdout.splitlines())}
        assert list(entries) == ["ns", "hinge", "lsgan"]
        for name in ("ns", "hinge"):
            quality = [r for r in RunDir(tmp_path / name).read_metrics() if r.get("event") == "quality"]
            fids = [r["fid"] for r in quality]
            assert len(fids) == 2  # at steps 3 and 6
            assert (entries[name]["state"], entries[name]["step"]) == ("done", 6)
            assert entries[name]["best_fid"] == min(fids) and entries[name]["last_fid"] == fids[-1]
            assert entries[name]["images_per_s"] > 0
        assert entries["lsgan"]["state"] == "training" and entries["lsgan"]["best_fid"] is None
        # only what differs, with each run's value; the same flags (batch size, seed...) are not named
        assert [entries[n]["diff"]["loss"] for n in entries] == ["ns", "hinge", "lsgan"]
        assert [entries[n]["diff"]["spectral_norm"] for n in entries] == [False, True, False]
        assert set(entries["ns"]["diff"]) == {"loss", "spectral_norm", "eval_every", "steps"}

        table = gantui("compare", str(tmp_path / "ns"), str(tmp_path / "hinge"), "--markdown").stdout
        header, rule, *rows = table.split("\n\n")[0].splitlines()
        assert header.startswith("| run | state | step | best FID |") and "| loss |" in header and "seed" not in header
        best = min(("ns", "hinge"), key=lambda n: entries[n]["best_fid"])
        assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [n + " *" * (n == best) for n in ("ns", "hinge")]
    finally:
        live.terminate()
        live.wait(120)


def test_a_directory_of_runs_is_every_run_in_it(tmp_path):
    """A sweep's directory (its trials/) or any folder of runs; --last N the newest N."""
    from gantui.run.compare import runs_named

    for age, name in enumerate(("001-a", "002-b")):
        run = RunDir(tmp_path / "sweep" / "trials" / name).create()
        run.write_config({"dataset": "mnist", "loss": name})
        os.utime(run.path, (1e9 - age, 1e9 - age))  # 001-a the newer
    assert [r.path.name for r in runs_named([str(tmp_path / "sweep")])] == ["001-a", "002-b"]
    assert [r.path.name for r in runs_named([], last=1, root=tmp_path / "sweep" / "trials")] == ["001-a"]


def test_compare_refuses_in_one_line(capsys, tmp_path):
    assert "name the runs to compare" in refused(capsys, "compare")
    assert "--last must be a positive integer" in refused(capsys, "compare", "--last", "0")
    assert "compared in the terminal view only" in refused(capsys, "compare", "gpu-box:runs/a", "--json")
    assert f"no run at {tmp_path / 'nope'}" in refused(capsys, "compare", str(tmp_path / "nope"))
    assert "no runs in" in refused(capsys, "compare", str(tmp_path))
    assert f"no runs under {tmp_path}" in refused(capsys, "compare", "--last", "3", "--root", str(tmp_path))


def test_fids_of_other_datasets_or_image_counts_mark_no_run_and_a_loops_settings_stand_apart(tmp_path):
    from gantui.run.compare import compare, text

    def made(name: str, config: dict, fid: float, n: int) -> RunDir:
        run = RunDir(tmp_path / name).create()
        run.write_config(config)
        rows = [{"step": 1, "loss_d": 1.0, "images_per_s": 10.0}, {"event": "quality", "step": 1, "fid": fid, "fid_n": n}]
        run.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return run

    a = made("a", {"dataset": "mnist", "lr": 2e-4}, 30.0, 2000)
    b = made("b", {"dataset": "mnist", "lr": 1e-4}, 20.0, 500)  # fewer images: a higher FID for the same G
    shown = text(compare([a, b]))
    assert "*" not in shown and "no run marked" in shown
    loop = made("loop", {"producer": "loop", "config": {"lr": 0.1}, "capabilities": {"recipe": False}}, 25.0, 2000)
    entries = compare([a, loop])
    assert {"lr", "config.lr"} <= set(entries[0].diff) and entries[1].diff["config.lr"] == 0.1
    assert entries[0].diff["config.lr"] is None and entries[1].diff["lr"] is None
