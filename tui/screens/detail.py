"""Run detail: config, lineage, events, and why it ended."""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.client.events import RunDescription
from engine.client.run_detail import LABEL_WIDTH, DetailLine, detail_lines


def detail_markup(run: RunDescription) -> str:
    """The detail text of a run as returned by the daemon's ``get_run``."""
    return "\n".join(_markup(line) for line in detail_lines(run, "p resumes it, f forks it"))


def _markup(line: DetailLine) -> str:
    if not line.label:
        return "  " + escape(line.text)
    padded = escape(f"{line.label:<{LABEL_WIDTH - 1}} " if line.text else line.label)
    label = f"[b red]{padded}[/]" if line.alert else f"[b]{padded}[/b]"
    return label + escape(line.text)


class RunDetail(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, run: RunDescription) -> None:
        super().__init__(classes="dialog")
        self.run = run

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog-box"):
            yield Static(detail_markup(self.run), id="detail")

    def action_close(self) -> None:
        self.dismiss(None)
