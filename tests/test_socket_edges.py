"""What a new user of the socket found: a login banner, a platform without SO_PEERCRED, checkpoint
names past 10^8 steps, a run directory deleted and made again under a detached run."""
from __future__ import annotations

import asyncio
import json
import socket
import struct

from gantui.run import events as ev
from gantui.run import server
from gantui.run.client import ConnectionLost, StreamLink
from gantui.run.publisher import Publisher
from gantui.run.rundir import RunDir
from support import run_process


async def test_lines_that_are_not_gantuis_are_skipped_and_said(tmp_path):
    reader = asyncio.StreamReader()
    for line in (b"Welcome to gpu-7 (Ubuntu 24.04)\n", b"Last login: Tue Dec  1\n",
                 json.dumps({"type": "hello", "protocol": 3, "client": "c1"}).encode() + b"\n",
                 b"a warning printed by the shell\n",
                 json.dumps({"type": "notice", "text": "still here", "level": "information"}).encode() + b"\n"):
        reader.feed_data(line)
    reader.feed_eof()

    class Writer:
        def is_closing(self) -> bool:
            return False

        def close(self) -> None: ...

    async def opener():
        return reader, Writer()

    posted = []
    await StreamLink(opener, "host:run").run(posted.append)
    notices = [e.text for e in posted if isinstance(e, ev.Notice)]
    assert notices[0].startswith("skipped a line that is not gantui's (a login banner?): 'Welcome to gpu-7")
    assert "still here" in notices  # the reader went on past the bad lines
    assert isinstance(posted[-1], ConnectionLost) and posted[-1].reason == "the run closed the connection"


def test_the_peer_check_uses_local_peercred_where_so_peercred_is_missing(monkeypatch):
    class Sock:
        def getsockopt(self, level, option, size):
            assert (level, option) == (server.SOL_LOCAL, 0x001)
            return struct.pack("Ii", 0, 501) + b"\0" * (size - 8)

    monkeypatch.delattr(socket, "SO_PEERCRED", raising=False)
    monkeypatch.setattr(socket, "LOCAL_PEERCRED", 0x001, raising=False)
    assert server.peer_uid(Sock()) == 501


def test_without_any_peer_check_the_run_is_not_served_and_says_why(monkeypatch, tmp_path, capsys):
    monkeypatch.delattr(socket, "SO_PEERCRED", raising=False)
    monkeypatch.delattr(socket, "LOCAL_PEERCRED", raising=False)
    run = Publisher.for_trainer(tmp_path / "run")
    run.start()  # trains all the same; it cannot be watched
    assert run.server is None and not (tmp_path / "run" / "gantui.sock").exists()
    assert "cannot tell who connects to a socket" in capsys.readouterr().err
    run.close()


def test_checkpoints_are_pruned_by_step_not_by_name(tmp_path):
    run = RunDir(tmp_path / "run").create()
    for step in (99_999_000, 99_999_500, 100_000_000, 100_000_500):  # the last two outgrow 8 digits
        run.checkpoint_path(step).write_bytes(b"x")
    run.prune_checkpoints(2)
    assert [step for step, _ in run.checkpoint_steps()] == [100_000_000, 100_000_500]


def test_a_run_directory_deleted_and_made_again_is_not_written_by_the_old_run(tmp_path):
    import shutil

    out = tmp_path / "run"
    run = Publisher.for_trainer(out, serve=False)
    run.start()
    run.publish(ev.Metrics({"step": 1, "loss": 1.0}))
    run.writer.sync()
    shutil.rmtree(out)  # the user deletes it; a new run takes the same name
    newer = RunDir(out).create()
    newer.metrics.write_text('{"step": 7, "new": 1}\n')
    newer.write_status("training", step=7)
    seen = []
    run.hub.subscribe(seen.append)
    for step in (2, 3):
        run.publish(ev.Metrics({"step": step, "loss": 1.0}))
    run.writer.sync()
    run.status("training", step=3)
    assert newer.read_metrics() == [{"step": 7, "new": 1}] and newer.read_status()["step"] == 7
    assert any("removed or replaced" in e.text for e in seen if isinstance(e, ev.Notice))
    run.close()


