"""What each column of the runs table shows for a run, how wide it is, how it sorts."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from rich.text import Text

from engine.client.eta import eta_text
from engine.client.events import RunInfo
from engine.client.run_detail import retried_mark
from engine.client.run_select import RUN_SORTS, finite, run_value, value_order, value_text
from engine.client.sweep_summary import search_text
from engine.common.format import duration_text, format_bytes, format_number, shown
from engine.common.runs import stopped_as
from tui.run_tree import TreeRow
from tui.state import TuiState
from tui.sweep_groups import SweepGroup, best_of, state_counts

Run = RunInfo

STATE_LOOK = {
    "queued": ("…", "bright_black"),
    "starting": ("◌", "cyan"),
    "running": ("▶", "green"),
    "paused": ("‖", "yellow"),
    "finished": ("✔", "blue"),
    "failed": ("✘", "red"),
    "killed": ("■", "magenta"),
}
COLUMNS = ("ID", "NAME", "STATE", "STEP", "LOSS", "BEST", "EMA", "STEP/S", "ETA", "GPU", "DEV")
# What a narrow terminal (80 columns) keeps; the progress bar goes too.
COMPACT_COLUMNS = ("ID", "NAME", "STATE", "STEP", "LOSS", "EMA", "ETA")
# "created" is the table's own order (forks under their parent, oldest first).
SORT_COLUMNS = ("created", *COLUMNS)
NAME_WIDTH = (8, 32)  # the NAME column's narrowest and widest
NAME_WIDTH_COMPACT = 18
BAR_WIDTH = 6
# Widths that do not depend on the data (at least the header's).
# Values take ~5 of their 7 (1.234); a longer one (1.234e-05) widens its column for good.
FIXED_WIDTHS = {"ID": 6, "STATE": 11, "LOSS": 7, "BEST": 7, "EMA": 7, "STEP/S": 6, "ETA": 6,
                "GPU": 8}
PIN = "⚑"  # before a pinned run's name (``t``)
# A queued run's reason is cut to this in the STATE column (the detail has all of it).
QUEUED_WIDTH = 48


def state_text(run: Run, place: int | None = None) -> Text:
    """The STATE cell: glyph and state, or the condition that needs the user; a queued
    run's ``place`` in its queue (1: starts next) and why it waits; a run its sweep
    stopped early, for its loss diverging, or replaced by a fork of a better one (PBT; the
    step and why: in its detail)."""
    glyph, style = STATE_LOOK.get(run.state, ("?", ""))
    label = "released" if run.state == "paused" and run.released else run.state
    if run.state == "queued":  # waiting is normal: said, not alarmed
        label = f"queued #{place}" if place else "queued"
        if run.condition:
            label = f"{label}: {run.condition}"
        if len(label) > QUEUED_WIDTH - 2:
            label = label[: QUEUED_WIDTH - 3] + "…"
    elif run.stopped_early:  # its sweep's rule stopped it (or PBT replaced it): as meant
        label = stopped_as(run.stopped_early)
    elif run.condition:  # e.g. "disk full": what needs the user now, over the state
        label, style = run.condition, "bold red"
    return Text(f"{glyph} {label}{retried_mark(run)}", style=style)


def queue_places(runs: Iterable[Run]) -> dict[str, int]:
    """Each queued run's place in its queue, 1 first: higher priority, then queue order
    (``queue_pos``), then age, as the engine starts them."""
    lines: dict[str, list[Run]] = {}
    for run in runs:
        if run.state == "queued":
            lines.setdefault(run.queue, []).append(run)
    places = {}
    for line in lines.values():
        # The store's order: SQLite puts a run without a position (an old row) first.
        line.sort(key=lambda r: (-r.priority, r.queue_pos is not None, r.queue_pos or 0.0,
                                 r.created, r.id))
        places.update({r.id: n for n, r in enumerate(line, 1)})
    return places


def progress_text(run: Run, bar: bool = True) -> Text:
    step, total = run.step, run.total_steps
    if not total or not bar:
        return Text(f"{step}/{total}" if total else str(step))
    fraction = min(1.0, step / total)
    filled = round(fraction * BAR_WIDTH)
    return Text.assemble(
        (f"{step}/{total} ", ""),
        ("█" * filled, "green"),
        ("░" * (BAR_WIDTH - filled), "bright_black"),
    )


def name_text(
    name: str, row: TreeRow, width: int, style: str = "", pinned: bool = False,
    tags: tuple[str, ...] = (),
) -> Text:
    """The name, indented under its parent, after PIN if ``pinned``, with ``+N`` when its
    forks are folded away, then its tags (``#best``) in what room the name leaves."""
    indent = "  " * (row.depth - 1) + "└ " if row.depth else ""
    if pinned:
        indent += PIN + " "
    suffix = f" +{row.hidden}" if row.hidden else ""
    room = width - len(indent) - len(suffix)
    if len(name) > room:
        name = name[: max(room - 1, 0)] + "…"
    text = Text(indent)
    text.append(name, style=style)
    if suffix:
        text.append(suffix, style="bold bright_black")
    left = room - len(name) - 1
    if tags and left >= 3:  # room for at least "#x…"
        said = " ".join("#" + shown(t) for t in tags)
        text.append(" " + (said if len(said) <= left else said[: left - 1] + "…"),
                    style="cyan")
    return text


def value_cells(
    run: Run, state: TuiState, compact: bool, place: int | None = None,
    extra: Iterable[str] = (),
) -> dict[str, Text]:
    """Every column but NAME (which depends on the row) for one run (``place``: its place
    in its queue while queued; ``extra``: the values the user added as columns, ``a``)."""
    rate = state.steps_per_second(run.id)
    gpu = state.gpu_memory(run.id)
    return {
        **{name: Text(value_text(run_value(run, name))) for name in extra},
        "ID": Text(run.id),
        "STATE": state_text(run, place),
        "STEP": progress_text(run, bar=not compact),
        "LOSS": Text(format_number(run.last.get(run.loss_key))),
        "BEST": Text(format_number(run.best.get(run.loss_key))),
        "EMA": Text(format_number(state.smoothed_last(run.id))),
        "STEP/S": Text(f"{rate:.1f}" if rate is not None else "-"),
        "ETA": Text(duration_text(state.eta_seconds(run.id))),
        "GPU": Text(format_bytes(gpu) if gpu else "-"),
        "DEV": Text(run.device or ""),
    }


def group_cells(
    group: SweepGroup, state: TuiState, compact: bool, extra: Iterable[str] = ()
) -> dict[str, Text]:
    """Every column but NAME of a sweep's header row: its runs by state, its best loss,
    when its training and queued runs will all have ended, and a search's trials so far
    (STEP: ``tpe 14/40``)."""
    best = best_of(group.runs, state.runs)
    cells = {column: Text("") for column in (*COLUMNS, *extra)}
    cells["ID"] = Text("sweep", style="bold bright_black")
    cells["STATE"] = Text(state_counts(group, state.runs))
    cells["BEST"] = Text(format_number(best[1] if best else None), style="bold")
    first = state.runs.get(group.runs[0])
    eta = state.runs_eta(group.runs)
    if eta is not None:
        cells["ETA"] = Text(eta_text(eta, first.early_stop if first else None), style="bold")
    search = search_text([run for r in group.runs if (run := state.runs.get(r))])
    if search:  # a search's trials made of all it will make
        cells["STEP"] = Text(search, style="bold")
    return cells


def column_widths(
    columns: Iterable[str], runs: Iterable[Run], rows: Iterable[TreeRow], compact: bool,
    names: Mapping[str, str], pinned: Collection[str] = (),
    places: Mapping[str, int] | None = None, room: int | None = None,
    grown: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Widths that fit every run's cells (the NAME column, ``names`` by row, is capped),
    from cheap lengths, none under its ``grown`` width (widened for good by a long value);
    with ``room`` (the columns the cells may take in all), fitted to it: NAME gives way
    first when there is too little, and when there is more, a queued run's STATE (its
    place and why it waits, by ``places``) gets it, then a long NAME."""
    widths = {c: max(len(c) + 1, FIXED_WIDTHS.get(c, 0)) for c in columns}
    runs_by_id = {r.id: r for r in runs}
    name_cap = NAME_WIDTH_COMPACT if compact else NAME_WIDTH[1]
    name = NAME_WIDTH[0]
    for row in rows:
        suffix = len(f" +{row.hidden}") if row.hidden else 0
        pin = len(PIN) + 1 if row.id in pinned else 0
        run = runs_by_id.get(row.id)
        if run is not None and run.tags:  # " #a #b"
            suffix += sum(len(tag) + 2 for tag in run.tags)
        name = max(name, 2 * row.depth + pin + len(names[row.id]) + suffix)
    widths["NAME"] = min(name, name_cap)
    totals = [len(str(r.total_steps or r.step or 0)) for r in runs_by_id.values()]
    digits = max(totals, default=1)
    widths["STEP"] = max(widths["STEP"], 2 * digits + 1 + (0 if compact else BAR_WIDTH + 1))
    if "DEV" in widths:
        devices = (len(r.device or "") for r in runs_by_id.values())
        widths["DEV"] = max(widths["DEV"], *devices, 0)
    for column in [c for c in widths if c not in COLUMNS]:  # the user's own (``a``)
        values = (len(value_text(run_value(r, column))) for r in runs_by_id.values())
        widths[column] = max(widths[column], *values, 0)
    for column, width in (grown or {}).items():
        if column in widths:
            widths[column] = max(widths[column], width)
    if room is None:
        return widths
    spare = room - sum(widths.values())
    if spare < 0:
        widths["NAME"] = max(NAME_WIDTH[0], widths["NAME"] + spare)
        return widths
    places = places or {}
    states = (state_text(r, places.get(r.id)).cell_len for r in runs_by_id.values()
              if r.state == "queued" or r.condition)
    for column, want in (("STATE", max(states, default=0)), ("NAME", name)):
        grow = min(spare, max(0, want - widths[column]))
        widths[column] += grow
        spare -= grow
    return widths


def sort_key(column: str, state: TuiState) -> Callable[[Run], Any] | None:
    """How ``column`` orders runs (None: creation order). Unknown values sort last.

    The columns ``traintop ls`` has too sort by its rules (``RUN_SORTS``), and so do the
    values the user added as columns (``a``), as ``ls --sort`` does."""
    shared = RUN_SORTS.get("device" if column == "DEV" else column.lower())
    if shared is not None:
        return shared
    keys: Mapping[str, Callable[[Run], Any]] = {
        "EMA": lambda r: finite(state.smoothed_last(r.id)),
        "STEP/S": lambda r: state.steps_per_second(r.id),
        "ETA": lambda r: state.eta_seconds(r.id),
        "GPU": lambda r: state.gpu_memory(r.id),
    }
    if column in keys or column in COLUMNS:
        return keys.get(column)
    return lambda r: value_order(run_value(r, column))  # a value the user added (``a``)


# Columns whose values move while runs train: a table sorted by one re-sorts now and then.
LIVE_SORTS = frozenset({"STEP", "LOSS", "BEST", "EMA", "STEP/S", "ETA", "GPU"})
