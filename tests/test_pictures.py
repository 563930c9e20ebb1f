"""Pictures at full resolution: the escape sequences byte by byte (Kitty graphics, sixel, iTerm2,
tmux's passthrough), the terminal's answers parsed, the probe against a pseudo-terminal, one
widget's picture on and off the screen, and the dashboard drawing them."""
from __future__ import annotations

import base64
import io
import os
import pty
import re
import termios
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from gantui.ui.pictures import encode
from gantui.ui.pictures.encode import enlarged
from gantui.ui.pictures.layer import PictureLayer, picture, zoomed_layout
from gantui.ui.pictures.terminal import (
    DA1, KITTY_QUERY, Answers, Terminal, answered, ask, detect, parse_answers, protocol_of)

ESC = "\x1b"


def decode_sixel(data: str) -> np.ndarray:
    """A sixel sequence as (H, W, 3) uint8 (unset pixels 0): the decoder a VT340 has, for the
    sequences encode.sixel writes (raster attributes, RGB colours, repeats, $ and -)."""
    body = re.fullmatch(r"\x1bP0;1;0q\"1;1;(\d+);(\d+)(.*)\x1b\\", data, re.S)
    assert body, "not a DCS sixel sequence with 1:1 raster attributes"
    width, height = int(body[1]), int(body[2])
    out = np.zeros((height, width, 3), np.uint8)
    colours: dict[int, tuple[int, int, int]] = {}
    colour, x, top = 0, 0, 0
    for m in re.finditer(r"#(\d+);2;(\d+);(\d+);(\d+)|#(\d+)|!(\d+)([?-~])|([?-~])|(\$)|(-)", body[3]):
        if m[1]:
            colours[int(m[1])] = tuple(round(int(v) * 255 / 100) for v in m.group(2, 3, 4))
        elif m[5]:
            colour = int(m[5])
        elif m[6] or m[8]:
            count, char = (int(m[6]), m[7]) if m[6] else (1, m[8])
            bits = ord(char) - 63
            for row in range(6):
                if bits >> row & 1 and top + row < height:
                    out[top + row, x:x + count] = colours[colour]
            x += count
        elif m[9]:
            x = 0
        elif m[10]:
            x, top = 0, top + 6
    return out


# -- sixel ---------------------------------------------------------------------------------
def test_sixel_bytes_of_a_tiny_image():
    image = np.array([[0, 255], [255, 0]], np.uint8)
    assert encode.sixel(image) == ('\x1bP0;1;0q"1;1;2;2#0;2;0;0;0#255;2;100;100;100#0@A$#255A@\x1b\\')


def test_sixel_decodes_to_the_image_grey_and_colour():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (37, 45), dtype=np.uint8)  # a height that is no multiple of 6
    grey[:, 20:] = 0  # long runs: repeats
    data = encode.sixel(grey, colors=256)
    assert re.search(r"!\d+\?|!\d+~|!\d+[?-~]", data), "runs of four or more are repeats"
    decoded = decode_sixel(data)[..., 0].astype(int)
    assert np.abs(decoded - grey).max() <= 2  # RGB percentages: 1% steps
    colour = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    colour[6:] = (255, 0, 0)
    decoded = decode_sixel(encode.sixel(colour, colors=256))
    assert np.abs(decoded.astype(int) - colour).max() <= 3


def test_sixel_repeats_of_every_length_and_grey_in_rgb():
    for width, run in ((3, "@@@"), (4, "!4@"), (10, "!10@"), (999, "!999@"), (1000, "!1000@"), (12345, "!12345@")):
        assert f"#255{run}\x1b\\" in encode.sixel(np.full((1, width), 255, np.uint8))
    grey = np.random.default_rng(6).integers(0, 256, (12, 30), dtype=np.uint8)
    assert encode.sixel(np.repeat(grey[..., None], 3, axis=-1)) == encode.sixel(grey)  # greys: the grey levels


