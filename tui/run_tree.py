"""The rows of the runs table: a forest of runs, folded, filtered and sorted.

Plain functions over plain objects (anything with an ``id`` and a ``created``
time), so they are tested without a screen. The tree comes from a
``parent_of`` function, not from a field name: forks give it today, and a
sweep's group can give it later without changing this code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from engine.client.run_select import sort_keyless_last


class TreeItem(Protocol):
    """What the tree needs of an item: its id and when it was made (the base order)."""

    @property
    def id(self) -> str: ...

    @property
    def created(self) -> float: ...


Item = TypeVar("Item", bound=TreeItem)


def creation_order(item: TreeItem) -> tuple[float, str]:
    """Oldest first; ties by id."""
    return item.created, item.id


@dataclass(frozen=True)
class TreeRow:
    """One visible row: which item, how deep, and what it hides."""

    id: str
    depth: int
    children: int  # direct children, shown or not
    hidden: int  # descendants not shown because this row is folded (0 when open)

    @property
    def folded(self) -> bool:
        return self.hidden > 0


def build_rows(
    items: Mapping[str, Item],
    parent_of: Callable[[Item], str | None],
    folded: Collection[str] = (),
    matches: Callable[[Item], bool] | None = None,
    sort_key: Callable[[Item], Any] | None = None,
    descending: bool = False,
    base_key: Callable[[Item], Any] = creation_order,
    first: Collection[str] = (),
) -> list[TreeRow]:
    """The rows to show, each child right under its parent (depth first).

    ``folded`` items hide their descendants. With ``matches``, only matching
    items and their ancestors are shown, and a match inside a folded subtree is
    shown anyway, with the ancestors that lead to it. Siblings are ordered by
    ``sort_key`` (``None`` keys last in either direction), ties and keyless
    items by ``base_key`` (creation order). The ``first`` items (pinned runs), and the
    ancestors that lead to them, come before their siblings, in that same order.
    """
    children: dict[str | None, list[str]] = {}
    for item_id in sorted(items, key=lambda i: base_key(items[i])):
        parent = parent_of(items[item_id])
        if parent not in items or parent == item_id:
            parent = None
        children.setdefault(parent, []).append(item_id)
    if sort_key is not None:
        for siblings in children.values():
            _sort_siblings(siblings, items, sort_key, descending)
    if first:
        leading: set[str] = set()
        for item_id in first:
            if item_id in items:
                _keep_with_ancestors(item_id, items, parent_of, leading)
        for siblings in children.values():  # stable: each part keeps the sorted order
            siblings.sort(key=lambda i: i not in leading)

    sizes = _subtree_sizes(children)
    keep: set[str] | None = None
    if matches is not None:
        keep = set()
        for item_id, item in items.items():
            if matches(item):
                _keep_with_ancestors(item_id, items, parent_of, keep)

    roots = [i for i in children.get(None, []) if keep is None or i in keep]
    rows: list[TreeRow] = []
    stack: list[tuple[str, int]] = [(i, 0) for i in reversed(roots)]
    seen: set[str] = set()
    while stack:
        item_id, depth = stack.pop()
        if item_id in seen:
            continue
        seen.add(item_id)
        kids = children.get(item_id, [])
        if keep is not None:  # filtering: a match reveals its way in, folded or not
            shown = [k for k in kids if k in keep]
        else:
            shown = [] if item_id in folded else kids
        hidden = 0
        if item_id in folded and kids:
            visible = _count_visible(shown, children, keep, folded)
            hidden = sizes[item_id] - 1 - visible
        rows.append(TreeRow(item_id, depth, len(kids), hidden))
        stack.extend((k, depth + 1) for k in reversed(shown))
    return rows


def _sort_siblings(
    siblings: list[str],
    items: Mapping[str, Item],
    sort_key: Callable[[Item], Any],
    descending: bool,
) -> None:
    siblings[:] = sort_keyless_last(siblings, lambda i: sort_key(items[i]), descending)


def _subtree_sizes(children: Mapping[str | None, list[str]]) -> dict[str, int]:
    """Each item's subtree size, itself included (iterative: fork chains can be long)."""
    sizes: dict[str, int] = {}
    order: list[str] = []
    stack = list(children.get(None, []))
    while stack:
        item_id = stack.pop()
        if item_id in sizes:
            continue
        sizes[item_id] = 1
        order.append(item_id)
        stack.extend(children.get(item_id, []))
    for item_id in reversed(order):  # children come after their parent in `order`
        sizes[item_id] += sum(sizes[k] for k in children.get(item_id, []))
    return sizes


def _keep_with_ancestors(
    item_id: str, items: Mapping[str, Item], parent_of: Callable[[Item], str | None],
    keep: set[str],
) -> None:
    cursor: str | None = item_id
    while cursor is not None and cursor in items and cursor not in keep:
        keep.add(cursor)
        cursor = parent_of(items[cursor])


def _count_visible(
    shown: list[str],
    children: Mapping[str | None, list[str]],
    keep: set[str] | None,
    folded: Collection[str],
) -> int:
    """How many rows the subtrees under ``shown`` put on screen."""
    count, stack = 0, list(shown)
    while stack:
        item_id = stack.pop()
        count += 1
        kids = children.get(item_id, [])
        if keep is not None:
            stack.extend(k for k in kids if k in keep)
        elif item_id not in folded:
            stack.extend(kids)
    return count
