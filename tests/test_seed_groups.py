"""Runs alike but for their seeds, drawn as one mean curve with a band (``G``): the
grouping and the maths on their own, then in the real TUI against a real daemon."""

from __future__ import annotations

import asyncio
import json
import math
from bisect import bisect_right
from statistics import fmean, stdev
from typing import Any

import pytest
from rich.segment import Segment
from textual.widgets import Input, Static

from engine.client.events import RunInfo
from engine.common.format import format_number
from engine.common.settings import is_seed_key
from engine.run.workloads.registry import BUILTIN_DEFAULTS
from engine.rundir.state_dir import DIR_MODE
from engine.server.store import Store
from tests.conftest import TERMINAL, Engine
from tests.snapshot_tests.fixed_state import EPOCH, SYNTHETIC, loss_points, store_run
from tests.test_tui import screen_of, until
from tui.app import TraintopApp
from tui.chart_math import format_value
from tui.compare import COMPARE_PALETTE
from tui.scatter_data import numeric_params, scatter
from tui.screens.dialogs import GroupDialog
from tui.screens.sweep_view import SweepView
from tui.seed_groups import band, group_runs
from tui.view_memory import VERSION
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable
from tui.widgets.sweep_scatter import BAR, BAR_FOOT, BAR_TOP, BEST, POINT, SweepScatter

STEPS = 60
LRS = (0.01, 0.03)
SEEDS = (0, 1, 2)


def _info(run_id: str, workload: str = "synthetic", best: float | None = None,
          **config: Any) -> RunInfo:
    return RunInfo(run_id, f"name-{run_id}", "finished", workload, 10, config=config,
                   best={} if best is None else {"loss": best})


def test_runs_are_grouped_by_every_config_value_but_their_seeds() -> None:
    runs = {r.id: r for r in [
        _info("a", lr=1, seed=0, data_seed=5), _info("b", lr=2, seed=0),
        _info("c", lr=1, seed=1, data_seed=6), _info("d", lr=1, seed=2, data_seed=7),
        _info("e", "charlm", lr=1, seed=3, data_seed=8),  # another workload: apart
    ]}
    groups = group_runs(["a", "b", "c", "d", "e", "gone"], runs)
    assert [g.runs for g in groups] == [("a", "c", "d"), ("b",), ("e",)]
    # named by the values that set the groups apart (seeds never), with a count
    assert [g.label for g in groups] == ["lr=1 (3 runs)", "lr=2", "lr=1"]
    assert is_seed_key("seed") and is_seed_key("initSeed") and not is_seed_key("seeds")
    # by keys: alike in those, whatever else differs (here data_seed and the workload)
    by_lr = group_runs(["a", "b", "c", "d", "e"], runs, by=["lr"])
    assert [(g.runs, g.label) for g in by_lr] == [
        (("a", "c", "d"), "lr=1 (3 runs)"), (("b",), "lr=2"), (("e",), "lr=1")]


def test_the_band_is_the_mean_lowest_and_highest_of_the_runs_there() -> None:
    # Three runs on steps 0..9 (one stops at 4): read on a grid of one point a step.
    curves = [
        (list(range(10)), [10.0 - s for s in range(10)]),
        (list(range(10)), [20.0 - s for s in range(10)]),
        (list(range(5)), [30.0, None, 30.0, math.nan, 30.0]),
    ]
    made = band(curves, 10, reach=0.5)
    assert made.xs == [float(s) for s in range(10)]
    assert made.mean[0] == fmean([10, 20, 30]) and made.low[0] == 10 and made.high[0] == 30
    assert made.mean[1] == fmean([9, 19])  # a gap in the third: not counted there
    assert made.mean[4] == fmean([6, 16, 30])
    assert made.mean[7] == fmean([3, 13]) and made.high[7] == 13  # the third has ended
    assert band([], 10) == band([([], [])], 10)  # nothing to draw, not an error


