"""`--data DIR`: a folder of images decoded once and cached; bad files skipped and counted; an
empty folder or one too big refused in one line. Fresh processes, default settings."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gantui.engine import folder
from gantui.engine.data import DatasetError
import support
from support import popen, refused, run_process, wait_for, write_images


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (1-bit) and that holds no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


def add_bad_files(root: Path) -> None:
    good = next(root.rglob("*.png")).read_bytes()
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("not an image")
    (root / "truncated.png").write_bytes(good[:len(good) // 2])
    png_header_only(root / "bomb.png", 20_000, 10_000)  # 200 Mpx: past Pillow's limit, a 60-byte file
    os.symlink("loop_b.png", root / "loop_a.png")
    os.symlink("loop_a.png", root / "loop_b.png")
    os.symlink("..", root / "a" / "up")  # a folder loop, not followed
    (root / "readme.txt").write_text("not an image, not looked at")


def gantui(*args: str, cache: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """A fresh process with a user cache of its own."""
    return support.gantui(*args, timeout=timeout, env={"XDG_CACHE_HOME": str(cache)})


def test_a_64x64_rgb_folder_trains_with_bad_files_skipped_and_a_cached_second_start(tmp_path):
    """Five metrics rows of finite, moving losses: ten steps logged every two (a 64x64 RGB step is the
    slowest on the CPU; fifty logged every ten showed the same)."""
    data = tmp_path / "images"
    write_images(data, 300)
    add_bad_files(data)
    run = gantui("--no-ui", "--data", str(data), "--steps", "10", "--log-every", "2", "--batch-size", "32",
                 "--out", str(tmp_path / "run"), cache=tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    assert "decoding 301/301 images" in run.stdout  # the truncated PNG is found corrupt only then
    summary = next(line for line in run.stdout.splitlines() if line.startswith(f"information: {data}"))
    assert "300 images, 64x64 RGB, decoded and cached; skipped 6" in summary
    for reason in ("empty: 1", "not an image: 1", "corrupt: 1", "past the decompression-bomb limit: 1",
                   "unreadable (a broken or looping link?): 2"):
        assert reason in summary, summary
    assert "Traceback" not in run.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["loss_g"], r["loss_d"]) for r in rows if "loss_g" in r]
    assert len(losses) == 5 and all(np.isfinite(losses).flat) and len(set(losses)) == 5
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["dataset"], config["image_size"], config["channels"]) == ("folder", 64, 3)
    sampled = gantui("sample", str(tmp_path / "run"), "--n", "4", "--out", str(tmp_path / "s.png"), cache=tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    grid = Image.open(tmp_path / "s.png")
    assert grid.mode == "RGB" and grid.size == (2 * 66 + 2, 2 * 66 + 2)

    resumed = gantui("--no-ui", "--resume", str(tmp_path / "run"), "--steps", "12", cache=tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr
    assert "from the cache" in resumed.stdout and "decoding" not in resumed.stdout


def test_a_changed_folder_is_decoded_again_and_grey_images_give_one_channel(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "grey"
    write_images(data, 20, grey=True)
    first = folder.load(folder.scan(data, 32))
    assert first.images.shape == (20, 1, 32, 32) and not first.cached
    assert folder.load(folder.scan(data, 32)).cached
    assert folder.load(folder.scan(data, 32), channels=3).images.shape == (20, 3, 32, 32)  # asked for RGB
    write_images(data / "more", 2, seed=1)  # two colour images join
    changed = folder.load(folder.scan(data, 32))
    assert not changed.cached and changed.images.shape == (22, 3, 32, 32)
    folder.scan(data, 32).cache.write_bytes(b"damaged")
    again = folder.load(folder.scan(data, 32))  # a damaged cache is decoded again
    assert not again.cached and again.images.shape == (22, 3, 32, 32) and folder.load(folder.scan(data, 32)).cached


def test_the_cached_start_of_2000_images_is_under_a_second(tmp_path):
    data = tmp_path / "images"
    write_images(data, 2000, size=(40, 40))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    code = ("import sys, time; from gantui.engine.folder import load, scan; t = time.perf_counter(); "
            "f = load(scan(sys.argv[1], 64)); print(f.cached, f.images.shape[0], time.perf_counter() - t)")
    times = []
    for _ in range(2):
        out = run_process([sys.executable, "-c", code, str(data)], capture_output=True, text=True, env=env,
                          check=True).stdout.split()
        times.append((out[0], int(out[1]), float(out[2])))
    assert times[0][:2] == ("False", 2000) and times[1][:2] == ("True", 2000)
    assert times[1][2] < 1.0, times


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no images found (.png, .jpg, .jpeg, .webp, .bmp, searched recursively)"),
    (lambda d: (d / "x.png").write_bytes(b""), "no images found (.png, .jpg, .jpeg, .webp, .bmp, searched "
                                               "recursively; 1 unreadable or empty)"),
    (lambda d: (d / "x.png").write_text("text"), "none of its 1 image files could be decoded (1 not an image)"),
])
def test_a_folder_without_usable_images_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, setup, message):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "images"
    data.mkdir()
    setup(data)
    err = refused(capsys, "--no-ui", "--data", str(data), "--out", str(tmp_path / "run"))
    assert err.strip().splitlines()[-1] == f"gantui: error: --data {data}: {message}"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_folder_too_big_for_the_device_is_refused_with_its_size_and_a_suggestion(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_images(tmp_path / "images", 10)
    with pytest.raises(DatasetError) as err:
        folder.scan(tmp_path / "images", 128, device_free=(10 * 3 * 128 * 128 - 1, "cuda:0"))
    assert str(err.value) == (f"--data {tmp_path / 'images'}: 10 images at 128x128x3 take 0.0 GB, more than the "
                              "0.0 GB free on cuda:0; try --image-size 64")
    monkeypatch.setattr(folder, "available_memory", lambda: 1000)
    with pytest.raises(DatasetError, match="more than the 0.0 GB free on this machine; try --image-size 32"):
        folder.scan(tmp_path / "images", 64)


def test_first_decode_is_timed(tmp_path, monkeypatch):
    """The progress callback sees every image, the last call at the total."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_images(tmp_path / "images", 600)
    calls = []
    start = time.perf_counter()
    folder.load(folder.scan(tmp_path / "images", 32), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (600, 600) and [c[0] for c in calls] == [*range(32, 600, 32), 600]
    assert time.perf_counter() - start < 60


async def test_the_dashboard_shows_the_first_decode_then_the_samples():
    """Loading events before the run starts fill the Samples pane; the first preview replaces them."""
    import threading

    from gantui.run import events as ev
    from gantui.ui.demo import disc_images
    from gantui.ui.demo import FolderEngine, scripted_app

    class Decoding(FolderEngine):
        go = threading.Event()

        def run(self):
            self.emit(ev.Loading(256, 1024))
            self.go.wait(10)
            return super().run()

    app = scripted_app(Decoding)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "decoding images 256/1,024 (25%)" in str(app.preview_pane.render()))
        Decoding.go.set()
        await wait_for(pilot, lambda: app.preview_pane.images is not None)
        assert app.preview_pane.images.shape == disc_images(16).shape
        app.trainer.stop()


