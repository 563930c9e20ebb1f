"""What the terminal draws, asked once before Textual takes it.

One burst of queries, each answered by a terminal that knows it and ignored by one that does not:
a 1x1 Kitty graphics query, XTVERSION (the terminal's name), the cell's size in pixels, the
number of sixel colour registers (XTSMGRAPHICS), and device attributes (DA1) last: nearly every
terminal answers DA1, in order, so its answer ends the wait; none at all within the timeout is
the answer "nothing known" (a slow link's late answers are given up to `TIMEOUT`, not 100 ms).
Inside tmux the queries go through its passthrough to the terminal outside, which answers only
when `allow-passthrough` is on (tmux's own answers are not asked for: a tmux that draws sixel says
so whatever terminal is outside it). Environment hints (TERM_PROGRAM...) count only where nothing
answered; NO_COLOR, TERM=dumb and the Linux console mean half blocks unless a protocol is forced.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, replace

from gantui.common import PICTURE_PROTOCOLS as PROTOCOLS
from gantui.ui.pictures.encode import ESC, ST, tmux_wrap

TIMEOUT = 1.5  # seconds to wait for answers: a slow SSH link's round trip, well past a local terminal's
QUERY_ID = 31  # the Kitty graphics query's image id (a 1x1 image never stored: a=q)
DEFAULT_CELL = (10, 20)  # pixels, where neither the terminal nor the kernel says

KITTY_QUERY = f"{ESC}_Gi={QUERY_ID},s=1,v=1,a=q,t=d,f=24;AAAA{ST}"
XTVERSION = f"{ESC}[>0q"
CELL_SIZE = f"{ESC}[16t"
SIXEL_COLORS = f"{ESC}[?1;1;0S"
DA1 = f"{ESC}[c"
QUERIES = (KITTY_QUERY, XTVERSION, CELL_SIZE, SIXEL_COLORS, DA1)  # DA1 last: its answer ends the wait


@dataclass(frozen=True)
class Answers:
    """What the terminal said (parse_answers), each None where it did not say it."""

    kitty: bool = False
    attributes: tuple[int, ...] | None = None  # DA1: 4 among them is sixel
    version: str | None = None  # XTVERSION: "XTerm(379)", "kitty(0.35.2)", "WezTerm 20240203..."
    cell: tuple[int, int] | None = None  # (width, height) in pixels
    colors: int | None = None  # sixel colour registers


@dataclass(frozen=True)
class Terminal:
    """The picture protocol in use (`blocks`: half blocks) and what drawing pictures needs."""

    protocol: str = "blocks"
    found: str = "blocks"  # what the terminal can draw (a key switches between it and blocks)
    cell: tuple[int, int] = DEFAULT_CELL
    colors: int = 256
    tmux: bool = False  # every escape wrapped in tmux's passthrough
    kernel: tuple[int, int] | None = None  # the cell's size the kernel said (a resize that changes it: a new font)
    why: str = ""  # where pictures are off though they might be on: how to turn them on

    @property
    def pixels(self) -> bool:
        return self.protocol in PROTOCOLS

    @property
    def depth(self) -> int:
        """The bits a channel of the previews to ask a run for: 8 for pictures, 4 for half blocks."""
        return 8 if self.pixels else 4

    def switched(self) -> Terminal:
        """The other mode: the terminal's pictures <-> half blocks."""
        return replace(self, protocol="blocks" if self.pixels else self.found)

    def wrap(self, sequence: str) -> str:
        return tmux_wrap(sequence) if self.tmux else sequence


ANSWER = re.compile(
    rf"{ESC}_G(?P<kitty>[^;{ESC}]*);(?P<status>[^{ESC}]*){ESC}\\"
    rf"|{ESC}\[\?(?P<da1>[\d;]*)c"
    rf"|{ESC}P>\|(?P<version>[^{ESC}]*){ESC}\\"
    rf"|{ESC}\[6;(?P<ch>\d+);(?P<cw>\d+)t"
    rf"|{ESC}\[\?1;0;(?P<colors>\d+)S")


def parse_answers(data: bytes) -> Answers:
    """The answers found in what the terminal sent (in any order, among anything else)."""
    found: dict[str, object] = {}
    for m in ANSWER.finditer(data.decode("utf-8", "replace")):
        if m["kitty"] is not None:
            keys = dict(kv.split("=", 1) for kv in m["kitty"].split(",") if "=" in kv)
            if keys.get("i") == str(QUERY_ID):
                found["kitty"] = m["status"] == "OK"
        elif m["da1"] is not None:
            found["attributes"] = tuple(int(n) for n in m["da1"].split(";") if n)
        elif m["version"] is not None:
            found["version"] = m["version"]
        elif m["cw"] is not None and int(m["cw"]) > 0 and int(m["ch"]) > 0:
            found["cell"] = (int(m["cw"]), int(m["ch"]))
        elif m["colors"] is not None:
            found["colors"] = int(m["colors"])
    return Answers(**found)  # type: ignore[arg-type]


