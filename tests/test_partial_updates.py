"""Only changed cells go to the terminal: the line diff, and the cropped partial update."""

from __future__ import annotations

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual._compositor import ChopsUpdate
from textual.geometry import Region
from textual.strip import Strip

from tui import partial_updates
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