def test_an_empty_folder_is_refused_before_the_run_whatever_the_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "images").mkdir()
    err = refused(capsys, "--no-ui", "--data", str(tmp_path / "images"), "--channels", "3", "--image-size", "32",
                  "--out", str(tmp_path / "run"))
    assert "no images found" in err and len(err.strip().splitlines()) == 1


def test_a_signal_during_the_first_decode_stops_it_at_once(tmp_path):
    """SIGTERM while a folder is decoded: the run stops before the decode ends, exit 143, nothing
    saved, no half cache; the next start decodes it all."""
    import signal

    data = tmp_path / "images"
    data.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    Image.fromarray(noise).save(data / "0000.png")  # slow to decode: ~25 ms
    for i in range(1, 600):
        os.link(data / "0000.png", data / f"{i:04d}.png")  # the same file, 600 names, no disk
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = popen([sys.executable, "-m", "gantui", "--no-ui", "--data", str(data), "--out",
                 str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first.startswith("decoding 32/600 images")
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # The decode stopped within its first half (a line each tenth; a stop seen within 32 files); the
    # time is only a guard against a hang: beside other work the interpreter's exit alone took 6 s.
    decoded = [int(line.split()[1].split("/")[0]) for line in (first + out).splitlines()
               if line.startswith("decoding ")]
    assert max(decoded) < 300 and time.monotonic() - start < 30, ("the decode ran on", out)
    assert proc.returncode == 143, err
    assert "stopped at step 0" in out and "nothing trained, nothing saved" in out and "Traceback" not in err
    assert not (tmp_path / "cache" / "gantui" / "folders").exists() or not any((tmp_path / "cache" / "gantui"
                                                                                  / "folders").iterdir())
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "stopped"