def test_sixel_colours_stay_close_with_few_registers():
    y, x = np.mgrid[0:96, 0:128]
    gradient = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)
    decoded = decode_sixel(encode.sixel(gradient, colors=16)).astype(int)
    assert np.abs(decoded - gradient).mean() < 20  # a median cut's 16 colours: 12 off (the fast octree's: 23)


def test_sixel_keeps_to_the_terminals_colour_registers():
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    data = encode.sixel(grey, colors=16)
    assert len(re.findall(r"#\d+;2;", data)) == 16
    assert np.abs(decode_sixel(data)[..., 0].astype(int) - grey).max() <= 9  # 16 levels 16 apart, and 1% steps
    colour = np.random.default_rng(2).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    assert len(re.findall(r"#\d+;2;", encode.sixel(colour, colors=64))) <= 64


def test_sixel_enlarged_is_the_enlarged_images_sixel():
    colour = np.random.default_rng(5).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    assert encode.sixel(colour, 256, zoom=3) == encode.sixel(enlarged(colour, 3), 256)


def test_sixel_ends_without_a_graphics_newline():
    data = encode.sixel(np.full((12, 3), 200, np.uint8))
    assert data.count("-") == 1 and not data.endswith("-\x1b\\")  # one between the bands, none after


# -- Kitty graphics ------------------------------------------------------------------------
def test_kitty_chunks_carry_the_image():
    image = np.random.default_rng(3).integers(0, 256, (90, 70), dtype=np.uint8)  # noise: zlib cannot shrink it
    escapes = encode.kitty(image, 7)
    assert len(escapes) > 1
    first = re.fullmatch(r"\x1b_G([^;]*);([A-Za-z0-9+/=]*)\x1b\\", escapes[0])
    assert first[1] == "a=T,q=2,f=24,o=z,s=70,v=90,i=7,C=1,m=1"
    payload = first[2]
    for n, escape in enumerate(escapes[1:], 1):
        m = re.fullmatch(r"\x1b_G([^;]*);([A-Za-z0-9+/=]*)\x1b\\", escape)
        assert m[1] == ("q=2,m=1" if n < len(escapes) - 1 else "q=2,m=0")
        payload += m[2]
    assert all(len(e) - len("\x1b_G;\x1b\\") - len(e.split(";")[0]) + 3 <= encode.KITTY_CHUNK + 3 for e in escapes)
    assert all(len(e.split(";", 1)[1]) - 2 <= encode.KITTY_CHUNK for e in escapes)
    pixels = np.frombuffer(zlib.decompress(base64.b64decode(payload)), np.uint8).reshape(90, 70, 3)
    assert (pixels == image[..., None]).all()


def test_kitty_place_hide_delete():
    assert encode.kitty_place(5) == "\x1b_Ga=p,q=2,i=5,C=1\x1b\\"
    assert encode.kitty_hide(5) == "\x1b_Ga=d,q=2,d=i,i=5\x1b\\"  # placements only: the pixels kept
    assert encode.kitty_delete(5) == "\x1b_Ga=d,q=2,d=I,i=5\x1b\\"  # and the pixels freed


# -- iTerm2 and tmux -----------------------------------------------------------------------
def test_iterm_inline_png():
    image = np.random.default_rng(4).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    data = encode.iterm(image)
    m = re.fullmatch(r"\x1b\]1337;File=inline=1;size=(\d+);width=40px;height=30px;preserveAspectRatio=0;"
                     r"doNotMoveCursor=1:([A-Za-z0-9+/=]+)\x07", data)
    png = base64.b64decode(m[2])
    assert len(png) == int(m[1])
    assert (np.asarray(Image.open(io.BytesIO(png))) == image).all()


def test_tmux_wrapping_and_cursor():
    inner = encode.kitty_hide(3)
    assert encode.tmux_wrap(inner) == "\x1bPtmux;\x1b\x1b_Ga=d,q=2,d=i,i=3\x1b\x1b\\\x1b\\"
    assert encode.at_cell(4, 2, "X") == "\x1b7\x1b[3;5HX\x1b8"
    assert Terminal(protocol="sixel", tmux=True).wrap("\x1bPq\x1b\\") == "\x1bPtmux;\x1b\x1bPq\x1b\x1b\\\x1b\\"
    assert Terminal(protocol="sixel").wrap("a") == "a"


