"""The config diff of runs (the ``d`` key): only the keys whose values differ, then
where each run stands (state, step, best loss, last values)."""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.client.events import RunInfo
from engine.common.config_diff import diff_table, runs_diff
from engine.common.format import format_table


def diff_text(runs: list[RunInfo]) -> str:
    """What ``traintop diff`` prints for ``runs``: a table of the differing keys."""
    rows = [{"id": r.id, "name": r.name, "workload": r.workload, "config": r.config,
             "state": r.state, "step": r.step, "last": r.last, "best": r.best,
             "tags": list(r.tags)} for r in runs]
    diff = runs_diff(rows)
    table = format_table(*diff_table(rows, diff))
    return table if diff else f"no config differences\n{table}"


class ConfigDiff(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,enter,d", "close", "Close")]

    def __init__(self, runs: list[RunInfo]) -> None:
        super().__init__(classes="dialog")
        self.runs = runs

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog-box"):
            yield Static(escape(diff_text(self.runs)), id="diff")

    def action_close(self) -> None:
        self.dismiss()
