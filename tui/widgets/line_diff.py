"""Which cells of a widget changed between two frames, so only those are repainted.

Textual repaints whole widgets on ``refresh()``; over SSH that is kilobytes a
second for a chart whose legend value ticked. A widget that keeps its last
frame as strips can instead refresh just the spans that differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.segment import Segment
from textual.geometry import Region
from textual.strip import Strip


def changed_regions(old: Sequence[Strip], new: Sequence[Strip]) -> list[Region]:
    """One region per line that differs, from its first to its last changed cell."""
    regions = []
    for y in range(max(len(old), len(new))):
        if y < len(old) and y < len(new):
            if old[y] == new[y]:
                continue
            first = _common_cells(list(old[y]), list(new[y]))
            last = _common_cells(_reversed(old[y]), _reversed(new[y]))
            width = max(old[y].cell_length, new[y].cell_length)
            if first + last >= width:
                continue  # the same cells, split into segments differently
            regions.append(Region(first, y, width - last - first, 1))
        else:
            line = new[y] if y < len(new) else old[y]
            regions.append(Region(0, y, line.cell_length, 1))
    return regions


def _reversed(strip: Strip) -> list[Segment]:
    return [Segment(s.text[::-1], s.style, s.control) for s in reversed(list(strip))]


def _common_cells(before: list[Segment], after: list[Segment]) -> int:
    """How many leading cells two segment lists share (text and style)."""
    cells = 0
    for a, b in zip(before, after, strict=False):
        if a == b:
            cells += cell_len(a.text)
            continue
        if a.style == b.style:  # same style: the texts may still share a start
            shared = 0
            for char_a, char_b in zip(a.text, b.text, strict=False):
                if char_a != char_b:
                    break
                shared += 1
            cells += cell_len(a.text[:shared])
        return cells
    return cells
