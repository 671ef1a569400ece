"""Write only the changed span of a line, not the line from the widget's left edge.

Textual (8.x) turns a refresh of part of a line into output that starts at
the left edge of the widget and runs to the end of the changed span: one
changed cell at column 60 of the runs table resends the 60 cells before it,
and two changed spans on one line send that prefix twice. Our widgets name
the cells that changed (``refresh(region)``), so the terminal only needs
those: this replaces ``ChopsUpdate.render_segments`` with one that crops
each piece to its span. The output is what the screen would show either way,
only shorter (checked by tests/test_partial_updates.py on the real class).

It also writes each style as a change from the one before: Textual resets the
terminal after every segment and sets the next style whole (``\x1b[0m`` then
``\x1b[1;38;5;67;48;5;233m``), where a curve meeting another on a chart's line
needs only its colour (``\x1b[38;5;80m``). A style that turns an attribute off
(bold, underline...) still starts from a reset; one with a hyperlink is written
as Rich writes it. The style carries over from one span to the next (a move of the
cursor leaves it as it is); the update ends reset, as Textual leaves the terminal.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, NamedTuple

from rich.color import ColorSystem
from rich.console import Console
from rich.control import Control
from rich.style import Style
from textual.strip import Strip

RESET = "\x1b[0m"
# SGR codes of the attributes a style can turn on, as Rich writes them.
_ATTRIBUTES = (("bold", "1"), ("dim", "2"), ("italic", "3"), ("underline", "4"),
               ("blink", "5"), ("blink2", "6"), ("reverse", "7"), ("conceal", "8"),
               ("strike", "9"), ("underline2", "21"), ("frame", "51"), ("encircle", "52"),
               ("overline", "53"))


class _Sgr(NamedTuple):
    """A style as SGR codes: the attributes it turns on, its colour and its background."""

    on: frozenset[str]
    fg: tuple[str, ...]  # () is the terminal's default
    bg: tuple[str, ...]

    @staticmethod
    @lru_cache(maxsize=4096)  # styles are few and shared, updates many (as Textual's own)
    def of(style: Style, system: ColorSystem) -> _Sgr | None:
        """``style``'s codes in colour ``system``; None for a style that sets nothing."""
        sgr = _Sgr(
            frozenset(code for name, code in _ATTRIBUTES if getattr(style, name)),
            () if style.color is None else tuple(style.color.downgrade(system).get_ansi_codes()),
            () if style.bgcolor is None
            else tuple(style.bgcolor.downgrade(system).get_ansi_codes(foreground=False)),
        )
        return sgr if sgr.on or sgr.fg or sgr.bg else None

    def whole(self) -> list[str]:
        return [*sorted(self.on, key=int), *self.fg, *self.bg]

    def after(self, before: _Sgr | None) -> str:
        """The escape sequence that turns ``before`` (None: a reset terminal) into this."""
        if before is None:
            return f"\x1b[{';'.join(self.whole())}m"
        if not before.on <= self.on:  # an attribute goes off: start from a reset
            return f"\x1b[0;{';'.join(self.whole())}m"
        codes = sorted(self.on - before.on, key=int)
        if self.fg != before.fg:
            codes += self.fg or ("39",)
        if self.bg != before.bg:
            codes += self.bg or ("49",)
        return f"\x1b[{';'.join(codes)}m" if codes else ""


class _Pen:
    """Writes strips as style changes, remembering the style the terminal is left in."""

    def __init__(self, console: Console) -> None:
        self.system = console._color_system or ColorSystem.TRUECOLOR
        self.now: _Sgr | None = None  # None: reset
        self.parts: list[str] = []

    def write(self, strip: Strip) -> None:
        parts = self.parts
        for text, style, _control in strip:
            if not text:
                continue
            if style is not None and style.link:  # Rich's own: the link wraps the text
                rendered = Strip.render_style(style, text, color_system=self.system)
                parts.append(self.reset() + rendered)
                continue
            sgr = None if style is None else _Sgr.of(style, self.system)
            if sgr is None:
                parts.append(self.reset() + text)
            else:
                parts.append(sgr.after(self.now) + text)
                self.now = sgr

    def reset(self) -> str:
        """A reset, if the terminal is not in one."""
        was, self.now = self.now, None
        return "" if was is None else RESET


def render_segments(self: Any, console: Console) -> str:
    """``ChopsUpdate.render_segments``, cropped to each span on both sides, its styles
    written as changes."""
    pen = _Pen(console)
    parts = pen.parts
    last_y = self.spans[-1][0]
    for y, x1, x2 in self.spans:
        line, ends = self.chops[y], self.chop_ends[y]
        for end, (x, strip) in zip(ends, line.items(), strict=False):
            if strip is None or x >= x2 or end <= x1:
                continue
            start, stop = max(x, x1), min(end, x2)
            if (start, stop) != (x, end):
                strip = strip.crop(start - x, stop - x)
            parts.append(Control.move_to(start, y).segment.text)
            pen.write(strip)
        if y != last_y:  # (a row above another span's: no scroll paints in the pen's colour)
            parts.append("\n")
    parts.append(pen.reset())
    return "".join(parts)


def install() -> None:
    """Use the cropping writer for every partial screen update of this process."""
    # A private class: should a Textual release move or reshape it, keep its own writer.
    chops_update = getattr(importlib.import_module("textual._compositor"), "ChopsUpdate", None)
    if chops_update is None or not hasattr(chops_update, "render_segments"):
        return
    if not hasattr(chops_update, "textual_render_segments"):  # kept for comparison in tests
        chops_update.textual_render_segments = chops_update.render_segments
    chops_update.render_segments = render_segments
