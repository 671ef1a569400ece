"""The "Many runs" screenshots: a real 12-run charlm sweep, overlaid, and its scatter;
then a sweep of three lrs by three seeds, each lr drawn as the mean of its seeds (``G``).

The sweep is expanded, named and started as ``traintop sweep`` does it
(``engine.common.sweep`` and ``engine.client.sweep_plan``), into its own queue with a
slot for every run, on its own state directory so the table holds the sweep alone.
"""

from __future__ import annotations

import os

from shot_tools import TERMINAL, Pilot, log, poll, save, until

from engine.client.client import Client
from engine.client.sweep_plan import base_name, config_problem, fork_variants, plan_among
from engine.common.pbt import SweepRule
from engine.common.sweep import expand, parse_tokens
from engine.rundir.paths import StatePaths
from tui.app import TraintopApp
from tui.screens.sweep_view import SweepView
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable

WORKLOAD = "charlm"
# 3 x 2 x 2 = 12 runs, each small and short, so that all of them end in a couple of
# minutes on two cores; a fixed seed, so the curves differ only by the swept values.
AXES = ["lr=1e-3,3e-3,1e-2", "batch=16,32", "dropout=0,0.1"]
FIXED = ["steps=300", "d_model=32", "layers=1", "warmup=20"]
# 3 lrs x 3 seeds: the seed changes the initial weights and the batches drawn.
SEED_AXES = ["lr=1e-3,3e-3,1e-2", "seed=0,1,2"]
# A population of 6 learning rates, a PBT round every 150 of 600 steps: on two cores
# about 15 s of training, against a few seconds for a fork's worker to start.
PBT_AXES = ["lr=log(3e-4..3e-2)", "steps=600"]
PBT_RUNS = 6
PBT_INTERVAL = 150
QUEUE = "sweep"
WAIT_SWEEP_S = 300.0
# A run forked into three lrs at step 200 of 600 ('traintop fork RUN lr=A,B,C').
FORK_BASE = ["steps=600", "d_model=32", "layers=1", "warmup=20", "lr=3e-3"]
FORK_AT = 200
FORK_VALUES = ["lr=1e-3,1e-2,3e-2"]


def start_sweep(paths: StatePaths, axes: list[str] = AXES, trials: int | None = None,
                rule: SweepRule | None = None) -> tuple[str, list[str]]:
    """Start the sweep over ``axes`` in its own queue, judged by ``rule``; (its group's
    name, its run ids)."""
    runs = expand(parse_tokens(FIXED).replaced_by(parse_tokens(axes)), trials)
    with Client(paths).connect() as client:
        plan = plan_among(WORKLOAD, runs, base_name(WORKLOAD), client.all_runs())
        found = client.call("workloads", workload=WORKLOAD, cwd="/")
        problem = config_problem(next(iter(found.values())), plan.runs)
        if problem is not None:
            raise RuntimeError(problem)
        client.call("queue_set", name=QUEUE, parallel=len(plan.runs))
        extra = {} if rule is None else {"early_stop": rule.wire()}
        ids = [client.call("start", **request)["id"] for request in
               plan.start_requests(device=None, cwd="/", queue=QUEUE, **extra)]
    log(f"sweep {plan.sweep}: {len(ids)} runs in queue {QUEUE} "
        f"({len(plan.runs)} slots, {os.cpu_count()} cores)")
    assert plan.sweep is not None
    return plan.sweep, ids


def wait_for_sweep(paths: StatePaths, ids: list[str]) -> list[str]:
    """Until every run of the sweep has ended (at most WAIT_SWEEP_S), the forks its
    rule made too; say how each did; every run's id, the forks' after the others'."""
    with Client(paths).connect() as client:
        group = {r.get("sweep") for r in client.all_runs() if r["id"] in ids}

        def ended() -> list[dict[str, object]] | None:
            runs = [r for r in client.all_runs() if r["id"] in ids or r.get("sweep") in group]
            return runs if all(r["state"] in TERMINAL for r in runs) else None

        runs = poll(ended, WAIT_SWEEP_S, every=2.0)
        if runs is None:
            raise RuntimeError(f"the sweep did not end within {WAIT_SWEEP_S:.0f} s")
        for run in runs:
            log(f"  {run['id']} {run['name']:<32} {run['state']:<9} step {run['step']}")
        return [*ids, *(str(r["id"]) for r in runs if r["id"] not in ids)]


def _all_drawn(app: TraintopApp, group: str, ids: list[str], marked: bool) -> bool:
    """The group's rows are drawn, each run's best is known, and the chart holds every
    run of the sweep, in the marks' colours once they are marked."""
    table, chart, state = app.query_one(RunsTable), app.query_one(LossChart), app.state
    return bool(
        state.connected
        and f"sweep:{group}" in table.order
        and all(r in table.order and state.runs[r].best for r in ids)
        and not (state.rows_dirty or state.changed or state.telemetry_dirty)
        and (sorted(state.marks) == sorted(ids)) == marked
        and sorted(s.run_id for s in chart.series) == sorted(ids)
        and (not marked or all(s.style == state.marks.get(s.run_id) for s in chart.series))
        and not app.feed.due(ids, app._view_request())
    )


