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
    Action(
        "retry_run",
        "N",
        "Retry",
        "Retry with changes: a new run, its workload and config filled in from the selected "
        "run; on a searched sweep's row, more trials for it",
        mutates=True,
        footer=False,
    ),
    Action(
        "pause",
        "p",
        "Pause",
        "Pause the selected run; resume it if paused (if failed: from its last checkpoint); "
        "on a sweep's row, all its running runs, or all its paused ones",
        mutates=True,
    ),
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
        "kill", "K", "Kill",
        "Kill the selected run, or on a sweep's row every run of it not ended (asks first)",
        mutates=True, destructive=True,
    ),
    Action(
        "annotate", "e", "Tags",
        "Edit the selected run's tags (words '/' finds) and its note",
        mutates=True, footer=False,
    ),
    Action(
        "remove", "D,delete", "Remove",
        "Remove the selected ended run for good: metrics, logs, checkpoints, or only its "
        "checkpoints (asks first); on a sweep's row, every ended run of it",
        mutates=True, destructive=True, footer=False,
    ),
    Action(
        "sweep",
        "S",
        "Sweep",
        "Start a sweep: workload, axes as the CLI takes them, trials, early stopping or "
        "PBT, queue",
        mutates=True,
        footer=False,
    ),
    Action(
        "sweep_view",
        "v",
        "Scatter",
        "Sweep view: the runs' best or last loss against a setting; G there: a point a "
        "setting; p there: parallel coordinates; j/k: pick a run, Enter: select it; n: a "
        "closer sweep",
        footer=False,
    ),
    Action("queue_up", "left_square_bracket", "Queue up",
           "Move the selected queued run up its queue (starts sooner)", mutates=True,
           footer=False),
    Action("queue_down", "right_square_bracket", "Queue down",
           "Move the selected queued run down its queue (starts later)", mutates=True,
           footer=False),
    Action("queues", "Q", "Queues",
           "The queues: each one's limit, what runs and waits in it, held or not; there p "
           "holds the selected queue or lets it go, + and - change its limit", footer=False),
    Action("logs", "l", "Logs", "Show or hide the selected run's output"),
    Action(
        "details", "enter", "Details", "Config, lineage, events and exit of the run", footer=False
    ),
    Action(
        "diff",
        "d",
        "Diff",
        "Compare the marked runs (or a sweep's runs on its row, or the run and its "
        "parent): the config keys that differ, then state, step, best loss and last metrics",
        footer=False,
    ),
    Action(
        "columns", "a", "Columns",
        "Add or take away columns of config values or metrics (lr, val_loss, max:acc)",
        footer=False,
    ),
    Action("smoothing", "s", "Smooth", "Cycle the loss smoothing (debiased EMA)"),
    Action("log_scale", "g", "Log y", "Toggle a logarithmic y axis", footer=False),
    Action("all_y", "y", "Fit y",
           "Fit the y axis to every value, or leave out those far outside the rest (a "
           "diverged run's), as it does at first", footer=False),
    Action("x_axis", "x", "X axis",
           "Plot against step, time since each run's first point, or time of day", footer=False),
    Action("next_metric", "m", "Metric", "Chart the next logged metric", footer=False),
    Action("group_curves", "G", "Group",
           "Chart runs alike but for their seeds (or alike in the keys named) as one mean "
           "curve, with a band from the lowest to the highest; again: ungroup", footer=False),
    Action("zoom_last", "z", "Last N",
           "Chart the last 1k, 10k or 100k steps (on a time axis 10m, 1h, 6h) as they come, "
           "then all", footer=False),
    Action("zoom_in", "plus,equals_sign", "Zoom in",
           "Zoom the chart in around its cursor (or its end)", footer=False),
    Action("zoom_out", "minus", "Zoom out", "Zoom the chart out: twice the steps",
           footer=False),
    Action("pan_left", "less_than_sign", "Pan left", "Move the zoomed chart back a quarter",
           footer=False),
    Action("pan_right", "greater_than_sign", "Pan right",
           "Move the zoomed chart on a quarter; at the end it follows", footer=False),
    Action("chart_cursor_left", "left", "Cursor left",
           "Move the chart's cursor left: its step and each run's value there", footer=False),
    Action("chart_cursor_right", "right", "Cursor right",
           "Move the chart's cursor right (a click on the chart puts it there)", footer=False),
    Action("zoom_reset", "Z", "All steps", "Chart all steps again, without the cursor",
           footer=False),
    Action("filter", "slash", "Filter",
           "Filter runs: every word must occur in the id, name, state, workload, device, sweep "
           "or tags, every condition (lr<1e-3) hold; after '-' (-#old) leaves runs out",
           footer=False),
    Action("sort", "o", "Sort", "Sort the runs by the next column (forks stay under their parent)",
           footer=False),
    Action("sort_reverse", "O", "Reverse", "Reverse the sort direction", footer=False),
    Action("fold", "c", "Fold", "Fold or unfold the selected run's forks (on a fork: its parent's)",
           footer=False),
    Action("fold_all", "C", "Fold all", "Fold every run's forks, or unfold them all",
           footer=False),
    Action("mark", "space", "Mark", "Mark or unmark the run: the chart overlays the marked runs",
           footer=False),
    Action("pin", "t", "Pin", "Pin or unpin the run: pinned runs stay at the top of the table "
           "and on the chart (marked ⚑)", footer=False),
    Action("clear_marks", "u", "Unmark", "Unmark every run: the chart shows the family again",
           footer=False),
    Action("mark_shown", "M", "Mark shown",
           "Mark every run the table shows (filtered with /), or unmark them if all are",
           footer=False),
    Action("cursor_down", "down,j", "Down", "Select the next run", footer=False),
    Action("cursor_up", "up,k", "Up", "Select the previous run", footer=False),
    Action("page_down", "pagedown", "Page down", "Select a page further down", footer=False),
    Action("page_up", "pageup", "Page up", "Select a page further up", footer=False),
    Action("cursor_first", "home", "First", "Select the first run", footer=False),
    Action("cursor_last", "end", "Last", "Select the last run", footer=False),
    Action("toggle_notify", "B", "Notify",
           "Turn the bell and desktop notifications of runs that stop on or off", footer=False),
    Action("help", "question_mark", "Help", "List every key"),
    Action("quit", "q", "Quit", "Leave traintop; the runs keep going"),
)

BY_ID = {a.id: a for a in ACTIONS}


def bindings() -> list[Binding]:
    """Textual bindings for every action."""
    return [
        Binding(a.keys, a.id, a.label, show=a.footer, id=a.id, tooltip=a.description)
        for a in ACTIONS
    ]


def display_key(action: Action) -> str:
    names = {"slash": "/", "question_mark": "?", "enter": "Enter", "down": "↓", "up": "↑",
             "pagedown": "PgDn", "pageup": "PgUp", "home": "Home", "end": "End", "space": "Space",
             "left_square_bracket": "[", "right_square_bracket": "]", "plus": "+",
             "equals_sign": "=", "minus": "-", "less_than_sign": "<", "greater_than_sign": ">",
             "left": "←", "right": "→", "delete": "Del"}
    return ", ".join(names.get(k, k) for k in action.keys.split(","))


# The keys of the actions that change runs: said, not silently ignored, in --readonly mode.
READONLY_KEYS = frozenset(key.strip() for a in ACTIONS if a.mutates for key in a.keys.split(","))