# -- the terminal's answers ----------------------------------------------------------------
XTERM = b"\x1bP>|XTerm(379)\x1b\\\x1b[?1;0;1024S\x1b[?63;1;2;4;6;9;15;16;22;28c"
KITTY = b"\x1b_Gi=31;OK\x1b\\\x1bP>|kitty(0.35.2)\x1b\\\x1b[6;20;10t\x1b[?62;c"
ITERM = b"\x1bP>|iTerm2 3.5.0\x1b\\\x1b[?62;4c"
PLAIN = b"\x1b[?62;22c"  # a terminal without pictures (GNOME Terminal's kind)


@pytest.mark.parametrize("data,protocol", [(XTERM, "sixel"), (KITTY, "kitty"), (ITERM, "iterm"), (PLAIN, "blocks")])
def test_answers_choose_the_protocol(data, protocol):
    assert protocol_of(parse_answers(b"x" + data + b"\x1b[A"), {"TERM_PROGRAM": "iTerm.app"}) == protocol


def test_answers_parsed():
    assert parse_answers(XTERM) == Answers(False, (63, 1, 2, 4, 6, 9, 15, 16, 22, 28), "XTerm(379)", None, 1024)
    assert parse_answers(KITTY) == Answers(True, (62,), "kitty(0.35.2)", (10, 20), None)
    assert parse_answers(b"\x1b_Gi=31;ENOENT:unsupported\x1b\\").kitty is False
    assert parse_answers(b"\x1b_Gi=99;OK\x1b\\").kitty is False  # not our query's answer
    assert parse_answers(b"\x1b[?62;4") == Answers()  # cut short: nothing
    assert not answered(b"\x1b[?1;3S\x1b[?1;0;256S")  # XTSMGRAPHICS's answers (an error, a count) are not DA1's
    assert answered(b"\x1b[?1;3S\x1b[?63;4c")


def test_no_answer_falls_back_to_hints_then_blocks():
    none = parse_answers(b"")
    assert protocol_of(none, {}) == "blocks"
    assert protocol_of(none, {"TERM": "xterm-kitty"}) == "kitty"
    assert protocol_of(none, {"LC_TERMINAL": "iTerm2"}) == "iterm"
    assert protocol_of(none, {"TERM": "foot"}) == "sixel"


