"""The app's actions about many runs at once: start a sweep, scatter a sweep's runs,
move a queued run up or down its queue, and show and steer the queues.

A sweep starts as ``traintop sweep`` starts one (``engine.client.sweep_plan``): the
same expansion, names and group, every run's config checked before the first starts.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from textual import work

from engine.client.client import EngineError, EngineUnavailable
from engine.client.events import RunInfo
from engine.client.queue_text import new_queue_text
from engine.client.run_select import parse_filter
from engine.client.sweep_plan import base_name, config_problem, fresh_seed_text
from engine.common.pbt import PbtRule
from engine.common.runs import name_problem
from engine.common.sweep import SweepError
from tui.compare import colours_for
from tui.run_actions import RunActions
from tui.screens.dialogs import sweep_rule_of
from tui.screens.queues import QueuesScreen
from tui.screens.sweep_dialog import SweepDialog, expand_axes, form_search, form_seed
from tui.screens.sweep_view import CloserLook, Grouping, SweepView
from tui.widgets.runs_table import RunsTable


class SweepActions(RunActions):
    """``S`` (sweep dialog), ``v`` (sweep view), ``[`` and ``]`` (queue order), ``Q``
    (the queues)."""

    def action_queue_up(self) -> None:
        self._move("up")

    def action_queue_down(self) -> None:
        self._move("down")

    @work
    async def _move(self, to: str) -> None:
        run = self._need_run()
        if run is None:
            return
        if run.state != "queued":
            self.notify(f"{run.id} is {run.state}: only a queued run moves in its queue",
                        severity="warning")
            return
        await self._request("move", f"moved {run.id} {to} in queue {run.queue}",
                            run=run.id, to=to)

    def action_queues(self) -> None:
        run = self.selected
        def eta(queue: str) -> float | None:
            return self.state.runs_eta(r.id for r in self.state.runs.values() if r.queue == queue)

        self.push_screen(QueuesScreen(self.link.call, self.readonly,
                                      run.queue if run is not None else None, eta))

    def action_sweep_view(self) -> None:
        """Scatter the marked runs (two or more), else the selected run's sweep."""
        table = self.query_one(RunsTable)
        marked = [r for r in self.state.marks if r in self.state.runs]
        group = table.group_of(table.selected_id or "")
        if len(marked) >= 2:
            ids, title = marked, f"{len(marked)} marked runs"
        elif group is not None:  # the runs of it the table shows: a filter narrows it
            ids, title = list(group.runs), f"sweep {group.name}: {len(group.runs)} runs"
            if table.text_filter.strip():
                wanted = parse_filter(table.text_filter, errors=[])
                ids = [r for r in ids if r in self.state.runs and wanted.matches(
                    self.state.runs[r])]
                title = (f"sweep {group.name}: {len(ids)} of {len(group.runs)} runs, "
                         f"those the filter keeps ({table.text_filter.strip()})")
        else:
            self.notify("select a run of a sweep, or mark two or more runs (space), "
                        "to plot them", severity="warning")
            return
        if group is not None and set(ids) == set(group.runs):  # the whole sweep, marked
            title = f"sweep {group.name}: {len(group.runs)} runs"
        labels = {r: table.shown_name(r) for r in ids}

        def runs_now() -> list[RunInfo]:
            return [self.state.runs[r] for r in ids if r in self.state.runs]

        colours = colours_for(ids, self.state.marks)
        view = self.state.view
        self.push_screen(SweepView(title, runs_now, colours, labels,
                                   Grouping(view.group, view.group_by)), self._select_picked)

    def _select_picked(self, run_id: str | CloserLook | None) -> None:
        """Select the run the sweep view closed on (Enter), unfolding what hides it; or
        open the sweep dialog on the closer look it closed with (``n``)."""
        if isinstance(run_id, CloserLook):
            trials = str(run_id.trials) if run_id.trials else ""
            self._sweep_dialog({"workload": run_id.workload, "axes": run_id.axes,
                                "trials": trials})
            return
        if run_id is None:
            return
        table = self.query_one(RunsTable)
        table.pending_select = run_id
        table.refresh_rows(self.state)
        if table.selected_id != run_id:  # the filter hides it
            table.pending_select = None
            self.notify(f"{run_id} is hidden by the filter ('/')", severity="warning")

    def action_sweep(self) -> None:
        self._sweep_dialog()

    @work
    async def _sweep_dialog(self, filled: dict[str, str] | None = None) -> None:
        """The sweep dialog (``S``), its fields ``filled`` (a closer look's)."""
        try:
            workloads = await self.link.call("workloads")
        except (EngineError, EngineUnavailable) as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(SweepDialog(workloads, self._start_sweep, filled))

    async def _start_sweep(self, form: dict[str, Any]) -> str | None:
        """Start every run of the sweep the dialog describes; the reason if none started
        (or, if the engine refused one half-way, which did)."""
        workload = str(form["workload"]).strip()
        if not workload:
            return "no workload: pick a built-in one or name a file"
        seed = str(form["seed"]).strip()
        try:
            if not seed:  # new draws, as 'traintop sweep' without --seed
                seed = str(form_seed(form["axes"], form["trials"], form["search"],
                                     (r.config for r in self.state.runs.values()
                                      if r.workload == workload)))
            runs = expand_axes(form["axes"], form["trials"], seed, form["search"])
            rule = sweep_rule_of(form["early_stop"], form["pbt"], shlex.split(form["axes"]))
            search = form_search(form["axes"], form["trials"], seed, form["search"])
        except SweepError as exc:
            return str(exc)
        if search is not None and isinstance(rule, PbtRule):
            return "a sweep is searched by TPE or made a population by PBT, not both"
        base = form["name"] or base_name(workload)
        problem = name_problem(base)
        if problem:
            return problem
        plan = self.plan(workload, runs, base, None if search is None else list(search.axes))
        cwd = str(Path.cwd())
        try:
            found = await self.link.call("workloads", workload=workload, cwd=cwd)
        except (EngineError, EngineUnavailable) as exc:
            return str(exc)
        problem = config_problem(next(iter(found.values())), plan.runs)
        if problem is not None:
            return f"{problem}; nothing was started"
        try:  # a misspelt queue would make a new one: said with the run count below
            new_queue = new_queue_text(form["queue"], await self.link.call(
                "queues", waiting=0)) if form["queue"] else None
        except (EngineError, EngineUnavailable) as exc:
            return str(exc)
        started: list[str] = []
        extra = {"checkpoint_every": form["checkpoint_every"], "retries": form["retries"],
                 **({} if rule is None else {"early_stop": rule.wire()}),
                 **({} if search is None else {"search": search.wire()})}
        for request in plan.start_requests(cwd=cwd, queue=form["queue"], **extra):
            try:
                started.append((await self.link.call("start", **request))["id"])
            except (EngineError, EngineUnavailable) as exc:
                done = f"{len(started)} started" if started else "none started"
                return f"run {len(started) + 1} of {len(plan.runs)} was refused: {exc}; {done}"
        drawn = f"; {fresh_seed_text(int(seed))}" if not form["seed"].strip() and \
            int(seed) else ""
        self.notify(f"started {len(started)} runs" + (f" of sweep {plan.sweep}"
                                                      if plan.sweep else "") + drawn)
        if new_queue is not None:
            self.notify(f"queue {form['queue']!r} is new: {new_queue}", severity="warning")
        self.query_one(RunsTable).pending_select = started[0]
        return None
