"""Complete lines of an append-only file, read from a byte offset.

The JSON-lines channels of a run directory are read this way at both ends: the
daemon tails each worker's ``spool.jsonl``, a worker tails its ``control.jsonl``.
A line without its ``\\n`` is still being written: it is left for the next read,
which starts at the ``end`` this one returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Lines:
    """What one read found: whole lines, each with its ``\\n``, and where they end."""

    lines: list[bytes]
    end: int  # the offset just past the last whole line: where the next read starts
    drained: bool  # False: a bound stopped the read, and more lines may wait past ``end``


def read_lines(path: str | Path, offset: int, limit: int | None = None) -> Lines:
    """The whole lines of ``path`` after ``offset``: all of them, or about ``limit`` bytes.

    A missing file reads as empty. A single line longer than ``limit`` is read
    whole, so that a bound never stops a reader for good.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(-1 if limit is None else limit)
            drained = limit is None or len(data) < limit
            if not drained and b"\n" not in data:
                rest = f.readline()
                data += rest
                drained = not rest.endswith(b"\n")  # the file ended inside the line
    except FileNotFoundError:
        return Lines([], offset, True)
    whole = data[: data.rfind(b"\n") + 1]
    return Lines(whole.splitlines(keepends=True), offset + len(whole), drained)
