"""Sweeps as groups of the runs table: a header row per sweep, its runs under it.

A sweep's runs carry its name (``RunInfo.sweep``); the table shows them under
one header row that counts them by state and holds the best loss of any. Under
the header each run is named by the config values that set it apart from the
others of its sweep (``lr=1e-3 batch=32``), its full name being the sweep's
name and those same values. Plain functions, tested without a screen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.client import sweep_summary
from engine.client.events import RunInfo
from engine.common.settings import value_text

GROUP_PREFIX = "sweep:"  # a group's row id; no run id has a colon
# The states a header counts, each with its glyph, in the order they show; "stopped":
# killed by the sweep's rule (stopped early, replaced, diverged), as the sweep meant.
COUNTED = (("running", "▶"), ("queued", "…"), ("finished", "✔"), ("paused", "‖"),
           ("starting", "◌"), ("failed", "✘"), ("stopped", "□"), ("killed", "■"))


@dataclass(frozen=True)
class SweepGroup:
    """One sweep as the table shows it: its name and its runs in creation order."""

    id: str
    name: str
    created: float  # its first run's: the group sits where its sweep began
    runs: tuple[str, ...]
    # The run all of it was forked from (``traintop fork RUN lr=A,B``), if one was: the
    # header sits under that run, and the sweep's runs under the header.
    parent: str | None = None


Item = RunInfo | SweepGroup


def group_id(run: RunInfo) -> str | None:
    """The row id of the group ``run`` belongs to, or None."""
    return GROUP_PREFIX + run.sweep if run.sweep else None


def parent_of(item: Item, items: Mapping[str, Item]) -> str | None:
    """The tree the table shows: a fork under the run it was forked from, a sweep's run
    under its sweep's header, and a sweep forked from one run (its header) under that
    run; ``items`` holds the runs and the headers."""
    if isinstance(item, SweepGroup):
        return item.parent
    gid = group_id(item)
    if item.parent_id is None:
        return gid
    group = items.get(gid or "")
    if isinstance(group, SweepGroup) and group.parent == item.parent_id:
        return gid
    return item.parent_id  # a fork of a run of its own sweep (PBT's), or of no sweep


def tree_parent(items: Mapping[str, Item]) -> Callable[[Item], str | None]:
    """``parent_of`` over ``items``, as ``tui.run_tree.build_rows`` takes it."""
    return lambda item: parent_of(item, items)


def _forked_from(found: list[RunInfo]) -> str | None:
    """The one run outside ``found`` that every run of it comes from, directly or by a
    fork within; None if some run was started afresh or they come from several."""
    inside = {r.id for r in found}
    outside = {r.parent_id for r in found if r.parent_id not in inside}
    return outside.pop() if len(outside) == 1 else None


def sweep_groups(runs: Mapping[str, RunInfo]) -> dict[str, SweepGroup]:
    """Every sweep that has a run here, by its row id."""
    members: dict[str, list[RunInfo]] = {}
    for run in runs.values():
        gid = group_id(run)
        if gid is not None:
            members.setdefault(gid, []).append(run)
    groups = {}
    for gid, found in members.items():
        found.sort(key=lambda r: (r.created, r.id))
        groups[gid] = SweepGroup(gid, gid.removeprefix(GROUP_PREFIX), found[0].created,
                                 tuple(r.id for r in found), _forked_from(found))
    return groups


def differing_keys(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The config keys whose values are not the same in all of ``configs``, in first-seen
    order."""
    configs = list(configs)
    keys = list(dict.fromkeys(k for config in configs for k in config))
    return [k for k in keys
            if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]


def sweep_labels(group: SweepGroup, runs: Mapping[str, RunInfo]) -> dict[str, str]:
    """Each run of ``group`` named by its values that differ: ``lr=1e-3 batch=32``.

    A run that differs in nothing (a sweep of one, or two alike) keeps its name.
    """
    members = [runs[r] for r in group.runs if r in runs]
    keys = differing_keys(r.config for r in members)
    labels = {}
    for run in members:
        parts = [f"{k}={value_text(run.config[k])}" for k in keys if k in run.config]
        labels[run.id] = " ".join(parts) or run.name
    return labels


def state_counts(group: SweepGroup, runs: Mapping[str, RunInfo]) -> str:
    """How many of the group's runs are in each state: ``3▶ 2… 3✔ 9□`` (□: stopped by
    the sweep's rule, apart from ■, killed by someone)."""
    counts: dict[str, int] = {}
    for run_id in group.runs:
        run = runs.get(run_id)
        if run is not None:
            state = "stopped" if run.stopped_early else run.state
            counts[state] = counts.get(state, 0) + 1
    return " ".join(f"{counts[state]}{glyph}" for state, glyph in COUNTED if counts.get(state))


def best_of(run_ids: Iterable[str], runs: Mapping[str, RunInfo]) -> tuple[str, float] | None:
    """The run with the lowest best training loss among ``run_ids``, and that value (None:
    none has one)."""
    found = sweep_summary.best_of(runs[r] for r in run_ids if r in runs)
    return None if found is None else (found[0].id, found[1])
