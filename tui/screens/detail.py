"""Run detail: config, lineage, events, and why it ended."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.format import condition_text, skipped_text


def detail_markup(run: dict[str, Any]) -> str:
    """The detail text of a run as returned by the daemon's ``get_run``."""
    lines = [f"[b]{run['id']}[/b]  {escape(run['name'])}  [dim]{escape(run['workload'])}[/]"]
    state = run["state"] + (" (memory released)" if run.get("released") else "")
    if run.get("condition"):
        state += f" [red]({escape(condition_text(run['condition']))})[/red]"
    total = f" / {run['total_steps']}" if run.get("total_steps") else ""
    lines.append(f"state [b]{state}[/b] at step {run['step']}{total} on {run['device']}")
    if run.get("parent_id"):
        lines.append(f"forked from [b]{run['parent_id']}[/b] at step {run['fork_step']}")
    if run.get("children"):
        lines.append("forks: " + ", ".join(run["children"]))
    skipped = skipped_text(run)
    if skipped:
        lines.append(f"[b]skipped[/b] {skipped}")
    if run.get("exit_reason"):
        lines.append(f"[b]exit[/b] {escape(str(run['exit_reason']))} (code {run['exit_code']})")
    if run.get("resume_point"):
        lines.append(f"[b]resume[/b] from step {run['resume_point']['step']}, its last complete "
                     "checkpoint (p resumes it, f forks it)")
    lines.append("")
    lines.append("[b]config[/b]")
    lines += [f"  {escape(k)} = {escape(repr(v))}" for k, v in sorted(run["config"].items())]
    if run.get("last"):
        lines.append("[b]last values[/b]")
        lines += [
            f"  {escape(k)} = {v:.6g}" if isinstance(v, float) else f"  {escape(k)} = {v}"
            for k, v in sorted(run["last"].items())
        ]
    lines.append("[b]events[/b]")
    for event in run.get("events", []):
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(event["time"]))
        lines.append(f"  {when}  {event['state']:<9} {escape(event['reason'])}")
    if run.get("stderr_tail"):
        lines.append("[b red]stderr (last lines)[/]")
        lines += ["  " + escape(line) for line in run["stderr_tail"].splitlines()]
    lines.append(f"[dim]{escape(run.get('dir', ''))}[/]"
                 + (" [b red](missing: deleted?)[/]" if run.get("dir_missing") else ""))
    return "\n".join(lines)


class RunDetail(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__(classes="dialog")
        self.run = run

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog-box"):
            yield Static(detail_markup(self.run), id="detail")

    def action_close(self) -> None:
        self.dismiss(None)
