"""Write only the changed span of a line, not the line from the widget's left edge.

Textual (8.x) turns a refresh of part of a line into output that starts at
the left edge of the widget and runs to the end of the changed span: one
changed cell at column 60 of the runs table resends the 60 cells before it,
and two changed spans on one line send that prefix twice. Our widgets name
the cells that changed (``refresh(region)``), so the terminal only needs
those: this replaces ``ChopsUpdate.render_segments`` with one that crops
each piece to its span. The output is what the screen would show either way,
only shorter (checked by tests/test_partial_updates.py on the real class).
"""

from __future__ import annotations

import importlib
from typing import Any

from rich.console import Console
from rich.control import Control


def render_segments(self: Any, console: Console) -> str:
    """``ChopsUpdate.render_segments``, cropped to each span on both sides."""
    parts: list[str] = []
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
            parts.append(strip.render(console))
        if y != last_y:
            parts.append("\n")
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
