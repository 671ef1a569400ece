"""The help screen, written from the action registry."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.keys import ACTIONS, display_key


def _literal(text: str) -> str:
    """``text`` as markup that shows it as it is: a key such as ``[`` opens no tag."""
    return text.replace("[", "\\[")


def help_markup(readonly: bool) -> str:
    lines = ["[b]traintop keys[/b]", ""]
    for action in ACTIONS:
        note = "  [dim](off: --readonly)[/]" if readonly and action.mutates else ""
        key = _literal(f"{display_key(action):>8}")
        lines.append(f"  [b]{key}[/b]  {_literal(action.description)}{note}")
    lines += ["", "  [b]ctrl+p[/b]  command palette    [b]esc[/b]  close"]
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, readonly: bool) -> None:
        super().__init__(classes="dialog")
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog-box"):
            yield Static(help_markup(self.readonly))

    def action_close(self) -> None:
        self.dismiss(None)