def test_no_color_dumb_and_forced_modes(monkeypatch):
    no_color = detect("auto", {"TERM": "xterm", "NO_COLOR": "1"})
    assert no_color.protocol == "blocks" and "NO_COLOR" in no_color.why  # `i` says why
    assert detect("auto", {"TERM": "linux"}).protocol == "blocks"  # the console: no queries printed on it
    assert detect("auto", {"TERM": "dumb"}).protocol == "blocks"
    assert detect("blocks", {"TERM": "xterm"}).protocol == "blocks"
    monkeypatch.setattr(os, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no tty")))
    assert detect("sixel", {"TERM": "xterm", "NO_COLOR": "1"}).protocol == "sixel"  # forced: the user knows
    forced = detect("kitty", {"TERM": "xterm"})
    assert (forced.protocol, forced.found, forced.pixels) == ("kitty", "kitty", True)
    assert forced.switched().protocol == "blocks" and forced.switched().switched().protocol == "kitty"
    assert detect("auto", {"TERM": "xterm"}).protocol == "blocks"  # no terminal to ask


def fake_terminal(answer: bytes, delay: float):
    """A pseudo-terminal whose far end reads the queries and answers after `delay` (none: b"")."""
    main, tty = pty.openpty()
    seen = bytearray()

    def answer_it():
        deadline = time.monotonic() + 5
        while DA1.encode() not in seen and time.monotonic() < deadline:
            seen.extend(os.read(main, 4096))
        time.sleep(delay)
        if answer:
            os.write(main, answer)

    thread = threading.Thread(target=answer_it, daemon=True)
    thread.start()
    return main, tty, seen, thread


@pytest.mark.parametrize("delay", [0.0, 0.6])  # a local terminal, a slow SSH link's round trip
def test_probe_reads_answers_in_raw_mode_and_restores_the_terminal(delay):
    main, tty, seen, thread = fake_terminal(XTERM, delay)
    before = termios.tcgetattr(tty)
    start = time.monotonic()
    data = ask(tty, KITTY_QUERY + DA1, timeout=3.0)
    assert time.monotonic() - start < 2.5  # DA1's answer ended the wait
    thread.join(5)
    assert bytes(seen).startswith(KITTY_QUERY.encode())
    assert parse_answers(data).colors == 1024
    assert termios.tcgetattr(tty) == before
    os.close(main), os.close(tty)


def test_probe_gives_up_when_nothing_answers():
    main, tty, seen, thread = fake_terminal(b"", 0)
    start = time.monotonic()
    assert ask(tty, DA1, timeout=0.4) == b""
    assert 0.35 < time.monotonic() - start < 2.0
    os.close(main), os.close(tty)


def test_probe_waits_past_an_early_answer_for_da1s():
    """xterm as a VT100 answers XTSMGRAPHICS with an error at once; DA1's answer comes after, and
    is read here rather than left for Textual to take as keys."""
    main, tty = pty.openpty()
    os.write(main, b"\x1b[?1;3S")
    threading.Timer(0.2, os.write, (main, b"\x1b[?62;4c")).start()
    data = ask(tty, DA1, timeout=3.0)
    assert parse_answers(data).attributes == (62, 4)
    os.close(main), os.close(tty)


# -- one widget's picture ------------------------------------------------------------------
def test_zoomed_layout():
    assert zoomed_layout(720, 390, 28) == (6, 3, 4, 1)  # 16 tiles fit at 4 times their size: 18 do
    assert zoomed_layout(100, 60, 28) == (3, 2, 1, 1)  # fewer than 16 at their own size: as many as fit
    assert zoomed_layout(40, 40, 64) == (1, 1, 1, 2)  # none at their own size: halved
    assert zoomed_layout(3, 3, 28) == (0, 0, 1, 1)
    canvas, zoom = picture(np.full((40, 28, 28), 255, np.uint8), zoomed_layout(720, 390, 28))
    assert canvas.shape == (3 * 30 - 2, 6 * 30 - 2) and zoom == 4
    canvas = enlarged(canvas, zoom)
    assert canvas.shape == (3 * 120 - 8, 6 * 120 - 8)  # 112-pixel tiles, 8-pixel gaps
    assert (canvas[:112, :112] == 255).all() and (canvas[:112, 112:120] == 40).all()


def test_kitty_picture_sent_once_hidden_placed_replaced_freed():
    writes: list[str] = []
    layer, kitty = PictureLayer(9, writes.append), Terminal(protocol="kitty", found="kitty")
    made = []

    def canvas():
        made.append(1)
        return np.zeros((4, 4), np.uint8), 1

    layer.show(kitty, "a", canvas, 3, 1)
    assert writes[0].startswith("\x1b7\x1b[2;4H\x1b_Ga=d,q=2,d=I,i=9\x1b\\\x1b_Ga=T,") and writes[0].endswith("\x1b8")
    layer.show(kitty, "a", canvas, 3, 1)  # a repaint of the cells: a Kitty picture floats above them
    assert len(writes) == 1 and len(made) == 1
    layer.hide(kitty)
    assert writes[-1] == encode.kitty_hide(9)
    layer.show(kitty, "a", canvas, 3, 1)  # back: placed again, not sent again
    assert writes[-1] == "\x1b7\x1b[2;4H" + encode.kitty_place(9) + "\x1b8" and len(made) == 1
    layer.show(kitty, "b", canvas, 3, 1)  # a new picture: the same id, the old one freed first
    assert writes[-2] == encode.kitty_hide(9) and encode.kitty_delete(9) in writes[-1] and "i=9," in writes[-1]
    layer.close(kitty)
    assert writes[-1] == encode.kitty_delete(9)


def test_sixel_picture_sent_again_after_each_repaint_encoded_once():
    writes: list[str] = []
    layer, sixel = PictureLayer(1, writes.append), Terminal(protocol="sixel", found="sixel", tmux=True)
    made = []

    def canvas():
        made.append(1)
        return np.full((3, 3), 128, np.uint8), 2

    layer.show(sixel, "a", canvas, 0, 0)
    layer.show(sixel, "a", canvas, 0, 0)  # Textual repainted the cells: the picture went with them
    assert len(writes) == 2 and writes[0] == writes[1] and len(made) == 1
    assert writes[0].startswith("\x1b7\x1b[1;1H\x1bPtmux;\x1b\x1bP0;1;0q")  # through tmux
    layer.hide(sixel)
    assert len(writes) == 2  # a sixel picture goes with the repaint of its cells: nothing to send


# -- the dashboard -------------------------------------------------------------------------
async def test_dashboard_draws_pictures_hides_them_under_a_screen_and_switches_to_half_blocks():
    from gantui.ui.demo import scripted_app
    from support import wait_for

    app = scripted_app()
    app.pictures = Terminal(protocol="kitty", found="kitty", cell=(10, 20))
    writes: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.preview_pane
        pane.picture_layer.write = writes.append
        pane.refresh()
        await wait_for(pilot, lambda: any("a=T," in w for w in writes))
        sent = [w for w in writes if "a=T," in w]
        region = pane.content_region
        assert sent and sent[0].startswith(f"\x1b7\x1b[{region.y + 1};{region.x + 1}H")
        width, height = map(int, re.search(r"s=(\d+),v=(\d+)", sent[0]).groups())
        assert width <= region.width * 10 and height <= region.height * 20  # inside the pane
        assert "kitty" in str(app.status_line.render())
        assert pane.capacity() == zoomed_layout(region.width * 10, region.height * 20, 28)[:2][0] * \
            zoomed_layout(region.width * 10, region.height * 20, 28)[1]
        image = pane.picture_layer.image_id
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: writes[-1] == encode.kitty_hide(image))
        await pilot.press("escape")
        await wait_for(pilot, lambda: encode.kitty_place(image) in writes[-1])  # placed, not sent again
        count = len([w for w in writes if "a=T," in w])
        await pilot.press("i")
        await wait_for(pilot, lambda: app.pictures.protocol == "blocks" and encode.kitty_delete(image) in writes[-1])
        await wait_for(pilot, lambda: "▄" in "".join(str(s) for s in pane.render_lines(pane.region.reset_offset)))
        await pilot.press("i")
        await wait_for(pilot, lambda: len([w for w in writes if "a=T," in w]) == count + 1)
        await pilot.resize_terminal(60, 20)  # too small: the panes hidden, and the picture with them
        await wait_for(pilot, lambda: writes[-1] == encode.kitty_hide(image))
        await pilot.resize_terminal(120, 40)
        await wait_for(pilot, lambda: encode.kitty_place(image) in writes[-1])
        await pilot.press("q")
    assert writes[-1] == encode.kitty_delete(image)  # the quit freed it