async def _mark_sweep(app: TraintopApp, pilot: Pilot, group: str, ids: list[str]) -> None:
    """Select the sweep's row once every run of it is drawn, and mark them all (space)."""
    table = app.query_one(RunsTable)
    await until(pilot, lambda: f"sweep:{group}" in table.order)
    table.select(f"sweep:{group}")
    await until(pilot, lambda: _all_drawn(app, group, ids, marked=False))
    await pilot.press("space")
    await until(pilot, lambda: _all_drawn(app, group, ids, marked=True))


async def capture_sweep(paths: StatePaths, group: str, ids: list[str],
                        size: tuple[int, int], overlay: str = "sweep-overlay.svg",
                        scatter: str | None = "sweep-scatter.svg") -> None:
    """Mark the whole sweep from its header row (space), save the overlay as ``overlay``;
    then, unless ``scatter`` is None, open ``v`` and save that, and its parallel
    coordinates (``p``) as sweep-parallel.svg."""
    app = TraintopApp(home=paths.home)
    async with app.run_test(size=size) as pilot:
        await _mark_sweep(app, pilot, group, ids)
        await until(pilot, lambda: app.state.telemetry)
        await pilot.pause(1.5)  # a few telemetry samples and a settled layout
        save(app, overlay)
        if scatter is None:
            return
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, SweepView)
                    and app.screen.shown is not None)
        await pilot.pause(0.3)
        save(app, scatter)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, SweepView)
                    and app.screen.lines is not None)
        await pilot.pause(0.3)
        save(app, "sweep-parallel.svg")


async def capture_seeds(paths: StatePaths, group: str, ids: list[str],
                        size: tuple[int, int]) -> None:
    """Mark the lr-by-seed sweep from its row, then ``G``: a mean and band per lr; then
    ``v``: the scatter, grouped too."""
    app = TraintopApp(home=paths.home)
    async with app.run_test(size=size) as pilot:
        chart = app.query_one(LossChart)
        await _mark_sweep(app, pilot, group, ids)
        await pilot.press("G", "enter")  # the dialog: Enter alone, all but seeds
        await until(pilot, lambda: len(chart.series) == 3 and all(s.band for s in chart.series))
        await until(pilot, lambda: app.state.telemetry)
        await pilot.pause(1.5)
        save(app, "sweep-seeds.svg")

        await pilot.press("v")  # grouped as the chart is: a point and a bar per lr
        await until(pilot, lambda: isinstance(app.screen, SweepView)
                    and app.screen.shown is not None and app.screen.shown.grouped)
        await pilot.pause(0.3)
        save(app, "sweep-seeds-scatter.svg")


def start_fork_variants(paths: StatePaths) -> tuple[str, list[str]]:
    """A charlm run, then once it is FORK_AT steps in, three forks of it at one step
    with the lrs of FORK_VALUES, as ``traintop fork`` makes them; (the group's name,
    the parent's id and the forks' ids)."""
    with Client(paths).connect() as client:
        client.call("queue_set", name=QUEUE, parallel=4)
        parent = client.call("start", workload=WORKLOAD, overrides=FORK_BASE, name="base",
                             cwd="/", queue=QUEUE)
        at = poll(lambda: client.call("get_run", run=parent["id"])["step"] >= FORK_AT, 120)
        if not at:
            raise RuntimeError(f"the base run did not reach step {FORK_AT} in 120 s")
        variants = fork_variants(FORK_VALUES)
        assert variants is not None
        plan = plan_among(WORKLOAD, variants, parent["name"], client.all_runs())
        forks = client.call("fork_variants", run=parent["id"], variants=plan.runs,
                            names=plan.names, sweep=plan.sweep)["runs"]
    log(f"forked {parent['id']} into {len(forks)} runs (group {plan.sweep})")
    assert plan.sweep is not None
    return plan.sweep, [parent["id"], *(f["id"] for f in forks)]


async def capture_fork_variants(paths: StatePaths, group: str, ids: list[str],
                                size: tuple[int, int]) -> None:
    """Select the forks' header (under their parent): the parent and its three forks
    on one chart, parting at one step."""
    app = TraintopApp(home=paths.home)
    async with app.run_test(size=size) as pilot:
        table, chart = app.query_one(RunsTable), app.query_one(LossChart)
        await until(pilot, lambda: f"sweep:{group}" in table.order)
        table.select(f"sweep:{group}")
        await until(pilot, lambda: sorted(s.run_id for s in chart.series) == sorted(ids)
                    and all(app.state.runs[r].best for r in ids)
                    and not app.feed.due(ids, app._view_request()))
        await until(pilot, lambda: app.state.telemetry)
        await pilot.pause(1.5)
        save(app, "fork-variants.svg")
