"""The wire protocol: newline-delimited JSON objects, torch-free.

The server's first message is `hello` with the protocol version, then a `snapshot` of the run;
then events as they happen. A client sends commands (`{"cmd": "pause"}`); each gets an `ok` or
an `error` reply. Previews travel as one hex digit a pixel (the 16 levels half blocks draw) with
their shape; a client that draws pictures asks for 8 bits (`{"cmd": "preview", "count": N,
"depth": 8}`) and gets them zlib'd, and each client gets only the tiles it shows.
"""
from __future__ import annotations

import base64
import json
import math
import zlib
from dataclasses import asdict
from typing import Any

import numpy as np

from gantui.common import finite, finite_row, panes, panes_json
from gantui.run import events as ev

PROTOCOL = 3  # 2: `schema` messages, what a snapshot announces; 3: previews as hex digits ("codec")
ZLIB_MARK = b"gantui-zlib\n"  # `gantui relay --zlib`'s first line: its zlib stream starts after it
MAX_LINE = 64 * 1024  # bytes in one client line, newline included
COMMANDS = ("pause", "resume", "save", "resample", "stop", "preview", "set")
MAX_PREVIEWS = 1024
DEPTHS = (4, 8)  # bits a pixel channel a client asks for: half blocks draw 16 levels, pictures 256


class ProtocolError(ValueError):
    """A bad line from a peer; the message is the reply's text."""


HEX = b"0123456789abcdef"
TO_HEX = bytes.maketrans(bytes(range(16)), HEX)
FROM_HEX = bytes.maketrans(HEX, bytes(range(16)))


