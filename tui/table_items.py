"""What the runs table makes of its items (runs and sweep headers): the name each row
shows, the text a filter searches, and how a column sorts them.

Plain functions over plain objects, tested without a screen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.client.events import RunInfo
from engine.client.run_select import RunFilter, run_text
from tui.run_tree import TreeRow
from tui.state import TuiState
from tui.sweep_groups import Item, SweepGroup, group_id, sweep_labels
from tui.widgets.run_cells import sort_key

LABELS_KEPT = 256  # sweeps whose run labels are cached


def haystack(item: Item) -> str:
    """What the filter (``/``) looks in: a run's id, name, state, workload, device, sweep
    and tags (as ``traintop ls`` does); a sweep header's name."""
    return item.name.lower() if isinstance(item, SweepGroup) else run_text(item)


def item_matches(item: Item, wanted: RunFilter) -> bool:
    """Whether the filter keeps ``item``: its words are in ``haystack`` and, for a run,
    its conditions hold (a sweep header has no values, nor tags or states to leave
    out: under conditions or excluded words it shows with its runs)."""
    if not wanted.holds_words(haystack(item)):
        return False
    if isinstance(item, SweepGroup):
        return not (wanted.conditions or wanted.excluded)
    return all(condition.holds(item) for condition in wanted.conditions)


def item_sort_key(
    column: str, state: TuiState, descending: bool
) -> Callable[[Item], Any] | None:
    """How ``column`` orders runs and sweep headers (None: creation order). A header sorts
    where its first run in that order would: sorting by BEST puts the sweep holding the
    best run first."""
    by_run = sort_key(column, state)
    if by_run is None:
        return None
    run_key = by_run

    def of(item: Item) -> Any:
        if not isinstance(item, SweepGroup):
            return run_key(item)
        values = [v for r in item.runs if r in state.runs
                  and (v := run_key(state.runs[r])) is not None]
        if not values:
            return None
        return max(values) if descending else min(values)

    return of


def row_names(
    rows: list[TreeRow],
    groups: Mapping[str, SweepGroup],
    runs: Mapping[str, RunInfo],
    labels: dict[tuple[str, ...], dict[str, str]],
) -> dict[str, str]:
    """Each row's name: a sweep header its sweep's name and size, a run of a sweep the
    values that set it apart, any other run its own name.

    ``labels`` caches each sweep's labels by its runs (configs never change).
    """
    names = {}
    for row in rows:
        group = groups.get(row.id)
        if group is not None:
            count = len(group.runs)
            names[row.id] = f"{group.name} · {count} run{'s' if count != 1 else ''}"
            continue
        run = runs[row.id]
        owner = groups.get(group_id(run) or "")  # its forks in the sweep too (PBT's)
        if owner is None:
            names[row.id] = run.name
            continue
        if owner.runs not in labels:
            if len(labels) > LABELS_KEPT:  # sweeps that grew leave old entries behind
                labels.clear()
            labels[owner.runs] = sweep_labels(owner, runs)
        names[row.id] = labels[owner.runs].get(row.id, run.name)
    return names