def test_the_scatter_grouped_is_a_point_a_setting_at_its_mean_with_its_range() -> None:
    # lr 1e-3 and 1e-2, three seeds each; batch 32 for all but the last lr=1e-2 run
    bests = {"a": 2.0, "b": 2.5, "c": 3.5, "d": 1.0, "e": 1.5, "f": 1.2}
    runs = [_info(r, best=bests[r], lr=lr, seed=seed, batch=64 if r == "f" else 32)
            for r, (lr, seed) in zip("abcdef", [(lr, s) for lr in (1e-3, 1e-2)
                                                for s in range(3)], strict=True)]
    apart = scatter(runs, "lr", "loss", True, {}, {})
    assert len(apart.points) == 6 and not apart.grouped
    assert numeric_params(runs) == ["lr", "seed", "batch"]
    assert numeric_params(runs, grouped=True) == ["lr", "batch"]  # a seed is no x then

    # all but seeds: lr=1e-3 is one setting; lr=1e-2 two (batch 32 of two runs, 64 alone)
    grouped = scatter(runs, "lr", "loss", True, {"f": "#123456"}, {"f": "f's name"},
                      group=True)
    assert grouped.grouped
    assert [(p.label, p.x, p.y, p.low, p.high, p.runs) for p in grouped.points] == [
        ("lr=1e-3 batch=32 (3 runs)", 1e-3, fmean([2.0, 2.5, 3.5]), 2.0, 3.5, 3),
        ("lr=0.01 batch=32 (2 runs)", 1e-2, fmean([1.0, 1.5]), 1.0, 1.5, 2),
        ("f's name", 1e-2, 1.2, None, None, 1)]
    # settings of several runs take the palette in order; one alone keeps its colour
    assert [p.colour for p in grouped.points] == [*COMPARE_PALETTE[:2], "#123456"]
    assert [p.best for p in grouped.points] == [False, False, True]  # the lowest y

    # by a key that leaves x out: a point a setting and x, the mean of the runs at both
    by_batch = scatter(runs, "lr", "loss", True, {}, {}, group=True, by=["batch"])
    assert [(p.x, p.y, p.runs) for p in by_batch.points] == [
        (1e-3, fmean([2.0, 2.5, 3.5]), 3), (1e-2, 1.25, 2), (1e-2, 1.2, 1)]
    assert by_batch.points[0].colour == by_batch.points[1].colour  # one setting, one colour


def _stored_seeds(engine: Engine, own_dir: bool = False) -> dict[float, list[str]]:
    """Six ended runs, two lrs by three seeds, and the daemon started; run ids by lr.
    ``own_dir``: each run's config also names a directory of its own."""
    paths = engine.paths
    paths.home.mkdir(mode=DIR_MODE, parents=True)
    paths.runs.mkdir(mode=DIR_MODE)
    by_lr: dict[float, list[str]] = {lr: [] for lr in LRS}
    store = Store(paths.store)
    try:
        for n, (lr, seed) in enumerate((lr, seed) for lr in LRS for seed in SEEDS):
            run_id = f"g{n:05d}"
            paths.run_dir(run_id).path.mkdir(mode=DIR_MODE)
            run = {"id": run_id, "name": f"seed-{n}", "workload": "synthetic",
                   "config": {**BUILTIN_DEFAULTS["synthetic"], **SYNTHETIC, "lr": lr,
                              "seed": seed,
                              **({"out": f"runs/{n}"} if own_dir else {})},
                   "total_steps": STEPS,
                   "created": EPOCH + n}
            store_run(store, run, loss_points(0, STEPS, lr, EPOCH + n, seed=seed),
                      ("finished", "finished", 0))
            by_lr[lr].append(run_id)
    finally:
        store.close()
    assert engine.cli("engine", "start").code == 0
    return by_lr


def _last_loss(lr: float, seed: int) -> float:
    return float(loss_points(0, STEPS, lr, 0.0, seed=seed)[-1][2])


