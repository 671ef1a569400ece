"""The queues (``Q``): each queue's limit, what runs and waits in it, and whether it is
held; the warm pool that starts their runs; the selected queue's line of waiting runs,
in the order they start.

``p`` holds the selected queue's line or lets it go (``traintop queue NAME --pause`` /
``--resume``), ``+`` and ``-`` raise and lower its limit, ``f`` turns pausing on a
failure on or off. Refreshed every second while open, from the engine's ``queues``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.client.client import EngineError, EngineUnavailable
from engine.client.events import ProtocolError
from engine.client.queue_text import QUEUE_HEADER, pool_text, queue_row, waiting_lines
from engine.common.format import duration_text, shown

REFRESH_S = 1.0
WAITING_SHOWN = 12  # the head of the selected queue's line; `traintop queue` lists it all
KEYS = "p hold or let go · + / - its limit · f pause on a failure · Esc close"

Ask = Callable[..., Awaitable[Any]]


def limit_after(queue: dict[str, Any], change: int) -> int | None:
    """The limit ``+`` (1) or ``-`` (-1) sets: one more or one fewer, at least 1; a queue
    with no limit gets one below what it runs now with ``-``, and keeps none with ``+``."""
    parallel = queue["parallel"]
    if parallel is None:
        return None if change > 0 else max(1, int(queue["running"]) - 1)
    return max(1, int(parallel) + change)


class QueuesScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,Q", "close", "Close"),
        Binding("p", "hold", "Hold or go"),
        Binding("plus,equals_sign", "limit(1)", "Limit +1"),
        Binding("minus", "limit(-1)", "Limit -1"),
        Binding("f", "pause_on_failure", "Pause on failure"),
    ]

    def __init__(self, ask: Ask, readonly: bool = False, first: str | None = None,
                 eta: Callable[[str], float | None] = lambda queue: None) -> None:
        super().__init__(classes="dialog")
        self.ask = ask
        self.eta = eta  # seconds until a queue's runs have all ended (None: unknown)
        self.readonly = readonly
        self.first = first  # the queue selected when it opens (the selected run's)
        self.queues: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Static("[b]Queues[/b]", id="dialog-title")
            # Docked: laid out first, so the keys stay in sight and the rest scrolls.
            yield Static(escape(KEYS + ("  [readonly]" if self.readonly else "")),
                         id="queue-keys")
            with VerticalScroll(id="dialog-fields"):
                table: DataTable[str] = DataTable(id="queues", cursor_type="row")
                table.add_columns(*QUEUE_HEADER)
                yield table
                yield Static("", id="queue-pool")
                yield Static("", id="queue-waiting")

    def on_mount(self) -> None:
        self.query_one("#queues", DataTable).focus()  # ↑ ↓ pick a queue
        self._refresh()
        self.set_interval(REFRESH_S, self._refresh)

    @work(exclusive=True, group="queues")
    async def _refresh(self) -> None:
        try:
            queues = await self.ask("queues", waiting=WAITING_SHOWN)
            pool = (await self.ask("status")).get("warm_pool")
        except (EngineError, EngineUnavailable, ProtocolError) as exc:
            self.query_one("#queue-waiting", Static).update(escape(f"engine: {exc}"))
            return
        if isinstance(pool, dict):  # what starts the runs the queues let go
            self.query_one("#queue-pool", Static).update(escape(f"warm pool: {pool_text(pool)}"))
        self.show(queues)

    def show(self, queues: list[dict[str, Any]]) -> None:
        """Draw ``queues``, keeping the selected one selected."""
        table: DataTable[str] = self.query_one("#queues", DataTable)
        chosen = self.selected if self.queues else {"name": self.first}
        self.queues = queues
        rows = [queue_row(q) for q in queues]
        if [table.get_row_at(i) for i in range(table.row_count)] != rows:
            table.clear()
            for row in rows:
                table.add_row(*row)
            names = [q["name"] for q in queues]
            if chosen is not None and chosen["name"] in names:
                table.move_cursor(row=names.index(chosen["name"]))
        self._show_waiting()

    @property
    def selected(self) -> dict[str, Any] | None:
        row = self.query_one("#queues", DataTable).cursor_row
        return self.queues[row] if 0 <= row < len(self.queues) else None

    def _show_waiting(self) -> None:
        queue = self.selected
        text = ""
        if queue is not None:
            name = shown(queue["name"])
            lines = waiting_lines(queue, WAITING_SHOWN)
            eta = self.eta(queue["name"])
            until = "" if eta is None else f"; all of its runs ended in about {duration_text(eta)}"
            head = f"waiting in {name}, in the order they start{until}:"
            text = "\n".join([head, *lines]) if lines else f"nothing waits in {name}{until}"
        self.query_one("#queue-waiting", Static).update(escape(text))

    def on_data_table_row_highlighted(self) -> None:
        self._show_waiting()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_hold(self) -> None:
        queue = self.selected
        if queue is not None:
            paused = not queue["paused"]
            self._set(queue, "held" if paused else "let go", paused=paused)

    def action_limit(self, change: int) -> None:
        queue = self.selected
        if queue is None:
            return
        limit = limit_after(queue, change)
        if limit == queue["parallel"]:
            self.notify(f"queue {shown(queue['name'])} has "
                        + ("no limit" if limit is None else f"a limit of {limit}, the least"))
            return
        self._set(queue, "no limit" if limit is None else f"{limit} at once", parallel=limit)

    def action_pause_on_failure(self) -> None:
        queue = self.selected
        if queue is not None:
            on = not queue["pause_on_failure"]
            what = "pauses on a failure" if on else "goes on after a failure"
            self._set(queue, what, pause_on_failure=on)

    @work(group="queue-set")
    async def _set(self, queue: dict[str, Any], done: str, **changes: Any) -> None:
        """Change the queue (``queue_set``) and say ``done`` of it."""
        if self.readonly:
            self.notify("read-only: queues are not changed", severity="warning")
            return
        try:
            await self.ask("queue_set", name=queue["name"], **changes)
        except (EngineError, EngineUnavailable, ProtocolError) as exc:
            self.notify(escape(str(exc)), severity="error", title="queue change refused")
            return
        self.notify(f"queue {shown(queue['name'])}: {done}")
        self._refresh()