DA1_ANSWER = re.compile(rb"\x1b\[\?[\d;]*c")


def answered(data: bytes) -> bool:
    """Whether the wait can end: DA1's answer has come (the last asked; XTSMGRAPHICS's `ESC[?1;3S`
    and the like do not end it)."""
    return DA1_ANSWER.search(data) is not None


def protocol_of(answers: Answers, env: dict[str, str]) -> str:
    """The best picture protocol the answers show; environment hints only where nothing answered."""
    name = (answers.version or "").lower()
    if answers.kitty:
        return "kitty"
    if name.startswith(("iterm2", "wezterm")):
        return "iterm"
    if answers.attributes is not None and 4 in answers.attributes:
        return "sixel"
    if answers.attributes is not None or answers.version is not None:
        return "blocks"
    program = env.get("TERM_PROGRAM", "")
    if "KITTY_WINDOW_ID" in env or env.get("TERM", "") in ("xterm-kitty", "xterm-ghostty") or program == "ghostty":
        return "kitty"
    if program in ("iTerm.app", "WezTerm") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if env.get("TERM", "").startswith(("foot", "mlterm")):
        return "sixel"
    return "blocks"


def tmux_passthrough() -> bool | None:
    """tmux's allow-passthrough for this pane (None: tmux did not say)."""
    if shutil.which("tmux") is None:
        return None
    try:
        out = subprocess.run(["tmux", "show", "-Apv", "allow-passthrough"], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return value in ("on", "all") if out.returncode == 0 else None


def kernel_cell(fd: int | None = None) -> tuple[int, int] | None:
    """The cell's size in pixels from the kernel's window size of `fd` (None: the controlling tty),
    which xterm, kitty and ssh fill in."""
    import fcntl
    import struct
    import termios

    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY) if fd is None else fd
    except OSError:
        return None
    try:
        rows, cols, width, height = struct.unpack("4H", fcntl.ioctl(tty, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    finally:
        if fd is None:
            os.close(tty)
    return (width // cols, height // rows) if rows and cols and width and height else None


def ask(fd: int, queries: str, timeout: float) -> bytes:
    """Send the queries to the terminal on `fd` and read what it answers, in raw mode, until DA1's
    answer or the timeout; the terminal's modes put back."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    data = b""
    try:
        tty.setraw(fd, termios.TCSANOW)
        os.write(fd, queries.encode())
        deadline = time.monotonic() + timeout
        while not answered(data) and (left := deadline - time.monotonic()) > 0:
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
    return data


def detect(mode: str = "auto", env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> Terminal:
    """The terminal's pictures for `--images MODE`: asked of the terminal (the controlling tty)
    for auto, or as forced; blocks whenever in doubt."""
    env = dict(os.environ) if env is None else env
    term = env.get("TERM", "dumb")
    if mode == "blocks" or term == "dumb":
        return Terminal()
    if mode == "auto" and ("NO_COLOR" in env or term == "linux"):
        return Terminal(why=f"{'NO_COLOR is set' if 'NO_COLOR' in env else 'the Linux console'}: half blocks "
                            "(--images sixel|kitty|iterm forces pictures)")
    in_tmux = bool(env.get("TMUX"))
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        fd = None
    try:
        why = ""
        passthrough = tmux_passthrough() if in_tmux else None
        if in_tmux and passthrough is False:
            why = "inside tmux, pictures need `tmux set -g allow-passthrough on`"
        answers = Answers()
        if fd is not None and not why:  # forced too: the cell size and colours
            wrap = tmux_wrap if in_tmux else (lambda s: s)
            try:
                answers = parse_answers(ask(fd, "".join(map(wrap, QUERIES)), timeout))
            except Exception:  # noqa: BLE001 -- the answers are a hint: a terminal that cannot be asked gave none
                answers = Answers()
        kernel = kernel_cell(fd) if fd is not None else None
        cell = answers.cell or kernel or DEFAULT_CELL
    finally:
        if fd is not None:
            os.close(fd)
    found = mode if mode in PROTOCOLS else "blocks" if why else protocol_of(answers, env)
    return Terminal(protocol=found, found=found, cell=cell, colors=answers.colors or 256, tmux=in_tmux, why=why,
                    kernel=kernel)


def resized(terminal: Terminal) -> Terminal:
    """After a resize: the cell's size again from the kernel where what the kernel says has changed
    (a font's size changed with the window); else the size the terminal answered stands."""
    if terminal.found not in PROTOCOLS:
        return terminal
    cell = kernel_cell()
    return replace(terminal, cell=cell, kernel=cell) if cell and cell != terminal.kernel else terminal
