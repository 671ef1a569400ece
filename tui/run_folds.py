"""Folding the runs table's tree: which runs a fold hides, and where the cursor goes.

Plain functions over the table's items (runs, and the headers of sweep groups)
and the set of folded ids, so they are tested without a screen; the table
applies what they decide.
"""

from __future__ import annotations

from collections.abc import Mapping

from tui.sweep_groups import Item, parent_of


def unfold_ancestors(run_id: str, runs: Mapping[str, Item], folded: set[str]) -> bool:
    """Unfold every ancestor of ``run_id`` (in ``folded``); True if any was folded."""
    unfolded, cursor = False, parent_of(runs[run_id], runs)
    while cursor is not None and cursor in runs:
        if cursor in folded:
            folded.discard(cursor)
            unfolded = True
        cursor = parent_of(runs[cursor], runs)
    return unfolded


def toggle_fold(
    run_id: str, has_children: bool, runs: Mapping[str, Item], folded: set[str]
) -> tuple[bool, str | None]:
    """Fold or unfold ``run_id``'s forks (in ``folded``); on a leaf, fold its parent.

    Returns whether anything changed, and the run the cursor should move to (the
    parent whose fold hid the leaf), or None to leave it where it is.
    """
    if has_children:
        folded.symmetric_difference_update({run_id})
        return True, None
    item = runs.get(run_id)  # None: removed since the rows were laid out
    parent = None if item is None else parent_of(item, runs)
    if parent is None or parent not in runs:
        return False, None
    folded.add(parent)
    return True, parent


def toggle_fold_all(
    runs: Mapping[str, Item], folded: set[str], selected: str | None
) -> tuple[set[str], str | None]:
    """Fold every run that has forks, or unfold all if every one is folded.

    Returns the new folded set and the run to keep the cursor on: ``selected``, or
    the outermost folded ancestor that now hides its row.
    """
    parents = {p for run in runs.values() if (p := parent_of(run, runs)) is not None and p in runs}
    now = set() if parents and parents <= folded else parents
    while selected is not None and selected in runs:
        parent = parent_of(runs[selected], runs)
        if parent is None or parent not in now:
            break
        selected = parent  # its row folds away: keep the cursor on what hides it
    return now, selected
