"""The loss chart's legend: each curve's colour, name and value, on as few lines as fit.

Kept apart from ``chart_layout``: it only arranges the entries it is handed. At
rest an entry's value is the curve's last; with the cursor shown it is the value
under the cursor, in the curve's colour, after the cursor's x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

DIM = Style(dim=True)


@dataclass(frozen=True)
class LegendEntry:
    """One curve in the legend."""

    style: Style  # the curve's colour (its swatch)
    name: str
    value: str
    value_style: Style | None = None  # the value's own style (None: the chart's plain one)


def legend_lines(
    entries: Sequence[LegendEntry], width: int, most: int, base: Style, head: str = ""
) -> list[Strip]:
    """The legend on up to ``most`` lines of ``width``; what does not fit even then is
    counted as "+N more". ``head``: a reading written first (the cursor's x), reversed."""
    lines: list[list[Segment]] = [[]]
    used = 0
    if head:
        lines[0].append(Segment(f" {head} ", base + Style(reverse=True)))
        used = cell_len(head) + 2
    for n, entry in enumerate(entries):
        label = f" {entry.name} {entry.value}"
        after = len(entries) - n - 1  # entries after this one, if it is the last that fits
        more = len(f"  +{after} more") if after else 0  # kept free on the last line
        room = width - used - (more if len(lines) == most else 0)
        if 2 + cell_len(label) > room and used:
            if len(lines) == most:
                lines[-1].append(Segment(f"+{len(entries) - n} more", base + DIM))
                break
            lines.append([])
            used = 0
            room = width - (more if len(lines) == most else 0)
        segments = [Segment("━━", entry.style)]
        if 2 + cell_len(label) > room:  # the entry alone is too long: cut its name
            label = label[: max(room - 3, 0)] + "…"
            segments.append(Segment(label + "  ", base))
        elif entry.value_style is not None:
            segments += [Segment(f" {entry.name} ", base), Segment(entry.value, entry.value_style),
                         Segment("  ", base)]
        else:
            segments.append(Segment(label + "  ", base))
        lines[-1] += segments
        used += 4 + cell_len(label)
    return [Strip(line).crop_extend(0, width, base) for line in lines]