def test_g_draws_each_lr_as_the_mean_of_its_seeds_with_a_band(engine: Engine) -> None:
    by_lr = _stored_seeds(engine)
    ids = [r for lr in LRS for r in by_lr[lr]]
    # Opened as saved: every run marked, smoothing off, grouped.
    engine.paths.tui_view.write_text(json.dumps(
        {"version": VERSION, "marks": ids, "smoothing": 0, "group": True}))

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(160, 40)) as pilot:
            chart = app.query_one(LossChart)
            await until(pilot, lambda: len(app.query_one(RunsTable).order) == 6)
            # the selected run's group (the first row's) is drawn last, on top
            await until(pilot, lambda: [s.label for s in chart.series]
                        == ["lr=0.03 (3 runs)", "lr=0.01 (3 runs)"])
            assert [s.emphasis for s in chart.series] == [False, True]
            status = str(app.query_one("#status", Static).render())
            assert "6 runs as 2 means" in status
            for lr, series in zip(reversed(LRS), chart.series, strict=True):
                assert series.band and series.curve is not None
                mean = [v for v in series.curve[1] if v is not None]
                # the last value of the mean is the mean of the three runs' last losses
                assert mean[-1] == fmean(_last_loss(lr, seed) for seed in SEEDS)
                lows, highs = series.ys[0::2], series.ys[1::2]
                for m, lo, hi in zip(series.curve[1], lows, highs, strict=True):
                    assert m is None or (lo is not None and hi is not None and lo <= m <= hi)
                assert any(lo != hi for lo, hi in zip(lows, highs, strict=True))
            # the band is drawn, faint, in each group's colour
            faint = {s.style.color.name for y in range(chart.size.height)
                     for s in chart.render_line(y) if _faint_braille(s)}
            assert {s.style for s in chart.series} <= faint

            # the cursor reads each group's mean at its step, and its runs' lowest and
            # highest there (the band's point at or before it)
            app.cursor = 30.0
            app.chart_changed()
            await pilot.pause()
            legend = "".join(s.text for s in chart.render_line(0))
            assert legend.startswith(" step 30 ")
            for series in chart.series:
                xs, mean = series.curve  # type: ignore[misc]
                at = bisect_right(xs, 30 + series.x_half * (1 + 1e-6)) - 1
                lo, hi = series.ys[2 * at], series.ys[2 * at + 1]
                reading = f"{format_value(mean[at])} ({format_value(lo)}…{format_value(hi)})"
                assert f"{series.label} {reading}" in legend
            await pilot.press("Z")  # the cursor off

            await pilot.press("G")  # off: the six runs, each its own curve
            await until(pilot, lambda: sorted(s.run_id for s in chart.series) == sorted(ids))
            assert not any(s.band for s in chart.series)
            await pilot.press("G", "enter")  # on again: the dialog, Enter for all but seeds
            await until(pilot, lambda: len(chart.series) == 2)
        saved = json.loads(engine.paths.tui_view.read_text())
        assert saved["group"] is True

    asyncio.run(scenario())


def test_v_grouped_plots_each_lr_at_the_mean_of_its_seeds_with_a_bar(engine: Engine) -> None:
    by_lr = _stored_seeds(engine)
    ids = [r for lr in LRS for r in by_lr[lr]]
    engine.paths.tui_view.write_text(json.dumps(
        {"version": VERSION, "marks": ids, "group": True}))  # as saved: grouped

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(160, 44)) as pilot:
            await until(pilot, lambda: len(app.query_one(RunsTable).order) == 6)
            await pilot.press("v")  # the marked runs, grouped as the chart is
            view = await screen_of(pilot, app, SweepView)
            shown = view.shown
            assert shown is not None and shown.grouped and shown.x_name == "lr"
            runs = app.state.runs
            for lr, point in zip(LRS, shown.points, strict=True):
                bests = [runs[r].best["loss"] for r in by_lr[lr]]
                assert (point.x, point.runs) == (lr, 3)
                assert (point.y, point.low, point.high) == (fmean(bests), min(bests),
                                                             max(bests))
            best = min(shown.points, key=lambda p: p.y)
            assert [p.best for p in shown.points] == [p is best for p in shown.points]
            axes = str(view.query_one("#scatter-axes", Static).render())
            assert "6 runs as 2 means" in axes
            line = str(view.query_one("#scatter-best", Static).render())
            assert f"best: {best.label}: best loss {format_number(best.y)} (" in line
            # each setting's range is drawn in its colour: one column of rows on end,
            # its point and the bar through it
            plot = view.query_one(SweepScatter)
            for point in shown.points:
                cells = _cells_in(plot, point.colour)
                rows = sorted(row for row, _, _ in cells)
                assert len({col for _, col, _ in cells}) == 1
                assert rows == list(range(rows[0], rows[0] + len(rows))) and len(rows) >= 2
                glyphs = {char for _, _, char in cells}
                assert glyphs & {BAR, BAR_TOP, BAR_FOOT} and glyphs & {POINT, BEST}, glyphs

            await pilot.press("G")  # each run again, seeds back among the settings
            assert view.shown is not None and not view.shown.grouped
            assert len(view.shown.points) == 6 and all(p.low is None for p in view.shown.points)
            assert "means" not in str(view.query_one("#scatter-axes", Static).render())

    asyncio.run(scenario())


