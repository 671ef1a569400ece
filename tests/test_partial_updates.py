"""Only changed cells go to the terminal: the line diff, and the cropped partial update;
and a chart's line goes as few segments (escape sequences) as show it."""

from __future__ import annotations

import random
import re

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual._compositor import ChopsUpdate
from textual.geometry import Region
from textual.strip import Strip

from tui import partial_updates
from tui.widgets.cell_rows import cells_strip
from tui.widgets.line_diff import changed_regions

RED, BLUE = Style(color="red"), Style(color="blue")


def _strip(*parts: tuple[str, Style]) -> Strip:
    return Strip([Segment(text, style) for text, style in parts])


def test_the_diff_names_the_changed_cells_of_each_line() -> None:
    old = [_strip(("loss 0.1234", RED), ("  step 10", BLUE)), _strip(("same", RED))]
    new = [_strip(("loss 0.1299", RED), ("  step 11", BLUE)), _strip(("same", RED))]
    assert changed_regions(old, new) == [Region(9, 0, 11, 1)]  # "99  step 11"
    restyled = [_strip(("loss 0.1234", BLUE), ("  step 10", BLUE)), old[1]]
    assert changed_regions(old, restyled) == [Region(0, 0, 11, 1)]
    assert changed_regions(old, list(old)) == []


def test_the_same_cells_split_differently_are_no_change() -> None:
    whole = [_strip(("abcdef", RED))]
    split = [_strip(("abc", RED), ("def", RED))]
    assert changed_regions(whole, split) == []


def _update() -> ChopsUpdate:
    line = Strip([Segment("0123456789", None)])
    return ChopsUpdate([{0: line}], [(0, 4, 6)], [[10]])


def test_a_partial_update_writes_only_its_span() -> None:
    console = Console(color_system=None, force_terminal=True, width=10)
    partial_updates.install()  # an app in this process may have done so already
    unpatched = ChopsUpdate.textual_render_segments(_update(), console)  # type: ignore[attr-defined]
    patched = ChopsUpdate.render_segments(_update(), console)
    assert unpatched == "\x1b[1;1H012345"  # what Textual sends: from the widget's edge
    assert patched == "\x1b[1;5H45"  # the same screen, two cells


BASE = Style(color="grey85", bgcolor="grey11")
CURVE, OTHER = BASE + Style(color="cyan", bold=True), BASE + Style(color="red")
CURSOR = Style(color="white", bgcolor="blue")  # a blank that shows: its own background
UNDERLINED = BASE + Style(underline=True)


def test_a_chart_line_goes_as_few_segments_as_show_it() -> None:
    """Blanks join the dots beside them: a curve's line among blanks is one segment."""
    cells = list("  \u28ff \u28b8  \u2847   ")
    line = cells_strip(cells, [BASE if c == " " else CURVE for c in cells], len(cells))
    assert [(s.text, s.style) for s in line] == [("".join(cells), CURVE)]
    # Per cell, one segment a run of one style: the bytes a terminal is sent.
    per_style = Strip([Segment(c, BASE if c == " " else CURVE) for c in cells]).simplify()
    console = Console(color_system="256", force_terminal=True)
    assert len(line.render(console)) * 3 < len(per_style.render(console))


def test_every_cell_looks_as_drawn_whatever_the_segments() -> None:
    """Text, and each cell's look: a mark in its own style, a blank its background and
    the lines drawn through it (a blank on another background or underlined stays so)."""
    rng = random.Random(7)
    for _ in range(500):
        width = rng.randint(1, 24)
        cells = [rng.choice(" \u28ffx") for _ in range(width)]
        styles = [rng.choice([BASE, CURVE, OTHER, CURSOR, UNDERLINED]) for _ in range(width)]
        segments = list(cells_strip(cells, styles, width))
        assert "".join(s.text for s in segments) == "".join(cells)
        drawn = [s.style for s in segments for _ in s.text]
        for cell, wanted, style in zip(cells, styles, drawn, strict=True):
            assert style is not None
            if cell != " ":
                assert style == wanted
            assert (style.bgcolor, style.underline) == (wanted.bgcolor, wanted.underline)


