"""Bars, sparklines and the short figures beside them, shared by the telemetry panels.

Everything here is plain Rich text with named ANSI colours, so it reads the
same in a 16-colour terminal over SSH as in a true-colour one.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from engine.common.format import format_bytes

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
# Partial cells of a horizontal bar, by eighths: index 1 is one eighth full.
_BAR_EIGHTHS = " ▏▎▍▌▋▊▉"
_BAR_FULL = "█"
_TRACK = "░"
TRACK_STYLE = "bright_black"
NA = "N/A"


def level_style(percent: float | None) -> str:
    """Green below 50 %, yellow below 80 %, red from 80 %; grey when unknown."""
    if percent is None:
        return TRACK_STYLE
    if percent < 50:
        return "green"
    if percent < 80:
        return "yellow"
    return "red"


def bar(fraction: float | None, width: int, style: str) -> Text:
    """A ``width``-cell bar filled to ``fraction`` (clamped to 0..1) in eighth-cell steps.

    The unfilled rest is a grey track; ``None`` (N/A) is an empty track.
    """
    width = max(0, width)
    if fraction is None or fraction != fraction:  # None or NaN
        fraction = 0.0
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    filled = _BAR_FULL * full + (_BAR_EIGHTHS[part] if part else "")
    text = Text(no_wrap=True, end="")
    text.append(filled, style=style)
    text.append(_TRACK * (width - len(filled)), style=TRACK_STYLE)
    return text


def sparkline(values: Sequence[float | None], width: int, top: float | None = None) -> str:
    """The last values as ``width`` block characters, newest at the right.

    More values than cells are merged into buckets by their maximum, so a short
    spike stays visible. Fewer values leave blank cells on the left. Heights
    scale from 0 to ``top`` (e.g. 100 for percentages) or, when ``top`` is
    None, to the largest value shown. An N/A (None) bucket is a blank cell.
    """
    if width <= 0:
        return ""
    count = len(values)
    if count > width:
        buckets: list[float | None] = []
        for cell in range(width):
            chunk = [
                v
                for v in values[cell * count // width : (cell + 1) * count // width]
                if v is not None
            ]
            buckets.append(max(chunk) if chunk else None)
    else:
        buckets = list(values)
    known = [v for v in buckets if v is not None]
    scale = top if top is not None else (max(known) if known else 0.0)
    cells = []
    for value in buckets:
        if value is None:
            cells.append(" ")
        elif scale <= 0:
            cells.append(SPARK_BLOCKS[0])
        else:
            level = round(min(1.0, max(0.0, value / scale)) * (len(SPARK_BLOCKS) - 1))
            cells.append(SPARK_BLOCKS[level])
    return " " * (width - len(cells)) + "".join(cells)


def short_bytes(value: float | None) -> str:
    """Bytes in at most ~6 characters: ``12.3G``, ``512M``, ``N/A``."""
    if value is None:
        return NA
    return format_bytes(value).replace(" ", "").replace("iB", "")


def short_rate(value: float | None) -> str:
    """Bytes per second: ``1.2M/s``, ``N/A``."""
    return NA if value is None else short_bytes(value) + "/s"


def percent_text(value: float | None) -> str:
    """A percentage in 4 characters at most: `` 87%``, ``100%``, ``N/A``."""
    return NA if value is None else f"{value:3.0f}%"


def fraction_of(used: float | None, total: float | None) -> float | None:
    """``used / total``, or None when either is unknown or the total is zero."""
    if used is None or not total:
        return None
    return used / total


def join_lines(lines: Sequence[Text], width: int) -> Text:
    """One Text of the lines, each cut to ``width`` cells so nothing wraps."""
    out = Text(no_wrap=True, overflow="crop", end="")
    for number, line in enumerate(lines):
        if number:
            out.append("\n")
        if line.cell_len > width:
            line = line.copy()
            line.truncate(max(0, width), overflow="ellipsis")
        out.append_text(line)
    return out