def encode_preview(preview: ev.Preview, depth: int = 4, count: int | None = None) -> dict[str, Any]:
    """The first `count` tiles (all: None; a client that shows none gets none). At depth 4, quantised to the 16 levels a channel half
    blocks draw (render.preview_pixels), one hex digit each: on the local socket plain text; over
    SSH the relay's one zlib stream shrinks it about sixfold, a tenth less than zlib'd base64 did
    (which the stream cannot shrink again), and a preview like the one before it shrinks further.
    At depth 8 (pictures), every level, zlib'd here and base64'd ("u8z"): hex digits would double
    what the stream must shrink, and the local socket has no stream."""
    images = np.ascontiguousarray(preview.images[:count], dtype=np.uint8)
    body = {"step": preview.step, "shape": list(images.shape), "source": preview.source, "row": preview.row}
    if depth == 8:
        return {**body, "codec": "u8z", "data": base64.b64encode(zlib.compress(images.tobytes(), 6)).decode("ascii")}
    return {**body, "codec": "hex16", "data": (images // 16).tobytes().translate(TO_HEX).decode("ascii")}


def preview_again(depth: int, count: int | None, new_depth: int, new_count: int) -> bool:
    """Whether a client's preview request (new_depth, new_count) brings it the newest preview again,
    having had previews at (depth, count; None: every tile, before it asked): it shows some, and at a
    new depth (a paused or finished run makes no more) or more tiles than it had."""
    grown = count is not None and new_count > count
    return bool(new_count) and (new_depth != depth or grown)


def decode_preview(msg: dict[str, Any]) -> ev.Preview:
    shape = tuple(int(n) for n in msg["shape"])
    codec = msg.get("codec")
    if codec == "hex16":
        levels = np.frombuffer(str(msg["data"]).encode("ascii").translate(FROM_HEX), dtype=np.uint8)
        images = (levels * 16 + 8).astype(np.uint8).reshape(shape)
    elif codec == "u8z":
        try:
            raw = zlib.decompress(base64.b64decode(str(msg["data"]), validate=True))
        except (ValueError, zlib.error) as err:
            raise ProtocolError(f"a preview's data: {err}") from None
        images = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
    else:
        raise ProtocolError(f"unknown preview codec {codec!r}")
    return ev.Preview(int(msg["step"]), images, str(msg.get("source", "G")), int(msg.get("row", 0)))


def encode(event: ev.Event, depth: int = 4, count: int | None = None, **extra: Any) -> dict[str, Any]:
    """An event as a JSON-ready dict with a `type`; previews (also a snapshot's) at `depth`, `count`
    tiles."""
    if isinstance(event, ev.Preview):
        return {"type": "preview", **encode_preview(event, depth, count)}
    if isinstance(event, ev.Started):
        rows = ("history", "quality")  # as metrics.jsonl holds them
        body = {f: getattr(event, f) for f in event.__dataclass_fields__
                if f not in ("preview", "finished", "capabilities", *rows)}
        body["capabilities"] = asdict(event.capabilities)
        body["schema"] = panes_json(event.schema)
        body["finished"] = asdict(event.finished) if event.finished is not None else None
        return {"type": "snapshot", **finite(body), **{f: [finite_row(r) for r in getattr(event, f)] for f in rows},
                "preview": encode_preview(event.preview, depth, count) if event.preview is not None and count != 0 else None}
    if isinstance(event, ev.Metrics):
        return {"type": "metrics", "rows": [finite_row(event.row)]}
    if isinstance(event, ev.Quality):
        return {"type": "quality", "row": finite_row(event.row), **extra}
    kind = type(event).__name__.lower()
    return {"type": kind, **finite(asdict(event)), **extra}


def decode(msg: dict[str, Any]) -> ev.Event | list[ev.Event] | None:
    """A server message as events (metrics rows come in batches); None for replies (ok, hello...)."""
    kind = msg.get("type")
    if kind == "snapshot":
        body = {k: v for k, v in msg.items() if k != "type"}
        body["preview"] = decode_preview(body["preview"]) if body.get("preview") else None
        body["finished"] = ev.Finished(**body["finished"]) if body.get("finished") else None
        body["capabilities"] = ev.Capabilities.read(body.get("capabilities"), body.get("producer"))
        body["schema"] = panes(body.get("schema"))
        known = ev.Started.__dataclass_fields__
        return ev.Started(**{k: v for k, v in body.items() if k in known})
    if kind == "metrics":
        return [ev.Metrics(row) for row in msg["rows"]]
    if kind == "preview":
        return decode_preview(msg)
    classes = {"quality": ev.Quality, "paused": ev.Paused, "saved": ev.Saved, "notice": ev.Notice,
               "finished": ev.Finished, "settings": ev.Settings, "loading": ev.Loading,
               "schema": ev.Schema}
    if kind in classes:
        cls = classes[kind]
        fields = {k: v for k, v in msg.items() if k in cls.__dataclass_fields__}
        if cls is ev.Schema:
            fields["panes"] = panes(fields.get("panes"))
        return cls(**fields)
    if kind == "error":  # a command of ours was refused
        return ev.Notice(f"the run refused: {msg.get('error', '')}", "error")
    if kind == "bye":
        return ev.Notice(f"disconnected by the run: {msg.get('reason', '')}", "error")
    return None


def dumps(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, allow_nan=False, separators=(",", ":")).encode() + b"\n"


def parse_command(line: bytes) -> dict[str, Any]:
    """A client line as a checked command; ProtocolError says what is wrong with it."""
    try:
        msg = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"not JSON: {err}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a command is a JSON object, e.g. {\"cmd\": \"pause\"}")
    cmd = msg.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("missing \"cmd\" (a string)")
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown command {cmd!r} (known: {', '.join(COMMANDS)})")
    if cmd == "preview":
        count = msg.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_PREVIEWS:
            raise ProtocolError(f"preview: \"count\" must be an integer from 0 to {MAX_PREVIEWS}, got {count!r}")
        depth = msg.get("depth", 4)
        if depth not in DEPTHS or isinstance(depth, bool):
            raise ProtocolError(f"preview: \"depth\" must be 4 or 8 (bits a channel), got {depth!r}")
        return {"cmd": cmd, "count": count, "depth": int(depth)}
    if cmd == "set":  # each value is checked by the run, which knows its settings
        values = msg.get("values")
        if (not isinstance(values, dict) or not values or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values.values())):
            raise ProtocolError("set: \"values\" must be an object of settings to numbers, e.g. {\"lr_g\": 0.0001}")
        return {"cmd": cmd, "values": values}
    return {"cmd": cmd}
