"""Where the chart writes its labels: marker labels that never overlap, y ticks on the
row their value is drawn on, and a run's value at the cursor.

Pure functions of columns, rows and values, no Textual: ``chart_layout`` calls
them and tests check them directly.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len

# The most rows at the top of the plot that marker labels may stack on.
LABEL_ROWS = 3


@dataclass(frozen=True)
class Label:
    """A marker's label: its plot column, and the texts it may be written as, the
    preferred (longest) first."""

    column: int
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Placed:
    """A label written at ``row`` (0: the plot's top row), from column ``start``."""

    row: int
    start: int
    text: str
    column: int  # its marker's column


def place_labels(labels: Sequence[Label], width: int, rows: int) -> list[Placed]:
    """Where each label goes, so that no two overlap or touch on a row.

    Markers are taken from the left. Each gets its longest text that fits: to the
    right of its marker on the first of ``rows`` rows with room, else to the left of
    it; then its shorter texts the same way. A label with no room at all is dropped
    (its marker stays, and the legend names the run).
    """
    taken: list[list[tuple[int, int]]] = [[] for _ in range(max(rows, 0))]
    placed: list[Placed] = []
    for label in sorted(labels, key=lambda lb: lb.column):
        spot = _first_spot(label, width, taken)
        if spot is not None:
            row, start, text = spot
            taken[row].append((start, start + cell_len(text)))
            placed.append(Placed(row, start, text, label.column))
    return placed


def _first_spot(
    label: Label, width: int, taken: list[list[tuple[int, int]]]
) -> tuple[int, int, str] | None:
    for text in label.texts:
        length = cell_len(text)
        for row, spans in enumerate(taken):
            for start in (label.column + 1, label.column - length):
                end = start + length
                # One blank cell kept between two labels, so they read as two.
                if start >= 0 and end <= width and all(
                    end < a or start > b for a, b in spans
                ):
                    return row, start, text
    return None


def label_texts(label: str) -> tuple[str, ...]:
    """A marker's label and its shorter form: "fork 7jfa7f" and "7jfa7f"."""
    short = label.split()[-1] if label.split() else label
    return (label, short) if short != label else (label,)


def dot_row(value: float, y_lo: float, y_hi: float, plot_h: int) -> int:
    """The braille dot row (0 at the top, 4 to a text row) that ``value`` is drawn on.

    The curves and the y labels both place a value through here, so a label sits on
    the row its value's line is drawn in."""
    return round((y_hi - value) * (plot_h * 4 - 1) / (y_hi - y_lo))


def value_at(
    xs: Sequence[float], ys: Sequence[float | None], x: float
) -> tuple[float, float] | None:
    """The value of the last point at or before ``x`` as (low, high): equal for one point;
    a span when several points share its x (a bucket's min and max). None before the first
    point or where that point is a gap."""
    end = bisect_right(xs, x)
    if end == 0:
        return None
    first = bisect_left(xs, xs[end - 1], 0, end)
    finite = [v for v in ys[first:end] if v is not None]
    return (min(finite), max(finite)) if finite else None
