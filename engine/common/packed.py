"""Columns of numbers as text: how whole series cross the socket.

Loading a run's every point (``traintop export``, a program reading series)
moves millions of numbers. As JSON lists each costs ~18 characters and a float
parse at both ends; packed, a column is its little-endian int64 or float64
bytes in base64 (~11 characters a number), encoded and decoded at C speed, and
NaN and the infinities come through as logged. Standard library only, shared
by the daemon and its clients.
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from typing import Any

_LITTLE = sys.byteorder == "little"
INTS, FLOATS = "q", "d"  # the typecodes of steps and times (int64), values (float64)


def pack(column: array[Any]) -> str:
    """A column of int64 or float64 as base64 text of its little-endian bytes."""
    if not _LITTLE:
        column = array(column.typecode, column)
        column.byteswap()
    return base64.b64encode(column.tobytes()).decode("ascii")


def unpack(text: object, typecode: str, count: int) -> list[Any]:
    """The ``count`` numbers ``pack`` made ``text`` from; ValueError if it does not
    hold exactly that many."""
    if not isinstance(text, str):
        raise ValueError("a packed column must be text")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"a packed column is not base64: {exc}") from None
    column = array(typecode)
    if len(raw) != count * column.itemsize:
        raise ValueError(f"a packed column holds {len(raw)} bytes, not {count} numbers")
    column.frombytes(raw)
    if not _LITTLE:
        column.byteswap()
    return column.tolist()
