"""Comparing runs without a screen: stable colours, the chart's runs, marks in the state."""

from __future__ import annotations

import itertools
import subprocess
import sys

from engine.client.events import RunInfo
from tests.test_tui_state import _run
from tui.compare import COMPARE_PALETTE, Overlaid, assign_colours, chart_runs, colour_slot
from tui.state import TuiState


def _colliding_ids() -> tuple[str, str]:
    """Two run-like ids that hash to the same colour (found by a fixed search)."""
    first: dict[int, str] = {}
    for n in itertools.count():
        run_id = f"r{n:05d}"
        slot = colour_slot(run_id)
        if slot in first:
            return first[slot], run_id
        first[slot] = run_id
    raise AssertionError("unreachable")


def test_a_runs_colour_comes_from_its_id_alone_in_every_process() -> None:
    ids = ["k3p9ra", "m8q2zt", "w5d7hx", "t2n6fe"]
    here = assign_colours(ids)
    assert assign_colours(reversed(ids)) == here  # the order asked in does not matter
    # Another interpreter, with another string-hash seed: the same colours.
    code = f"from tui.compare import assign_colours; print(assign_colours({ids!r}))"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env={"PYTHONHASHSEED": seed, "PATH": ""})
        assert out.stdout.strip() == repr(here)
    assert {assign_colours([run_id])[run_id] for run_id in ids} <= set(COMPARE_PALETTE)


def test_colliding_runs_are_told_apart_the_later_id_taking_the_next_colour() -> None:
    early, late = _colliding_ids()
    slot = colour_slot(early)
    colours = assign_colours([late, early])
    assert colours[early] == COMPARE_PALETTE[slot]
    assert colours[late] == COMPARE_PALETTE[(slot + 1) % len(COMPARE_PALETTE)]
    # A colour already taken (by a marked run) counts as used too.
    assert assign_colours([early], taken=[COMPARE_PALETTE[slot]])[early] == colours[late]


def test_every_colour_is_used_before_two_runs_share_one() -> None:
    ids = [f"r{n:05d}" for n in range(len(COMPARE_PALETTE) + 3)]
    colours = assign_colours(ids)
    first = [colours[r] for r in sorted(ids)[: len(COMPARE_PALETTE)]]
    assert sorted(first) == sorted(COMPARE_PALETTE)
    assert set(colours.values()) == set(COMPARE_PALETTE)


def test_without_marks_the_chart_keeps_the_family_and_with_marks_shows_them() -> None:
    family = ["a", "b", "c"]
    assert chart_runs(family, {}, "b") == (
        Overlaid("a", None, False), Overlaid("b", None, True), Overlaid("c", None, False))
    marks = assign_colours(["x", "y"])
    shown = chart_runs(family, {"y": marks["y"], "x": marks["x"]}, "b")
    assert [o.run_id for o in shown] == ["y", "x", "b"]  # in marking order, the cursor on top
    assert shown[-1].emphasis and shown[-1].style not in marks.values()
    on_marked = chart_runs(family, marks, "x")  # the cursor on a marked run: it keeps its colour
    assert [(o.run_id, o.style, o.emphasis) for o in on_marked] == [
        ("y", marks["y"], False), ("x", marks["x"], True)]


def test_pinned_runs_are_on_the_chart_with_or_without_marks() -> None:
    family = ["a", "b"]
    assert [o.run_id for o in chart_runs(family, {}, "b", pinned=["p", "a"])] == ["a", "b", "p"]
    marks = assign_colours(["x"])
    shown = chart_runs(family, marks, "b", pinned=["p", "x"])
    assert [o.run_id for o in shown] == ["x", "p", "b"]  # the cursor's run still on top
    styles = [o.style for o in shown]
    assert None not in styles and len(set(styles)) == 3  # each in a colour of its own


def test_marks_are_kept_by_id_and_a_run_gone_from_the_listing_loses_its_own() -> None:
    state = TuiState()
    state.set_runs([RunInfo.from_wire(_run(r)) for r in ("a", "b", "c")])
    assert state.toggle_mark("c") and state.toggle_mark("a")
    assert list(state.marks) == ["c", "a"]
    assert state.marks == {"c": assign_colours("ca")["c"], "a": assign_colours("ca")["a"]}
    state.set_runs([RunInfo.from_wire(_run(r)) for r in ("a", "b", "c")])  # listed again
    assert list(state.marks) == ["c", "a"]
    state.set_runs([RunInfo.from_wire(_run(r)) for r in ("a", "b")])  # c is gone
    assert list(state.marks) == ["a"]
    assert not state.toggle_mark("a") and state.marks == {}