async def test_a_replay_in_sixel_scrubs_with_a_picture_a_grid(tmp_path):
    """`gantui watch` of a finished run whose evaluations hold FID alone: its samples as sixel
    pictures of the saved grids' own pixels, a new picture a step back, the status line saying so."""
    from gantui.run.client import ReplayLink
    from gantui.run.replay import grid_tiles
    from gantui.ui.app import GanApp
    from support import wait_for, write_run

    run = write_run(tmp_path / "run", {})
    app = GanApp(ReplayLink(run), pictures=Terminal(protocol="sixel", found="sixel", cell=(6, 13)))
    writes: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.preview_pane
        pane.picture_layer.write = writes.append
        await wait_for(pilot, lambda: pane.step == 40)
        pane.refresh()
        await wait_for(pilot, lambda: len(writes) >= 1)
        assert "FID" in str(app.quality_pane.header.render()) and "sixel" in str(app.status_line.render())
        region = pane.content_region
        cols, rows, zoom, _ = zoomed_layout(region.width * 6, region.height * 13, 28)
        shown = decode_sixel(writes[-1][writes[-1].index("\x1bP"):-2])[..., 0].astype(int)
        tiles = grid_tiles(run.grids()[-1][1])
        assert np.abs(shown[:28 * zoom:zoom, :28 * zoom:zoom] - tiles[0]).max() <= 2  # the grid's own pixels
        await pilot.press("left", "left")  # the newest grid (step 40, as live), then the one before
        await wait_for(pilot, lambda: pane.step == 30 and writes[-1] != writes[0])
        await pilot.press("q")