# -- styles written as changes ------------------------------------------------------

_ESCAPE = re.compile(r"\x1b\[(\d+);(\d+)H|\x1b\[([0-9;]*)m|(\n)|(.)", re.DOTALL)
_ON = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "21", "51", "52", "53"}


def _screen(output: str) -> dict[tuple[int, int], tuple[str, frozenset[str], str, str]]:
    """What a terminal shows after ``output``: each written cell's character, attributes,
    colour and background (a small SGR interpreter: what Rich and Textual write)."""
    cells: dict[tuple[int, int], tuple[str, frozenset[str], str, str]] = {}
    x = y = 0
    on: set[str] = set()
    fg = bg = ""
    for move_y, move_x, sgr, _newline, char in _ESCAPE.findall(output):
        if move_y:
            y, x = int(move_y) - 1, int(move_x) - 1
        elif char:
            cells[(x, y)] = (char, frozenset(on), fg, bg)
            x += 1
        elif sgr is not None and not _newline:
            codes = sgr.split(";") if sgr else ["0"]
            while codes:
                code = codes.pop(0)
                if code == "0":
                    on, fg, bg = set(), "", ""
                elif code in _ON:
                    on.add(code)
                elif code in ("38", "48"):
                    size = 1 if codes[0] == "5" else 3
                    value = ";".join(codes[: size + 1])
                    del codes[: size + 1]
                    fg, bg = (value, bg) if code == "38" else (fg, value)
                elif code == "39":
                    fg = ""
                elif code == "49":
                    bg = ""
                elif 30 <= int(code) <= 37 or 90 <= int(code) <= 97:
                    fg = code
                else:
                    assert 40 <= int(code) <= 47 or 100 <= int(code) <= 107, code
                    bg = code
    return cells


def _styles() -> list[Style | None]:
    """Styles of every kind, made anew: a style caches its codes for the first colour
    system it is written in (Textual's ``render_style``), and a test writes in two."""
    return [None, Style(), Style(color="red"), Style(color="grey85", bgcolor="grey11"),
            Style(color="#ff8800", bgcolor="#102030", bold=True), Style(bold=True),
            Style(color="cyan", bgcolor="grey11", bold=True, underline=True),
            Style(reverse=True, color="blue"), Style(bgcolor="bright_blue", italic=True),
            Style(dim=True, strike=True, color="color(200)")]


def test_styles_written_as_changes_draw_every_cell_as_textual_does() -> None:
    """Random lines of random styles (attributes on and off, colours of each kind, the
    default): the terminal shows the same cells, in fewer bytes."""
    partial_updates.install()
    rng = random.Random(11)
    saved = 0
    for system in ("256", "truecolor"):
        console = Console(color_system=system, force_terminal=True, width=40)
        styles = _styles()
        for _ in range(200):
            lines, spans, ends = [], [], []
            for y in range(rng.randint(1, 4)):
                pieces = [(rng.choice("ab \u28ff") * rng.randint(1, 4), rng.choice(styles))
                          for _ in range(rng.randint(1, 6))]
                strip = Strip([Segment(text, style) for text, style in pieces])
                x1 = rng.randint(0, strip.cell_length - 1)
                spans.append((y, x1, rng.randint(x1 + 1, strip.cell_length)))
                lines.append({0: strip})
                ends.append([strip.cell_length])
            update = ChopsUpdate(lines, spans, ends)
            theirs = ChopsUpdate.textual_render_segments(update, console)  # type: ignore[attr-defined]
            ours = ChopsUpdate.render_segments(update, console)
            shown, wanted = _screen(ours), _screen(theirs)
            in_spans = {(x, y) for y, x1, x2 in spans for x in range(x1, x2)}
            assert set(shown) == in_spans
            assert shown == {cell: wanted[cell] for cell in in_spans}
            # The terminal is left reset, as Textual leaves it: what is written next is plain.
            assert _screen(ours + "\x1b[99;1HZ")[(0, 98)] == ("Z", frozenset(), "", "")
            saved += len(theirs) - len(ours)
    assert saved > 0
