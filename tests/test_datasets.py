"""Datasets beyond the bundled MNIST: torchvision's files read from --data-root, a download that
cannot happen (offline, a stalled server) refused in one line, a Quality pane that says why it is off."""
from __future__ import annotations

import json
import socket
import time

import hashlib

import numpy as np
import pytest

from gantui.datasets import DATASETS
from support import gantui, make_app, wait_for, write_idx


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test's own user cache (evaluators, folders): the subprocesses inherit it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_an_mnist_like_dataset_trains_from_its_files_without_quality(tmp_path):
    write_idx(tmp_path / "data" / "FashionMNIST" / "raw")
    out = tmp_path / "run"
    done = gantui("--no-ui", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "data"), "--out", str(out),
                  "--device", "cpu", "--batch-size", "16", "--steps", "6", "--log-every", "2", "--conditional")
    assert done.returncode == 0, done.stderr
    assert "quality evaluation is off: no evaluator for fashion-mnist" in done.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss_d" in r] == [2, 4, 6]
    assert not any(r.get("event") == "quality" for r in rows)
    refused = gantui("eval", str(out))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "no evaluator for fashion-mnist" in refused.stderr and "Traceback" not in refused.stderr


def test_offline_a_dataset_is_refused_in_one_line_naming_its_files(tmp_path):
    """What happens on a machine without a network, made certain on one that has it: the proxy
    refuses every connection."""
    start = time.monotonic()
    proxy = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    done = gantui("--no-ui", "--dataset", "kmnist", "--data-root", str(tmp_path / "data"), "--out",
                  str(tmp_path / "run"), "--steps", "5", env=proxy)
    assert time.monotonic() - start < 30
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    line = done.stderr.strip()
    assert "kmnist: not found and not downloaded" in line and "Traceback" not in line
    assert all(name in line for name in DATASETS["kmnist"].files)
    assert str(tmp_path / "data" / "KMNIST" / "raw") in line and "--data-root" in line
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_stalled_download_gives_up_within_30_s(tmp_path):
    stalled = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)
    proxy = f"http://127.0.0.1:{stalled.getsockname()[1]}"
    start = time.monotonic()
    try:
        done = gantui("--no-ui", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "data"), "--out",
                      str(tmp_path / "run"), env={"http_proxy": proxy, "https_proxy": proxy}, timeout=60)
    finally:
        stalled.close()
    assert time.monotonic() - start < 30
    assert done.returncode == 2 and "fashion-mnist: not found and not downloaded" in done.stderr
    assert "timed out" in done.stderr and len(done.stderr.strip().splitlines()) == 1


async def test_the_quality_pane_says_why_it_is_off(tiny_config, tmp_path):
    write_idx(tmp_path / "data" / "KMNIST" / "raw")
    app = make_app(tiny_config(dataset="kmnist", data_root=str(tmp_path / "data"), steps=1_000_000))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "evaluation off" in str(app.quality_pane.header.render()))
        why = str(app.quality_pane.verdict.render())
        assert "no evaluator for kmnist: fit one with `gantui evaluator fit --dataset kmnist`" in why
        await pilot.press("q")
        await wait_for(pilot, lambda: app.finished is not None)  # the save, then the exit
    assert app.return_code == 0


def test_an_evaluator_fitted_for_a_dataset_scores_its_runs_offline(tmp_path):
    """`gantui evaluator fit` on fixture files, then a run on them has Quality rows and `gantui eval`
    scores it; a damaged evaluator file turns evaluation off with a notice and training goes on."""
    write_idx(tmp_path / "data" / "KMNIST" / "raw")
    root = ["--data-root", str(tmp_path / "data")]
    fitted = gantui("evaluator", "fit", "--dataset", "kmnist", *root, "--epochs", "2", timeout=300)
    assert fitted.returncode == 0, fitted.stderr
    assert "epoch 2/2: test accuracy" in fitted.stdout
    folder = tmp_path / "cache" / "gantui" / "evaluators" / "kmnist"
    digests = json.loads((folder / "sha256.json").read_text())
    assert digests == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                       for name in ("classifier.pt", "real_stats.npz")}

    out = tmp_path / "run"
    run = gantui("--no-ui", "--dataset", "kmnist", *root, "--out", str(out), "--device", "cpu", "--batch-size", "16",
                 "--steps", "6", "--log-every", "3", "--eval-every", "3", "--eval-n", "100", timeout=300)
    assert run.returncode == 0, run.stderr
    assert "quality evaluation is off" not in run.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    quality = [r for r in rows if r.get("event") == "quality"]
    assert [r["step"] for r in quality] == [3, 6]
    assert all(np.isfinite(r["fid"]) and 1 <= r["classes"] <= 10 and len(r["hist"]) == 10 for r in quality)
    scored = gantui("eval", str(out), "--n", "200", timeout=300)
    assert scored.returncode == 0, scored.stderr
    assert "KL from kmnist" in scored.stdout and "coverage" in scored.stdout

    stats = folder / "real_stats.npz"
    stats.write_bytes(stats.read_bytes()[:-1] + b"x")  # one byte changed
    damaged = gantui("--no-ui", "--dataset", "kmnist", *root, "--out", str(tmp_path / "run2"), "--device", "cpu",
                     "--batch-size", "16", "--steps", "6", "--eval-every", "3", "--eval-n", "100", timeout=300)
    assert damaged.returncode == 0, damaged.stderr
    assert "quality evaluation turned off: real_stats.npz: SHA-256" in damaged.stdout


@pytest.mark.parametrize("args, message", [
    (["--dataset", "mnist"], "mnist's evaluator ships with gantui (scripts/train_classifier.py rebuilds it)"),
    (["--dataset", "folder"], "unknown dataset 'folder' (choose from: fashion-mnist, kmnist, cifar10; a folder of "
                              "images has no labels to fit on)"),
])
def test_evaluator_fit_refusals_are_one_line(args, message):
    done = gantui("evaluator", "fit", *args, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == f"gantui: error: {message}"
