"""The one registry of TUI actions: it drives the bindings, the footer, the help
screen and the command palette, so they can never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str  # the App's ``action_<id>`` method
    keys: str  # comma-separated, Textual key names
    label: str  # short, for the footer
    description: str  # for help and the palette
    mutates: bool = False  # changes runs: refused in --readonly mode
    destructive: bool = False  # asks for confirmation first
    footer: bool = True


ACTIONS: tuple[Action, ...] = (
    Action(
        "new_run", "n", "New", "Start a new run: pick a workload, edit its config", mutates=True
    ),
    Action("pause", "p", "Pause", "Pause the selected run, or resume it if paused", mutates=True),
    Action(
        "release",
        "P",
        "Release",
        "Pause and release its (GPU) memory: checkpoint, end the worker",
        mutates=True,
        footer=False,
    ),
    Action(
        "fork",
        "f",
        "Fork",
        "Fork the selected run at its current step, changing config",
        mutates=True,
    ),
    Action(
        "kill", "K", "Kill", "Kill the selected run (asks first)", mutates=True, destructive=True
    ),
    Action("logs", "l", "Logs", "Show or hide the selected run's output"),
    Action(
        "details", "enter", "Details", "Config, lineage, events and exit of the run", footer=False
    ),
    Action("smoothing", "s", "Smooth", "Cycle the loss smoothing (debiased EMA)"),
    Action("log_scale", "g", "Log y", "Toggle a logarithmic y axis", footer=False),
    Action("x_axis", "x", "X axis", "Plot against step or wall time", footer=False),
    Action("next_metric", "m", "Metric", "Chart the next logged metric", footer=False),
    Action("filter", "slash", "Filter", "Filter runs by id, name, state or workload", footer=False),
    Action("sort", "o", "Sort", "Cycle the sort order of the runs table", footer=False),
    Action("help", "question_mark", "Help", "List every key"),
    Action("quit", "q", "Quit", "Leave traintop; the runs keep going"),
)

BY_ID = {a.id: a for a in ACTIONS}


def bindings() -> list[Binding]:
    """Textual bindings for every action, plus j/k as the vi-style arrows."""
    result = [
        Binding(a.keys, a.id, a.label, show=a.footer, id=a.id, tooltip=a.description)
        for a in ACTIONS
    ]
    result += [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]
    return result


def display_key(action: Action) -> str:
    names = {"slash": "/", "question_mark": "?", "enter": "Enter"}
    return ", ".join(names.get(k, k) for k in action.keys.split(","))
