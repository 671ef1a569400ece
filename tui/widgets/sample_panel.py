"""The shared frame of the telemetry panels: keep the history, rebuild one Text
on each update or resize (never per frame), and draw that."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import events
from textual.reactive import reactive
from textual.widget import Widget

from tui.widgets.bars import join_lines

Sample = Mapping[str, Any]


class SamplePanel(Widget):
    """A panel drawn from telemetry samples; subclasses write ``build_lines``."""

    DEFAULT_CSS = """
    SamplePanel {
        height: 1fr;
        overflow: hidden;
    }
    """

    content: reactive[Text] = reactive(Text, layout=False)

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._history: Sequence[Sample] = ()

    def on_resize(self, event: events.Resize) -> None:
        """Lay out again for the new size."""
        self._rebuild()

    def render(self) -> Text:
        """The Text built by the last update."""
        return self.content

    def _rebuild(self) -> None:
        width, height = self.content_size
        if width <= 0 or height <= 0:
            return  # not laid out yet: the first Resize builds it
        self.content = join_lines(self.build_lines(width, height), width)

    def build_lines(self, width: int, height: int) -> list[Text]:
        """The panel's lines for a ``width`` x ``height`` area."""
        raise NotImplementedError
