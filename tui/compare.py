"""Comparing runs: which runs the chart overlays, and the colour each one keeps.

A run's colour comes from its id alone (a hash into a palette), so it is the
same in the table's mark, on the chart and in the legend, today and in the
next session. Two runs compared together that hash to one colour are told
apart: the later by id takes the next free colour. Plain functions, tested
without a screen.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Mid-luminance colours: each reads on a dark and on a light background, and no two
# are neighbours on the hue wheel (bright white, black and pale yellow would vanish
# on one theme or the other).
COMPARE_PALETTE = (
    "#4e9be6",  # blue
    "#f28e2b",  # orange
    "#e15759",  # red
    "#3fb5ad",  # teal
    "#59a14f",  # green
    "#d4a72c",  # gold
    "#b07aa1",  # mauve
    "#ff7fa8",  # pink
    "#9c755f",  # brown
    "#8f8fdf",  # lavender
    "#7fb800",  # lime
    "#d65fd6",  # magenta
)
MAX_MARKS = 64  # runs overlaid at most by marks (a sweep of 64, its seeds grouped by G)
MAX_PINS = 8  # pinned runs (``t``): each is on the chart, whatever is selected


def colour_slot(run_id: str) -> int:
    """The palette index ``run_id`` hashes to (crc32: the same in every process)."""
    return zlib.crc32(run_id.encode()) % len(COMPARE_PALETTE)


def assign_colours(run_ids: Iterable[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """A colour for each of ``run_ids``: its own, or the next free one after a collision.

    Runs are served in id order, so the outcome depends only on the set of ids;
    ``taken`` colours (those of runs already coloured) count as used. Once every
    colour is used, runs keep their own and share.
    """
    used = set(taken)
    colours: dict[str, str] = {}
    for run_id in sorted(set(run_ids)):
        slot = colour_slot(run_id)
        for step in range(len(COMPARE_PALETTE)):
            candidate = COMPARE_PALETTE[(slot + step) % len(COMPARE_PALETTE)]
            if candidate not in used:
                slot = (slot + step) % len(COMPARE_PALETTE)
                break
        colours[run_id] = COMPARE_PALETTE[slot]
        used.add(colours[run_id])
    return colours


@dataclass(frozen=True)
class Overlaid:
    """One run on the chart: its id, its colour (None: the palette by position), emphasis."""

    run_id: str
    style: str | None
    emphasis: bool


def chart_runs(
    family: list[str], marks: Mapping[str, str], selected: str | None,
    pinned: Iterable[str] = (),
) -> tuple[Overlaid, ...]:
    """The runs the chart overlays, in drawing order (the last on top).

    No marks: ``family`` (the selected run's parent and forks), coloured by
    position as always. With marks (run id to colour): the marked runs in the
    order they were marked, then the selected run on top, emphasised, in a
    colour of its own that no marked run uses. ``pinned`` runs are drawn either
    way, after the family or the marks (with marks, each in its own colour).
    """
    if not marks:
        extra = [r for r in pinned if r not in family]
        return tuple(Overlaid(r, None, r == selected) for r in [*family, *extra])
    extra = [r for r in pinned if r not in marks and r != selected]
    colours = colours_for(extra, marks)
    runs = [Overlaid(r, colour, False) for r, colour in marks.items() if r != selected]
    runs += [Overlaid(r, colours[r], False) for r in extra]
    if selected is not None:
        taken = [*marks.values(), *colours.values()]
        colour = marks.get(selected) or assign_colours([selected], taken)[selected]
        runs.append(Overlaid(selected, colour, True))
    return tuple(runs)


def colours_for(run_ids: Iterable[str], marks: Mapping[str, str]) -> dict[str, str]:
    """A colour for each of ``run_ids``: a marked run's own mark colour, the others theirs
    by id, avoiding the marked ones' (the same run looks the same in every view)."""
    ids = list(run_ids)
    marked = {r: marks[r] for r in ids if r in marks}
    rest = assign_colours([r for r in ids if r not in marked], marked.values())
    return {**rest, **marked}