def _cells_in(widget: SweepScatter, colour: str) -> list[tuple[int, int, str]]:
    """(row, column, character) of each mark drawn in ``colour`` (a blank takes the style
    beside it: it shows only its background)."""
    found = []
    for row in range(widget.size.height):
        col = 0
        for segment in widget.render_line(row):
            style = segment.style
            for char in segment.text:
                if char != " " and style and style.color and style.color.name == colour:
                    found.append((row, col, char))
                col += 1
    return found


def _faint_braille(segment: Segment) -> bool:
    style = segment.style
    return bool(style and style.dim and style.color and any(
        0x2800 < ord(c) <= 0x28FF for c in segment.text))


def _best(lr: float, seed: int) -> float:
    return min(float(p[2]) for p in loss_points(0, STEPS, lr, 0.0, seed=seed))


def test_ls_g_lists_a_row_a_setting_with_the_mean_and_sd_of_its_seeds(engine: Engine) -> None:
    by_lr = _stored_seeds(engine)
    bests = {lr: [_best(lr, seed) for seed in SEEDS] for lr in LRS}
    better, worse = sorted(LRS, key=lambda lr: fmean(bests[lr]))

    listed = engine.cli("ls", "-G", "-c", "lr,seed", "--sort", "best", "--json")
    assert listed.code == 0, listed.err
    rows = listed.json()
    assert [r["runs"] for r in rows] == [by_lr[better], by_lr[worse]]
    for row, lr in zip(rows, (better, worse), strict=True):
        assert row["setting"] == f"lr={lr}" and "seed" not in row["config"]
        assert row["best"]["mean"] == fmean(bests[lr])
        assert row["best"]["sd"] == stdev(bests[lr]) and row["best"]["min"] == min(bests[lr])
        assert row["values"] == {"lr": lr, "seed": list(SEEDS)}
        assert row["states"] == {"finished": 3}

    table = engine.cli("ls", "-G", "-c", "seed", "--sort", "best", "-r")
    lines = table.out.splitlines()
    assert lines[0].split()[:6] == ["SETTING", "RUNS", "STATES", "STEP", "LOSS", "BEST"]
    first = lines[1]
    assert first.startswith(f"lr={worse} ") and " 3 finished " in first and " 0,1,2 " in first
    assert f"{fmean(bests[worse]):.4g} ± {stdev(bests[worse]):.2g}" in first
    assert lines[-1] == "(6 of 6 runs as 2 settings; LOSS, BEST: mean ± sd of the runs)"
    with pytest.MonkeyPatch.context() as patch:  # a terminal narrower: the ids give way
        patch.setenv("COLUMNS", str(max(map(len, lines)) - 6))
        fitted = engine.cli("ls", "-G", "-c", "seed", "--sort", "best", "-r").out.splitlines()
    assert max(map(len, fitted)) <= max(map(len, lines)) - 6 and fitted[1].endswith("…")
    assert fitted[1].startswith(f"lr={worse} ") and fitted[-1] == lines[-1]

    # -q: a line of ids a setting; -n: the first settings of the sort; words filter runs
    quiet = engine.cli("ls", "-G", "-q", "--sort", "best", "-n", "1")
    assert quiet.out.splitlines() == [" ".join(by_lr[better])]
    seed0 = engine.cli("ls", "-G", "-q", "seed=0").out.splitlines()
    assert seed0 == [by_lr[LRS[0]][0], by_lr[LRS[1]][0]]
    none = engine.cli("ls", "-G", "lr=5")
    assert none.code == 0 and none.out.strip() == "no run of the 6 matches"
    bad = engine.cli("ls", "-G", "--sort", "bset")
    assert bad.code == 1 and "did you mean best?" in bad.err


