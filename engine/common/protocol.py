"""Wire format between clients and the daemon.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON holding one object. The first frame each way is the handshake::

    client: {"hello": "traintop", "version": 1}
    daemon: {"hello": "traintop", "version": 1, "pid": 1234}

Then requests ``{"id": 7, "method": "pause", "params": {...}}`` get replies
``{"id": 7, "result": ...}`` or ``{"id": 7, "error": {"code": ..., "message": ...}}``,
and a subscribed client also receives events ``{"event": "run", "data": ...}``.

A metric may be NaN or infinite, which strict JSON cannot say: frames carry
them as ``NaN``, ``Infinity`` and ``-Infinity``, the extension Python's json
writes and reads, so both ends (traintop's own clients and daemon) get the
value that was logged. What traintop prints as JSON for people and other
programs is strict (``engine.common.format.json_text``).
"""

from __future__ import annotations

import json
import struct
from typing import Any

PROTOCOL_VERSION = 2
HELLO = "traintop"
MAX_FRAME = 4 * 1024 * 1024
# The most metric points one event frame carries (a ``metrics`` event, or all the runs of
# a ``metrics_batch``): about 400 KB, well under MAX_FRAME.
EVENT_POINTS = 10_000
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
# The most buckets, and the most raw tail points, one ``series_view`` request may ask for.
MAX_BUCKETS = 4000
MAX_TAIL = 5000


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame holding ``message``."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes is over the {MAX_FRAME}-byte cap")
    return _HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    """The body length announced by a header; refuses lengths over the cap."""
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes is over the {MAX_FRAME}-byte cap")
    return int(length)


def decode(body: bytes) -> dict[str, Any]:
    """Parse a frame body; it must be a JSON object."""
    try:
        message = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers over Python's digit limit;
        # RecursionError, arrays or objects nested too deep to parse.
        raise ProtocolError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message


def hello() -> dict[str, Any]:
    """The client's handshake frame."""
    return {"hello": HELLO, "version": PROTOCOL_VERSION}


def check_hello(message: dict[str, Any]) -> None:
    """Raise ProtocolError unless ``message`` is a handshake of our version."""
    if message.get("hello") != HELLO:
        raise ProtocolError("expected a traintop handshake")
    if message.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {message.get('version')!r} is not supported "
            f"(this side speaks {PROTOCOL_VERSION})"
        )
