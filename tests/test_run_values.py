"""Any value of a run as a column, a sort and a condition: ``ls -c lr,max:acc``,
``ls --sort lr``, ``ls 'lr<1e-3' batch=64`` and the TUI's ``/`` with the same words.

The rules are tested as functions, then through the real CLI, daemon and store on
runs stored before the daemon starts, and in the real app.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import replace

import pytest
from textual.widgets import Input, Static

from engine.client.events import RunInfo
from engine.client.run_select import (
    RunFilter,
    parse_condition,
    parse_filter,
    run_value,
    sort_keyless_last,
    unknown_value,
    value_order,
)
from engine.server.store import Store
from tests.conftest import Engine
from tests.test_cli_many import ids
from tests.test_tui import screen_of, until
from tui.app import TraintopApp
from tui.screens.dialogs import ColumnsDialog
from tui.widgets.runs_table import RunsTable

# id, config, losses, accuracies (in the order logged)
RUNS: list[tuple[str, dict[str, object], list[float], list[float]]] = [
    ("bbbb01", {"lr": 1e-3, "batch": 32, "opt": "AdamW"}, [3.0, 2.0], [0.5, 0.7]),
    ("bbbb02", {"lr": 3e-4, "batch": 64, "opt": "sgd"}, [3.0, 1.0, 1.5], [0.6, 0.9, 0.8]),
    ("bbbb03", {"lr": 1e-4, "batch": 64, "opt": "adamw"}, [2.5, 2.4], [0.4]),
    ("bbbb04", {"lr": 3e-3, "batch": 32}, [float("nan")], []),
    ("bbbb05", {"batch": 128}, [], []),
]


def run(config: dict[str, object], **values: dict[str, float]) -> RunInfo:
    return RunInfo(id="cccc01", name="r", state="running", workload="synthetic", step=7,
                   config=config, **values)  # type: ignore[arg-type]


def test_a_value_is_a_config_key_then_a_metric_then_an_extreme_then_a_column() -> None:
    r = run({"lr": 1e-3, "loss": "config wins"}, last={"loss": 2.0, "acc": 0.8},
            best={"acc": 0.5}, highest={"acc": 0.9})
    assert run_value(r, "lr") == 1e-3
    assert run_value(r, "loss") == "config wins"
    assert run_value(r, "acc") == 0.8
    assert (run_value(r, "min:acc"), run_value(r, "max:acc")) == (0.5, 0.9)
    assert run_value(r, "step") == 7 and run_value(r, "state") == "running"
    assert run_value(r, "nothing") is None and run_value(r, "max:nothing") is None


def test_conditions_compare_numbers_words_and_ranges() -> None:
    r = run({"lr": 3e-4, "opt": "AdamW", "amp": True, "layers": 4},
            last={"loss": float("nan"), "acc": 0.8})

    def holds(word: str) -> bool:
        condition = parse_condition(word)
        assert condition is not None, word
        return condition.holds(r)

    assert holds("lr=3e-4") and holds("lr==0.0003") and not holds("lr!=3e-4")
    assert holds("lr<1e-3") and holds("lr<=3e-4") and not holds("lr>3e-4")
    assert holds("layers>=4") and holds("layers=4.0")
    assert holds("opt=adamw") and holds("opt!=sgd") and not holds("opt<3")  # case ignored
    assert holds("amp=true") and not holds("amp=false")
    assert holds("lr=1e-4..1e-3") and holds("lr=..3e-4") and holds("lr=3e-4..")
    assert not holds("lr=1e-3..1e-2")
    assert holds("acc>0.5") and not holds("loss<100") and not holds("loss!=1")  # NaN: never
    assert not holds("missing=1") and not holds("missing!=1")  # no value: never
    assert parse_condition("lr3e-4") is None and parse_condition("#best") is None
    # '*' stands for any characters, spaces too (a filter's words hold none): how an
    # attached script's workload, a command line, is named in a filter.
    attached = replace(r, workload="attach:/usr/bin/python3 train.py --lr [0.1]")
    for word, kept in (("workload=attach:*train.py*", True), ("workload=ATTACH:*", True),
                       ("workload=attach:/usr/bin/python3*train.py*--lr*[0.1]", True),
                       ("workload=attach:*eval.py*", False), ("workload=attach:", False),
                       ("workload!=*train.py*", False), ("workload=*", True)):
        condition = parse_condition(word)
        assert condition is not None and condition.holds(attached) == kept, word


def test_a_word_or_condition_after_a_dash_leaves_runs_out() -> None:
    wanted = parse_filter("keep -#OLD -lr<1e-3 - -missing=1")
    assert wanted.words == ("keep", "-") and wanted.excluded == ("#old",)
    assert [(c.name, c.negated) for c in wanted.conditions] == [("lr", True), ("missing", True)]
    assert wanted.holds_words("keep it #new - ") and not wanted.holds_words("keep #old - ")
    low, high, none = run({"lr": 1e-4}), run({"lr": 1e-2}), run({})
    lr = wanted.conditions[0]
    assert not lr.holds(low) and lr.holds(high) and lr.holds(none)  # no value: kept
    assert wanted.conditions[1].holds(none)
    errors: list[str] = []  # a wrong condition after '-' is told as one without
    assert parse_filter("-lr<x", errors) == RunFilter() and "compares numbers" in errors[0]


@pytest.mark.parametrize(
    ("word", "says"),
    [
        ("lr<abc", "'<' compares numbers, and 'abc' is not one"),
        ("lr=", "no value after '='"),
        ("lr>=nan", "is not one"),
        ("lr=1..x", "a range is LOW..HIGH of numbers"),
        ("lr=..", "a range is LOW..HIGH"),
        ("lr=1..2..3", "a range is LOW..HIGH"),
    ],
)
def test_a_wrong_condition_says_what_is_wrong(word: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_condition(word)
    errors: list[str] = []  # the TUI's way: told, and left out of the filter
    wanted = parse_filter(f"keep {word}", errors)
    assert len(errors) == 1 and says in errors[0]
    assert wanted.words == ("keep",) and wanted.conditions == ()


def test_values_sort_numbers_before_words_and_missing_last() -> None:
    values: list[object] = ["b", 2, None, 10.5, "A", float("nan"), -1]
    ordered = sort_keyless_last(values, value_order)
    assert ordered[:5] == [-1, 2, 10.5, "A", "b"]
    assert ordered[5] is None and math.isnan(ordered[6])  # type: ignore[arg-type]


@pytest.fixture
def valued(engine: Engine) -> Engine:
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    for n, (run_id, config, losses, accs) in enumerate(RUNS):
        store.create_run(
            {"id": run_id, "name": f"run{n + 1}", "workload": "synthetic", "config": config,
             "state": "finished", "device": "cpu", "cwd": "/", "created": 1.7e9 + n,
             "released": False, "sweep": "s" if n < 2 else None},
            "made by the test",
        )
        points = [[s, "loss", v, 1.7e9 + s] for s, v in enumerate(losses)]
        points += [[s, "acc", v, 1.7e9 + s] for s, v in enumerate(accs)]
        if points:
            store.add_metrics(run_id, points, 0, None)
    store.close()
    return engine


def test_ls_filters_on_config_and_metrics(valued: Engine) -> None:
    assert ids(valued, "lr=3e-4") == ["bbbb02"]
    assert ids(valued, "lr<1e-3") == ["bbbb02", "bbbb03"]  # bbbb05 has no lr: left out
    assert ids(valued, "lr=..1e-3", "batch=64") == ["bbbb02", "bbbb03"]
    assert ids(valued, "opt=adamw") == ["bbbb01", "bbbb03"]
    assert ids(valued, "max:acc>=0.7") == ["bbbb01", "bbbb02"]  # the highest, not the last
    assert ids(valued, "min:loss<2.2", "run2") == ["bbbb02"]  # with a word too
    assert ids(valued, "best<2.2") == ["bbbb01", "bbbb02"]  # the BEST column's loss


def test_ls_sorts_by_any_value_and_shows_it_as_a_column(valued: Engine) -> None:
    assert ids(valued, "--sort", "lr") == ["bbbb03", "bbbb02", "bbbb01", "bbbb04", "bbbb05"]
    assert ids(valued, "--sort", "max:acc", "-r", "-n", "2") == ["bbbb02", "bbbb01"]
    assert ids(valued, "--sort", "opt") == ["bbbb01", "bbbb03", "bbbb02", "bbbb04", "bbbb05"]
    result = valued.cli("ls", "-c", "lr,batch", "-c", "max:acc", "--sort", "batch", "-r")
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    assert header.split()[-3:] == ["lr", "batch", "max:acc"]
    assert [row.split()[0] for row in rows] == [
        "bbbb05", "bbbb02", "bbbb03", "bbbb01", "bbbb04"]
    assert rows[1].split()[-3:] == ["0.0003", "64", "0.9"]
    assert rows[0].split()[-3:] == ["-", "128", "-"]


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["lr<abc"], 2, "'lr<abc': '<' compares numbers"),
        (["-c", "lrr"], 1, "no run has a value named 'lrr'; did you mean lr?"),
        (["--sort", "max:acx"], 1, "no run has a value named 'max:acx'; did you mean max:acc?"),
        (["zzz=1"], 1, "no run has a value named 'zzz'; a config key, a metric"),
        (["-c", ","], 2, "no value named"),
    ],
)
def test_ls_refuses_a_wrong_value_in_one_line(
    valued: Engine, argv: list[str], code: int, says: str
) -> None:
    result = valued.cli("ls", *argv)
    assert result.code == code and result.out == ""
    assert says in result.err and result.err.count("\n") == 1, result.err


def test_the_tui_filter_takes_the_same_conditions(valued: Engine) -> None:
    async def scenario() -> None:
        app = TraintopApp(home=valued.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            every = ["sweep:s", "bbbb01", "bbbb02", "bbbb03", "bbbb04", "bbbb05"]
            await until(pilot, lambda: table.order == every)
            field = app.query_one("#filter", Input)
            field.value = "lr<1e-3"  # a sweep's header shows with its runs that match
            await until(pilot, lambda: table.order == ["sweep:s", "bbbb02", "bbbb03"])
            assert not field.has_class("-invalid")
            field.value = "lr=3e-3"  # and not without them: it has no values of its own
            await until(pilot, lambda: table.order == ["bbbb04"])
            field.value = "max:acc>=0.7 opt=sgd"
            await until(pilot, lambda: table.order == ["sweep:s", "bbbb02"])
            field.value = "-lr<1e-3"  # after '-': the runs it would keep are left out
            await until(pilot, lambda: table.order == ["sweep:s", "bbbb01", "bbbb04", "bbbb05"])
            field.value = "-run1 -RUN2"  # the header goes with the last of its runs
            await until(pilot, lambda: table.order == ["bbbb03", "bbbb04", "bbbb05"])
            field.value = "run lr<x"  # wrong: the field says so, the rest still filters
            await until(pilot, lambda: table.order == every)
            assert field.has_class("-invalid")
            # A name no run has keeps no run: the field says so, and Enter says the name
            # it meant (as 'traintop ls lrr<1e-3' does), rather than an empty table alone.
            field.value = "lrr<1e-3"
            await until(pilot, lambda: table.order == [])
            assert field.has_class("-invalid")
            field.focus()
            await pilot.press("enter")
            await until(pilot, lambda: any(
                n.message == "filter: no run has a value named 'lrr'; did you mean lr?"
                for n in app._notifications))

    asyncio.run(scenario())


def test_the_tui_shows_sorts_and_keeps_the_columns_it_is_given(valued: Engine) -> None:
    async def scenario(check_kept: bool) -> None:
        app = TraintopApp(home=valued.paths.home)
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: len(table.order) == len(RUNS) + 1)
            if check_kept:  # a new session opens with the columns and sort left
                assert table.extra_columns == ("lr", "max:acc")
                assert table.sort_column == "max:acc" and table.descending
                # (sorted again once the highest values come, after the first screen)
                await until(pilot, lambda: table.order[:2] == ["sweep:s", "bbbb02"])
                await until(pilot, lambda: table.cell_text("bbbb02", "max:acc") == "0.9")
                return
            table.focus()
            await pilot.press("a")
            dialog = await screen_of(pilot, app, ColumnsDialog)
            dialog.query_one("#columns", Input).value = "lr, lrr"  # a typo: said, not shown
            await pilot.press("ctrl+s")
            error = dialog.query_one("#dialog-error", Static)
            await until(pilot, lambda: "did you mean lr?" in str(error.render()))
            assert table.extra_columns == ()
            dialog.query_one("#columns", Input).value = "lr, max:acc"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: table.extra_columns == ("lr", "max:acc"))
            assert table.cell_text("bbbb02", "lr") == "0.0003"
            assert table.cell_text("bbbb02", "max:acc") == "0.9"
            assert table.cell_text("bbbb05", "lr") == "-"
            assert "max:acc" in table.render_line(0).text  # in the header
            # 'o' goes on from the table's own columns to the added ones
            table.sort_by("DEV", False, app.state)
            await pilot.press("o")
            assert table.sort_column == "lr"
            assert [r for r in table.order if r != "sweep:s"] == [
                "bbbb03", "bbbb02", "bbbb01", "bbbb04", "bbbb05"]
            await pilot.press("o", "O")  # max:acc, highest first
            assert table.sort_column == "max:acc" and table.descending

    asyncio.run(scenario(False))
    asyncio.run(scenario(True))


def test_a_metrics_extremes_are_known_before_they_are_listed() -> None:
    r = run({"lr": 1e-3}, last={"acc": 0.8})  # highest not listed yet (the TUI's start)
    assert unknown_value([r], "max:acc") is None and unknown_value([r], "lr") is None
    assert unknown_value([r], "max:acx") == (
        "no run has a value named 'max:acx'; did you mean max:acc?")
    assert unknown_value([], "anything") is not None
