"""The runs table's rows as plain data: folding, filtering and sorting a forest of runs."""

from __future__ import annotations

from dataclasses import dataclass

from engine.client.events import RunInfo
from tui.run_tree import TreeRow, build_rows
from tui.state import TuiState
from tui.sweep_groups import tree_parent
from tui.widgets.run_cells import sort_key


def _run(
    run_id: str, parent: str | None = None, loss: float | None = None, created: float | None = None
) -> RunInfo:
    return RunInfo.from_wire(
        {"id": run_id, "name": f"n-{run_id}", "state": "finished", "step": 10,
         "total_steps": 10, "parent_id": parent,
         "created": float(ord(run_id[0])) if created is None else created,
         "device": "cpu", "workload": "synthetic", "last": {"loss": loss}})


# a ─┬─ b ── c        d ── e        f
#    └─ g
FOREST = {r.id: r for r in (
    _run("a", loss=0.5), _run("b", "a", loss=0.3), _run("c", "b", loss=0.9),
    _run("d", loss=0.1), _run("e", "d", loss=0.2), _run("f", loss=None),
    _run("g", "a", loss=0.4),
)}
TREE = tree_parent(FOREST)


def _shape(rows: list[TreeRow]) -> list[tuple[str, int, int]]:
    return [(r.id, r.depth, r.hidden) for r in rows]


def test_forks_sit_under_their_parent_in_creation_order() -> None:
    assert _shape(build_rows(FOREST, TREE)) == [
        ("a", 0, 0), ("b", 1, 0), ("c", 2, 0), ("g", 1, 0), ("d", 0, 0), ("e", 1, 0),
        ("f", 0, 0)]


def test_a_folded_run_hides_its_subtree_and_counts_it() -> None:
    rows = build_rows(FOREST, TREE, folded={"a"})
    assert _shape(rows) == [("a", 0, 3), ("d", 0, 0), ("e", 1, 0), ("f", 0, 0)]
    assert rows[0].folded and rows[0].children == 2
    nested = build_rows(FOREST, TREE, folded={"b", "d"})
    assert _shape(nested) == [
        ("a", 0, 0), ("b", 1, 1), ("g", 1, 0), ("d", 0, 1), ("f", 0, 0)]


def test_folding_a_leaf_changes_nothing() -> None:
    assert build_rows(FOREST, TREE, folded={"f", "c"}) == build_rows(FOREST, TREE)


def test_a_filter_match_inside_a_folded_subtree_shows_with_its_ancestors() -> None:
    rows = build_rows(FOREST, TREE, folded={"a"}, matches=lambda r: r.id == "c")
    assert _shape(rows) == [("a", 0, 1), ("b", 1, 0), ("c", 2, 0)]  # g stays folded away
    # Non-matching roots without matching descendants go.
    assert [r.id for r in build_rows(FOREST, TREE, matches=lambda r: r.id == "e")] == [
        "d", "e"]


def test_sorting_orders_roots_and_siblings_and_keeps_the_tree() -> None:
    state = TuiState()
    state.set_runs(FOREST.values())
    by_loss = sort_key("LOSS", state)
    rows = build_rows(FOREST, TREE, sort_key=by_loss)
    # roots by loss (d 0.1, a 0.5, f unknown last); a's children g 0.4 and b 0.3 sorted too
    assert [r.id for r in rows] == ["d", "e", "a", "b", "c", "g", "f"]
    rows = build_rows(FOREST, TREE, sort_key=by_loss, descending=True)
    assert [r.id for r in rows] == ["a", "g", "b", "c", "d", "e", "f"]  # unknown stays last


def test_the_tree_is_built_from_any_parent_key() -> None:
    # A future sweep group folds the same way: only the parent function changes.
    @dataclass(frozen=True)
    class Trial:
        id: str
        created: float
        group: str | None

    items = {"s1": Trial("s1", 1.0, None), "t1": Trial("t1", 2.0, "s1"),
             "t2": Trial("t2", 3.0, "s1")}
    rows = build_rows(items, lambda item: item.group, folded={"s1"})
    assert _shape(rows) == [("s1", 0, 2)]


def test_a_long_fork_chain_does_not_recurse() -> None:
    chain = {
        f"r{i:04d}": _run(f"r{i:04d}", f"r{i - 1:04d}" if i else None, created=float(i))
        for i in range(3000)
    }
    rows = build_rows(chain, tree_parent(chain))
    assert len(rows) == 3000 and rows[-1].depth == 2999
    assert build_rows(chain, tree_parent(chain), folded={"r0000"})[0].hidden == 2999


def test_help_and_palette_list_the_table_keys() -> None:
    from tui.keys import BY_ID, display_key
    from tui.screens.help import help_markup

    text = help_markup(readonly=False)
    for action in ("fold", "fold_all", "sort", "sort_reverse", "cursor_down", "page_down"):
        assert BY_ID[action].description in text
    assert display_key(BY_ID["cursor_down"]) == "↓, j"


def test_pinned_runs_and_the_runs_above_them_come_first_among_their_siblings() -> None:
    # e (a fork of d) pinned: d leads the roots, e its forks; g (under a) pinned too.
    rows = build_rows(FOREST, TREE, first=["e", "g"], sort_key=sort_key("LOSS", TuiState()))
    assert [r.id for r in rows] == ["d", "e", "a", "g", "b", "c", "f"]
    descending = build_rows(FOREST, TREE, first=["f"], descending=True,
                            sort_key=sort_key("LOSS", TuiState()))
    assert [r.id for r in descending][:1] == ["f"]  # a run with no loss, pinned: on top