async def test_a_notification_over_a_kitty_picture_takes_it_off_until_it_goes():
    """A Kitty picture floats above the text: a toast over it would be drawn under it."""
    from gantui.ui.demo import scripted_app
    from support import wait_for

    app = scripted_app()
    app.pictures = Terminal(protocol="kitty", found="kitty", cell=(10, 20))
    writes: list[str] = []
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        pane = app.preview_pane
        pane.picture_layer.write = writes.append
        pane.refresh()
        await wait_for(pilot, lambda: any("a=T," in w for w in writes))
        app.clear_notifications()
        await pilot.pause(0.3)
        shown = len(writes)
        app.notify("\n".join(["a long notice"] * 30), timeout=1.5)  # tall: over the Samples pane
        hidden = encode.kitty_hide(pane.picture_layer.image_id)
        await wait_for(pilot, lambda: hidden in writes[shown:])
        await wait_for(pilot, lambda: encode.kitty_place(pane.picture_layer.image_id) in "".join(writes[shown:]))
        await pilot.press("q")


async def test_a_sample_box_removed_before_its_picture_is_drawn(tmp_path):
    """The comparison view replaces its boxes as runs come and go: a paint asked for by a box since
    removed does nothing (it raised NoScreen)."""
    from gantui.ui.compare.app import CompareApp
    from gantui.ui.compare.widgets import SampleBox
    from support import wait_for, write_run

    runs = [write_run(tmp_path / name, {}, seed=n) for n, name in enumerate("ab")]
    app = CompareApp(runs, pictures=Terminal(protocol="sixel", found="sixel", cell=(6, 13)))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(app.query(SampleBox)) == 2)
        for _ in range(5):
            await wait_for(pilot, lambda: len(app.query(SampleBox)) == 2)
            for box in list(app.query(SampleBox)):
                box.paint_due = True
                box.call_after_refresh(box.paint_picture)
                await box.remove()
            await pilot.pause(0.05)
            app.redraw()  # the boxes again
        assert app.is_running
        await pilot.press("q")


async def test_inside_tmux_with_passthrough_off_the_dashboard_says_how_to_turn_it_on():
    from gantui.ui.demo import scripted_app
    from support import wait_for

    app = scripted_app()
    app.pictures = Terminal(tmux=True, why="inside tmux, pictures need `tmux set -g allow-passthrough on`")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any("allow-passthrough on" in n.message for n in app._notifications))
        await pilot.press("i")  # and `i` says it again
        await wait_for(pilot, lambda: sum("allow-passthrough" in n.message for n in app._notifications) == 2)
        assert app.pictures.protocol == "blocks"
        await pilot.press("q")


def test_a_resize_reads_the_cell_again_only_when_the_kernel_says_otherwise(monkeypatch):
    from gantui.ui.pictures import terminal

    answered_size = Terminal(protocol="blocks", found="sixel", cell=(10, 20), kernel=(6, 13))  # i pressed: blocks
    monkeypatch.setattr(terminal, "kernel_cell", lambda fd=None: (6, 13))
    assert terminal.resized(answered_size) is answered_size  # the terminal's own answer stands
    monkeypatch.setattr(terminal, "kernel_cell", lambda fd=None: (8, 16))  # a bigger font
    assert terminal.resized(answered_size).cell == (8, 16) == terminal.resized(answered_size).kernel
    assert terminal.resized(Terminal()) == Terminal()  # no pictures here: nothing to read