def test_runs_that_differ_in_more_than_seeds_are_grouped_by_the_keys_named(
    engine: Engine,
) -> None:
    by_lr = _stored_seeds(engine, own_dir=True)  # each run writes to a directory of its own
    ids = [r for lr in LRS for r in by_lr[lr]]
    engine.paths.tui_view.write_text(json.dumps(
        {"version": VERSION, "marks": ids, "group": True}))

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(160, 40)) as pilot:
            chart, status = app.query_one(LossChart), app.query_one("#status", Static)
            await until(pilot, lambda: len(chart.series) == 6)  # alike but for seeds: none
            assert "no runs alike but for seeds" in str(status.render())
            await pilot.press("G")  # off
            await pilot.press("G")  # the dialog: group by a key no run has
            dialog = await screen_of(pilot, app, GroupDialog)
            dialog.query_one("#group-by", Input).value = "lrr"
            await pilot.press("enter")
            error = dialog.query_one("#dialog-error", Static)
            await until(pilot, lambda: "did you mean lr?" in str(error.render()))
            assert not app.state.view.group and app.screen is dialog
            dialog.query_one("#group-by", Input).value = "lr"
            await pilot.press("enter")
            await until(pilot, lambda: sorted(s.label for s in chart.series)
                        == ["lr=0.01 (3 runs)", "lr=0.03 (3 runs)"])
            assert "6 runs as 2 means" in str(status.render())
        saved = json.loads(engine.paths.tui_view.read_text())
        assert saved["group"] is True and saved["group_by"] == ["lr"]

    asyncio.run(scenario())

    assert len(engine.cli("ls", "-G", "-q").out.splitlines()) == 6
    listed = engine.cli("ls", "--by", "lr", "--json").json()  # --by: -G by those keys
    assert [(r["runs"], r["config"]) for r in listed] == [
        (by_lr[lr], {"lr": lr}) for lr in LRS]
    bad = engine.cli("ls", "--by", "lrr")
    assert bad.code == 1 and "no run has a config key named 'lrr'; did you mean lr?" in bad.err


def test_sweep_like_adds_seeds_to_the_settings_named_and_skips_those_run(
    engine: Engine,
) -> None:
    by_lr = _stored_seeds(engine)  # lr 0.01 and 0.03, seeds 0, 1, 2 each
    bases = f"{by_lr[0.01][0]}, {by_lr[0.03][1]}"  # one run of each setting
    planned = engine.cli("sweep", "--like", bases, "seed=0,1,2,3,4", "steps=20",
                         "--dry-run", "--json")
    # steps=20 makes each a new config: all ten planned
    assert planned.code == 0, planned.err
    assert len(planned.json()) == 10
    dry = engine.cli("sweep", "--like", bases, "seed=1,2,3,4", "--dry-run")
    assert dry.code == 0, dry.err
    assert "4 of 8 alike a run that exists or comes earlier" in dry.err
    assert "4 runs would start" in dry.out

    started = engine.cli("sweep", "--like", bases, "--like", by_lr[0.01][2], "seed=2,3",
                         "--json")
    assert started.code == 0, started.err
    runs = started.json()
    # seed 2 exists for both lrs; seed 3 is new for each (asked twice for lr 0.01: once)
    assert sorted((r["config"]["lr"], r["config"]["seed"]) for r in runs) == [
        (0.01, 3), (0.03, 3)]
    assert all(r["config"]["steps"] == SYNTHETIC["steps"] and r["workload"] == "synthetic"
               for r in runs)  # the rest of the config is the bases'
    assert len({r["sweep"] for r in runs}) == 1 and runs[0]["sweep"]
    for run in runs:
        assert engine.wait_state(run["id"], *TERMINAL)["state"] == "finished"
    listed = engine.cli("ls", "-G", "--json").json()
    assert [(r["config"]["lr"], len(r["runs"])) for r in listed] == [(0.01, 4), (0.03, 4)]

    again = engine.cli("sweep", "--like", bases, "seed=0,3")
    assert again.code == 1 and again.err.splitlines()[-1] == (
        "traintop: every run asked for exists already; nothing was started")
    unknown = engine.cli("sweep", "--like", "zzzzzz", "seed=5")
    assert unknown.code == 1 and "zzzzzz" in unknown.err and len(unknown.err.splitlines()) == 1
    both = engine.cli("sweep", "synthetic", "--like", bases, "seed=5")
    assert both.code == 2 and "give it no workload" in both.err
    typo = engine.cli("sweep", "--like", bases, "sed=5")
    assert typo.code == 2 and "unknown config key 'sed'" in typo.err
    assert len(engine.all_runs()) == 8  # nothing started by the refusals
