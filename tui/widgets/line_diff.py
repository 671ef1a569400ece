"""Which cells of a widget changed between two frames, so only those are repainted.

Textual repaints whole widgets on ``refresh()``; over SSH that is kilobytes a
second for a chart whose legend value ticked. A widget that keeps its last
frame as strips can instead refresh just the spans that differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip


def _cells(strip: Strip) -> list[tuple[str, Style | None]]:
    cells: list[tuple[str, Style | None]] = []
    for segment in strip:
        for char in segment.text:
            cells.append((char, segment.style))
            if cell_len(char) == 2:
                cells.append(("", segment.style))  # the right half of a wide character
    return cells


def changed_regions(old: Sequence[Strip], new: Sequence[Strip]) -> list[Region]:
    """One region per line that differs, from its first to its last changed cell."""
    regions = []
    for y in range(max(len(old), len(new))):
        if y < len(old) and y < len(new) and old[y] == new[y]:
            continue
        before = _cells(old[y]) if y < len(old) else []
        after = _cells(new[y]) if y < len(new) else []
        width = max(len(before), len(after))
        first = 0
        while first < width and _at(before, first) == _at(after, first):
            first += 1
        if first == width:
            continue  # the same cells, split into segments differently
        last = width - 1
        while last > first and _at(before, last) == _at(after, last):
            last -= 1
        regions.append(Region(first, y, last - first + 1, 1))
    return regions


def _at(cells: list[tuple[str, Style | None]], index: int) -> tuple[str, Style | None] | None:
    return cells[index] if index < len(cells) else None
