"""The runs table's lines as strips: cells padded into columns, and which column is where."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

PAD = 1  # blank cells each side of a column
MARK = "●"  # a run marked for comparison: in its line's first blank cell, in its colour


def line_strip(
    cells: Sequence[Text],
    columns: Sequence[str],
    widths: Mapping[str, int],
    width: int,
    style: Style,
    console: Console,
    mark: str | None = None,
) -> Strip:
    """One line of ``width`` cells: each of ``cells`` cut or padded to its column's width.

    ``mark`` (a colour) draws MARK in it in place of the line's first blank.
    """
    segments: list[Segment] = []
    for column, cell in zip(columns, cells, strict=True):
        text = cell.copy()
        text.truncate(widths[column], overflow="ellipsis", pad=True)
        if mark is not None and not segments:
            segments += [Segment(MARK, Style(color=mark, bold=True)), Segment(" " * (PAD - 1))]
        else:
            segments.append(Segment(" " * PAD))
        segments.extend(text.render(console))
        segments.append(Segment(" " * PAD))
    styled = Segment.apply_style(segments, style)
    # One style run per segment: every segment costs its own escape codes on the wire.
    return Strip(styled).crop_extend(0, width, style).simplify()


def header_titles(columns: Sequence[str], sort_column: str, descending: bool) -> list[Text]:
    """The column titles, the sorted one marked with its direction."""
    arrow = "▼" if descending else "▲"
    return [Text(c + (arrow if c == sort_column else "")) for c in columns]


def column_at(x: int, columns: Sequence[str], widths: Mapping[str, int]) -> str | None:
    """The column under cell ``x`` of a line, or None right of the last one."""
    for column in columns:
        x -= widths.get(column, 0) + 2 * PAD
        if x < 0:
            return column
    return None
