from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from support import gantui, refused

METRIC_ROW_KEYS = {"step", "epoch", "loss_d", "loss_g", "d_real", "d_fake", "acc_real", "acc_fake",
                   "images_per_s", "time"}


def test_headless_run_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    result = gantui("--no-ui", "--steps", "12", "--batch-size", "16", "--log-every", "4", "--sample-every", "6",
                    "--save-every", "6", "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("step ") for line in lines) == 3
    assert lines[1] == "information: mnist 1x28x28: G 2,305,472 parameters, D 212,865"
    assert "D(G(z))" in lines[2] and "img/s" in lines[2] and "ETA" in lines[2]
    assert lines[-1].startswith("gantui: done at step 12")

    config = json.loads((out / "config.json").read_text())
    assert config["batch_size"] == 16 and config["steps"] == 12 and config["seed"] == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "event" not in r] == [4, 8, 12]
    assert all(METRIC_ROW_KEYS <= r.keys() for r in rows if "event" not in r)
    quality = [r for r in rows if r.get("event") == "quality"]  # the finished run's figures
    assert [r["step"] for r in quality] == [12] and quality[0]["fid_n"] == 2000
    assert "quality at step 12 | FID" in result.stdout
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-00000006.png", "step-00000012.png"]
    assert Image.open(out / "samples" / "step-00000006.png").size[0] > 200  # an 8x8 grid
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")) == [
        "last.pt", "step-00000000.pt", "step-00000006.pt", "step-00000012.pt"]

    png, npy = tmp_path / "grid.png", tmp_path / "digits.npy"
    assert gantui("sample", str(out), "--n", "10", "--out", str(png)).returncode == 0
    assert Image.open(png).size[0] > 28 * 3
    assert gantui("sample", str(out / "checkpoints" / "last.pt"), "--n", "5", "--out", str(npy)).returncode == 0
    images = np.load(npy)
    assert images.shape == (5, 28, 28) and images.dtype == np.uint8


