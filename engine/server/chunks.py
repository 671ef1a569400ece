"""How a block of metric points is packed into one SQLite blob.

A metric series is stored as chunks of up to ``CHUNK_POINTS`` consecutive
points. Each chunk holds three arrays of the same length: steps (int64),
values (float64: NaN, +inf and -inf kept as logged) and wall times (int64
microseconds).
The arrays are byte-shuffled (all first bytes, then all second bytes, ...)
before zlib: steps and times grow slowly, so most of their byte planes are
runs of equal bytes, and a float's sign and exponent bytes repeat from point
to point. A loss curve costs about 9-10 bytes a point this way, against 64 in
a row per point.

Times keep microseconds: a unix time held in a double has about 0.24 us of
resolution today, so nothing a worker measured is lost.
"""

from __future__ import annotations

import math
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

CHUNK_POINTS = 1024
_WIDTH = 8  # bytes per array item, all three arrays
_LITTLE = sys.byteorder == "little"

Point = tuple[int, float, float]  # (step, value, unix time); the value may be NaN or ±inf


@dataclass(frozen=True)
class ChunkSummary:
    """What is known of a chunk without unpacking it."""

    n: int
    step_lo: int
    step_hi: int
    time_lo: float
    time_hi: float
    # Over the finite values (what a chart draws); None when there is none.
    vmin: float | None
    vmax: float | None


def to_micros(when: float) -> int:
    return round(when * 1_000_000)


def _shuffle(raw: bytes) -> bytes:
    return b"".join(raw[i::_WIDTH] for i in range(_WIDTH))


def _unshuffle(raw: bytes) -> bytes:
    count = len(raw) // _WIDTH
    out = bytearray(len(raw))
    for i in range(_WIDTH):
        out[i::_WIDTH] = raw[i * count : (i + 1) * count]
    return bytes(out)


def _plain(items: array[int] | array[float]) -> bytes:
    if not _LITTLE:  # the blob is little-endian on every machine
        items = array(items.typecode, items)
        items.byteswap()
    return items.tobytes()


def encode(points: Sequence[Point]) -> tuple[bytes, ChunkSummary]:
    """Pack ``points`` (in the order they were logged) into a blob, with its summary."""
    steps = array("q", [p[0] for p in points])
    values = array("d", [p[1] for p in points])
    times = array("q", [to_micros(p[2]) for p in points])
    raw = _shuffle(_plain(steps)) + _shuffle(_plain(values)) + _shuffle(_plain(times))
    present = [v for v in values if math.isfinite(v)]
    summary = ChunkSummary(
        n=len(points),
        step_lo=min(steps),
        step_hi=max(steps),
        time_lo=min(times) / 1e6,
        time_hi=max(times) / 1e6,
        vmin=min(present) if present else None,
        vmax=max(present) if present else None,
    )
    return zlib.compress(raw, 6), summary


def decode_columns(blob: bytes, n: int) -> tuple[array[int], array[float], array[int]]:
    """A chunk's steps, values and times in microseconds, as arrays."""
    raw = zlib.decompress(blob)
    size = n * _WIDTH
    if len(raw) != 3 * size:
        raise ValueError(f"chunk holds {len(raw)} bytes, expected {3 * size}")
    steps, times = array("q"), array("q")
    values = array("d")
    columns: list[array[int] | array[float]] = [steps, values, times]
    for part, column in enumerate(columns):
        column.frombytes(_unshuffle(raw[part * size : (part + 1) * size]))
        if not _LITTLE:
            column.byteswap()
    return steps, values, times


def decode(blob: bytes, n: int) -> list[Point]:
    """The points of a chunk of ``n`` points, in the order they were logged."""
    steps, values, times = decode_columns(blob, n)
    return [(s, v, t / 1e6) for s, v, t in zip(steps, values, times, strict=True)]