async def test_the_relays_zlib_stream_is_read_after_a_login_shells_lines(tmp_path):
    import zlib

    from gantui.run.client import inflated
    from gantui.run.protocol import ZLIB_MARK

    zipped = zlib.compressobj()
    body = b"".join(json.dumps(m).encode() + b"\n" for m in ({"type": "hello", "protocol": 3}, {"type": "x", "n": 1}))
    stream = b"motd: welcome\n" + ZLIB_MARK + zipped.compress(body) + zipped.flush(zlib.Z_SYNC_FLUSH)
    raw = asyncio.StreamReader()
    for i in range(0, len(stream), 7):  # in pieces, as a pipe delivers them
        raw.feed_data(stream[i:i + 7])
    raw.feed_eof()
    plain = inflated(raw)
    lines = [await plain.readline() for _ in range(4)]
    assert lines == [b"motd: welcome\n", *body.splitlines(keepends=True), b""]


def test_relay_zlib_sends_a_replay_compressed(tmp_path):
    import sys
    import zlib

    from gantui.run.protocol import ZLIB_MARK

    out = tmp_path / "run"
    run = Publisher.for_trainer(out, serve=False)
    run.start()
    run.publish(ev.Metrics({"step": 1, "loss": 1.0}))
    run.close()
    done = run_process([sys.executable, "-m", "gantui", "relay", "--zlib", str(out)], input=b"",
                       capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith(ZLIB_MARK)
    messages = [json.loads(line) for line in zlib.decompressobj().decompress(done.stdout[len(ZLIB_MARK):]).splitlines()]
    assert [m["type"] for m in messages] == ["hello", "snapshot"] and messages[1]["history"][0]["step"] == 1


def test_a_relayed_replay_sends_its_samples_again_at_the_depth_asked(tmp_path):
    """A finished run over SSH: `gantui relay` answers a watcher's preview request, 8 bits for one
    that draws pictures (the saved grid's own pixels), and refuses any other command."""
    import sys

    import numpy as np

    from gantui.run.protocol import decode_preview
    from gantui.run.replay import grid_tiles
    from support import write_run

    run = write_run(tmp_path / "run", {})
    asks = (b'{"cmd": "preview", "count": 5, "depth": 8}\n{"cmd": "pause"}\n{"cmd": "preview", "count": 2}\n'
            b'{"cmd": "preview", "count": 0}\n')
    done = run_process([sys.executable, "-m", "gantui", "relay", str(run.path)], input=asks, capture_output=True,
                       timeout=60)
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert [m["type"] for m in messages] == ["hello", "snapshot", "ok", "preview", "error", "ok", "preview", "ok"]
    full, levels = decode_preview(messages[3]), decode_preview(messages[6])
    tiles = grid_tiles(run.grids()[-1][1], 28, 1)
    assert messages[3]["codec"] == "u8z" and np.array_equal(full.images, tiles[:5])
    assert messages[6]["codec"] == "hex16" and levels.images.shape == (2, 28, 28)
    assert "read-only" in messages[4]["error"]


def test_previews_travel_at_the_depth_and_count_a_watcher_asks():
    import numpy as np
    import pytest

    from gantui.run import protocol

    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    preview = ev.Preview(40, images, row=3)
    full = protocol.decode_preview(json.loads(protocol.dumps(protocol.encode_preview(preview, 8, 4))))
    assert np.array_equal(full.images, images[:4]) and (full.step, full.row) == (40, 3)
    levels = protocol.decode_preview(protocol.encode_preview(preview))
    assert levels.images.shape == images.shape and np.abs(levels.images.astype(int) - images).max() <= 8
    with pytest.raises(protocol.ProtocolError, match="a preview's data"):
        protocol.decode_preview({**protocol.encode_preview(preview, 8), "data": "bm90IHpsaWI="})
    assert protocol.parse_command(b'{"cmd": "preview", "count": 3}') == {"cmd": "preview", "count": 3, "depth": 4}
    snapshot = ev.Started(run_dir="r", device="cpu", step=40, total_steps=80, steps_per_epoch=10, config={},
                          preview=preview)
    assert protocol.encode(snapshot, 8, 0)["preview"] is None  # a watcher that shows no tiles gets none
    assert protocol.encode(snapshot, 8, 2)["preview"]["shape"] == [2, 28, 28]
    with pytest.raises(protocol.ProtocolError, match="depth"):
        protocol.parse_command(b'{"cmd": "preview", "count": 3, "depth": true}')