def test_not_a_terminal_falls_back_to_headless(tmp_path):
    result = gantui("--steps", "2", "--batch-size", "8", "--log-every", "1", "--out", str(tmp_path / "r"))
    assert result.returncode == 0
    assert "running headless" in result.stderr
    assert "\x1b[" not in result.stdout  # no escape codes in the log


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--lr", "-1"], "--lr must be between 0 and 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--resume", "/nonexistent/run"], "no such file or directory"),
    (["--epochs", "many"], "invalid int value"),
    (["sample", "/nonexistent.pt", "--out", "x.png"], "no such file or directory"),
    (["sample", "/nonexistent.pt", "--out", "x.jpg"], "use a .png or .npy"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, needle):
    err = refused(capsys, "--no-ui", *args) if args[0] != "sample" else refused(capsys, *args)
    assert len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize("args, needle", [
    (["--no-ui", "--batch-size", "0"], "--batch-size must be a positive integer"),  # cli/train.py
    (["sample", "/nonexistent.pt", "--out", "x.jpg"], "use a .png or .npy"),  # cli/sample.py
    (["gif", "/nonexistent", "--out", "x.mp4"], "use a .gif or .webp file name"),  # cli/film.py
    (["evaluator", "fit", "--dataset", "mnist"], "mnist's evaluator ships with gantui"),  # cli/scoring.py
    (["stop", "/nonexistent"], "/nonexistent"),  # cli/commands.py
], ids=["train", "sample", "film", "scoring", "commands"])
def test_each_entry_point_refuses_in_one_line_in_a_fresh_process(args, needle):
    """The canaries: the refusals above run in this process (main(argv)); one of each command module
    runs as a user runs it, to show that no traceback escapes `python -m gantui`."""
    result = gantui(*args, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_a_fresh_run_refuses_a_directory_holding_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["--no-ui", "--steps", "2", "--batch-size", "8", "--log-every", "1", "--eval-every", "0", "--out", str(out)]
    assert gantui(*tiny).returncode == 0
    before = (out / "metrics.jsonl").read_bytes(), sorted(p.name for p in (out / "checkpoints").iterdir())

    again = refused(capsys, *tiny)
    assert len(again.strip().splitlines()) == 1, again
    assert f"--out {out} already holds a run: continue it with --resume {out}" in again
    assert ((out / "metrics.jsonl").read_bytes(), sorted(p.name for p in (out / "checkpoints").iterdir())) == before

    elsewhere = gantui(*tiny[:-2], "--resume", str(out), "--out", str(tmp_path / "other"), "--steps", "3")
    assert elsewhere.returncode == 0, elsewhere.stderr  # a resume may continue into a new directory
    assert gantui(*tiny[:-2], "--resume", str(out), "--steps", "3").returncode == 0


def test_engine_and_headless_import_without_ui_libraries():
    code = ("import sys, gantui.cli, gantui.headless, gantui.engine.trainer, gantui.engine.sample;"
            "bad = [m for m in ('textual', 'rich', 'rich_pixels') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_of_gantui_imports_one_that_imports_it_back():
    """No import circle, lazy imports inside functions included: every `import` and `from ... import`
    of a gantui module, as a graph, has no cycle (a depth-first search)."""
    import ast
    from pathlib import Path

    import gantui as package

    root = Path(package.__file__).parent
    modules = {".".join(f.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): f
               for f in root.rglob("*.py")}
    imports = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            else:
                continue
            imports[name] |= {other for other in found if other in modules and other != name}
    done: set[str] = set()

    def circle(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        for other in sorted(imports[name]):
            if found := circle(other, [*path, name]):
                return found
        done.add(name)
        return None

    assert "gantui.cli.resolve" in imports["gantui.cli.ranks"]  # the graph is read (ranks' set-up)
    for name in modules:
        assert circle(name, []) is None, " -> ".join(circle(name, []))


def test_what_a_user_cannot_ask_for_is_one_gantui_error_reported_in_one_place(tmp_path, monkeypatch, capsys):
    """Every user error is a GantuiError, and `main` alone turns one into a line and exit 2,
    whichever command raised it."""
    import gantui.cli.commands
    import gantui.cli.sample
    from gantui.common import GantuiError
    from gantui.config import ConfigError
    from gantui.datasets import DatasetError
    from gantui.engine.checkpoint import CheckpointError
    from gantui.engine.device import DeviceError
    from gantui.evaluation.classifier import EvaluatorError
    from gantui.run.rundir import RunDirBusy
    from gantui.run.runs import RunNotFound

    for error in (ConfigError, DatasetError, CheckpointError, DeviceError, EvaluatorError, RunDirBusy, RunNotFound):
        assert issubclass(error, GantuiError), error

    def sample(argv):
        raise DeviceError(f"--device {argv[-1]}: no such device here")

    monkeypatch.setattr(gantui.cli.sample, "sample", sample)
    assert refused(capsys, "sample", "cuda:7") == "gantui: error: --device cuda:7: no such device here\n"
    with pytest.raises(RunNotFound):  # the command itself leaves it to main...
        gantui.cli.commands.stop(["no-such-run", "--root", str(tmp_path)])
    said = refused(capsys, "stop", "no-such-run", "--root", str(tmp_path))  # ...which says it, in one line
    assert said.startswith("gantui: error: no run") and said.count("\n") == 1


def test_the_flags_come_from_configs_fields_with_metavars_n_x_and_dir(capsys):
    """Each setting of Config that is a flag is declared once, in its field: the parser's type,
    metavar and help come from there (integers N, numbers X, folders DIR), defaults after."""
    import dataclasses
    import re

    from gantui.cli import main
    from gantui.config import Config
    from gantui.penalties import PENALTIES

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0
    usage = shown.split("\n\n")[0]
    for flag, metavar in (("--batch-size", "N"), ("--lr", "X"), ("--out", "DIR"), ("--data-root", "DIR"),
                          ("--loss", "NAME"), ("--resume", "PATH"), ("--nproc", "N")):
        assert f"[{flag} {metavar}]" in usage, (flag, usage)
    assert not re.search(r"--[a-z-]+ [A-Z]+_[A-Z_]+", shown), shown  # no BATCH_SIZE, EVAL_EVERY...
    flags = {f.name for f in dataclasses.fields(Config) if "help" in f.metadata} | set(PENALTIES)
    assert {"batch_size", "loss", "r1", "gp", "compile", "resume"} <= flags
    for name in flags - {"fault_nan_step"}:  # the hidden test hook
        assert f"--{name.replace('_', '-')}" in shown, name
    assert "--fault-nan-step" not in shown
    said = " ".join(shown.split())  # as wide as the terminal
    assert "--batch-size N images per step and process (default 64)" in said
    assert "--seed N random seed (default 0)" in said  # a zero default is still said


def test_a_runs_config_json_given_back_recreates_its_settings_and_flags_change_them(tmp_path, capsys):
    """`gantui --config RUN` (its config.json, or its directory): the run's resolved settings for a
    new run, less where it lived; the flags given change them. What is not a run's settings is one
    line."""
    import json

    from gantui.cli.resolve import build_config
    from gantui.cli.train import train_parser

    first = tmp_path / "first"
    made = gantui("--no-ui", "--steps", "2", "--batch-size", "8", "--log-every", "1", "--eval-every", "0",
                  "--loss", "hinge", "--spectral-norm", "--lr-g", "1e-4", "--ema", "0.99", "--seed", "5",
                  "--out", str(first))
    assert made.returncode == 0, made.stderr
    written = json.loads((first / "config.json").read_text())
    for given in (first, first / "config.json"):
        args = train_parser().parse_args(["--config", str(given), "--steps", "3", "--out", str(tmp_path / "again")])
        config, state = build_config(args)
        assert state is None and config.out == str(tmp_path / "again") and config.steps == 3
        again = config.to_dict()
        for key, value in written.items():
            if key in again and key not in ("out", "steps", "timed"):
                assert again[key] == value, key
        assert (again["loss"], again["spectral_norm"], again["lr_g"], again["ema"], again["seed"]) == \
               ("hinge", True, 1e-4, 0.99, 5)

    def given_back(*flags: str):
        return build_config(train_parser().parse_args(["--config", str(first), *flags, "--out", str(tmp_path / "b")]))[0]

    # what the first run's flags implied is implied again by the flags given now, as on a fresh run
    assert given_back("--loss", "wgan-gp").penalties["gp"] == 10.0 and given_back().penalties["gp"] == 0.0
    assert (given_back("--lr", "1e-3").lr_d, given_back("--lr", "1e-3").lr_g) == (1e-3, 1e-4)  # lr_g was given
    assert given_back("--no-spectral-norm").spectral_norm is False  # a boolean it had on can be turned off
    folder = given_back("--data", str(tmp_path))
    assert (folder.dataset, folder.image_size, folder.channels) == ("folder", None, None)  # the new images decide

    # a torchrun restart resumes the job's run with its own settings, whatever --config said
    from gantui.cli.ranks import restarted

    args = train_parser().parse_args(["--config", str(first), "--out", str(first)])
    os.environ["TORCHELASTIC_RESTART_COUNT"] = "1"
    try:
        restarted(args)
    finally:
        del os.environ["TORCHELASTIC_RESTART_COUNT"]
    assert args.config is None and args.resume and args.out is None
    capsys.readouterr()

    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "config.json").write_text(json.dumps({"producer": "loop", "config": {"lr": 0.1}}))
    (tmp_path / "notes.txt").write_text("lr = 0.1\n")
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "edited.json").write_text(json.dumps({**written, "seed": "one"}))
    for given, said in ((loop, "a loop's run: its settings are the loop's own"),
                        (tmp_path / "notes.txt", "not a run's config.json (not JSON)"),
                        (tmp_path / "empty.json", "not a run's config.json (no dataset)"),
                        (tmp_path / "edited.json", "a setting of the wrong type"),
                        (tmp_path, "no config.json there"),
                        (tmp_path / "nowhere", "No such file or directory")):
        err = refused(capsys, "--no-ui", "--config", str(given))
        assert err.count("\n") == 1 and f"--config {given}: {said}" in err, err
    err = refused(capsys, "--no-ui", "--config", str(first), "--resume", str(first))
    assert "--config and --resume: choose one" in err
