"""The app's actions that change runs: start, pause, release, fork, kill, details.

Each sends one request to the daemon and says what happened; none waits on
the screen. Kept apart from ``tui.app``, which lays out and feeds the views.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from textual import events, work

from engine.client.client import EngineError, EngineUnavailable
from engine.client.demo import fork_request
from engine.client.events import ProtocolError, RunInfo
from engine.client.sweep_plan import SweepPlan, plan_sweep
from engine.common.format import format_bytes
from engine.common.runs import (
    DEFAULT_KILL_GRACE,
    ActionError,
    RunState,
    check_action,
    name_problem,
)
from engine.common.sweep import SweepError
from tui.connection import EngineLink
from tui.keys import BY_ID, READONLY_KEYS
from tui.run_notices import RunNotices
from tui.screens.detail import RunDetail
from tui.screens.dialogs import (
    AnnotateDialog,
    ChoiceDialog,
    ConfirmDialog,
    ForkDialog,
    MoreTrialsDialog,
    NewRunDialog,
    fork_plan,
)
from tui.screens.diff import ConfigDiff
from tui.state import TuiState
from tui.sweep_groups import SweepGroup
from tui.widgets.runs_table import RunsTable

# The remove dialog's actions: the whole run, or only its checkpoints.
REMOVE_CHOICES = [("y", "Remove"), ("c", "Checkpoints only")]


class RunActions(RunNotices):
    """Requests to the daemon about the selected run (or a new one)."""

    link: EngineLink
    state: TuiState
    readonly: bool

    @property
    def selected(self) -> RunInfo | None:
        run_id = self.query_one(RunsTable).selected_id
        return self.state.runs.get(run_id) if run_id else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = BY_ID.get(action)
        if spec is not None and spec.mutates and self.readonly:
            return None  # shown greyed out, and the key does nothing
        return True

    def on_key(self, event: events.Key) -> None:
        """A key that would change runs, pressed in --readonly mode: said, not ignored."""
        if self.readonly and event.key in READONLY_KEYS:
            self.notify(f"read-only: {event.key} would change runs (traintop started "
                        "with --readonly)", severity="warning")

    def _need_run(self) -> RunInfo | None:
        run = self.selected
        if run is None:
            self.notify("no run selected", severity="warning")
        return run

    async def _request(self, method: str, done: str, **params: Any) -> bool:
        """Send a request; say what happened either way."""
        try:
            await self.link.call(method, **params)
        except (EngineError, EngineUnavailable) as exc:
            self.notify(str(exc), severity="error", title=f"{method} refused")
            return False
        self.notify(done)
        return True

    @work(exclusive=True, group="demo")
    async def _demo_fork(self) -> None:
        """``traintop demo``: fork the middle run once it is a little way in."""
        request = fork_request(list(self.state.runs.values()))
        if request is not None and self.state.connected:
            await self._request("fork", f"demo: forked {request['run']} with lr=1e-3", **request)

    def _selected_sweep(self) -> tuple[SweepGroup, list[RunInfo]] | None:
        """The sweep whose header is selected, with its runs, if a header is."""
        group = self.query_one(RunsTable).selected_group
        if group is None:
            return None
        return group, [self.state.runs[r] for r in group.runs if r in self.state.runs]

    async def _ask_each(self, method: str, runs: list[RunInfo], **params: Any) -> dict[str, Any]:
        """Send ``method`` for each of ``runs``: the replies of those that took it, by id;
        a notice for each that refused. Sent all at once, not each after the last's
        answer: a sweep of 500 runs is one burst the engine answers back to back."""
        async def one(run: RunInfo) -> Any:
            try:
                return await self.link.call(method, run=run.id, **params)
            except (EngineError, EngineUnavailable) as exc:
                return exc

        replies = await asyncio.gather(*(one(run) for run in runs))
        for run, reply in zip(runs, replies, strict=True):
            if isinstance(reply, EngineError | EngineUnavailable):
                self.notify(str(reply), severity="error", title=f"{method} of {run.id} refused")
        return {run.id: reply for run, reply in zip(runs, replies, strict=True)
                if not isinstance(reply, EngineError | EngineUnavailable)}

    async def _request_each(self, method: str, runs: list[RunInfo], done: str,
                            **params: Any) -> list[str]:
        """Send ``method`` for each of ``runs``; one notice for all that took it, one
        for each that refused. Returns the ids of those that refused."""
        replies = await self._ask_each(method, runs, **params)
        if took := len(replies):
            self.notify(f"{done}: {took} run{'s' if took != 1 else ''}")
        return [r.id for r in runs if r.id not in replies]

    @work
    async def action_pause(self) -> None:
        sweep = self._selected_sweep()
        if sweep is not None:  # a sweep's header: pause its live runs, or resume them all
            group, runs = sweep
            live = [r for r in runs if r.state in ("running", "starting")]
            if live:  # noted before asking, as ``_pause`` does; a refused one forgotten
                self.pauses_sent.update(r.id for r in live)
                refused = await self._request_each("pause", live, f"pausing sweep {group.name}")
                self.pauses_sent.difference_update(refused)
            elif paused := [r for r in runs if r.state == "paused"]:
                await self._request_each("resume", paused, f"resuming sweep {group.name}")
            else:
                self.notify(f"sweep {group.name} has no run to pause or resume",
                            severity="warning")
            return
        run = self._need_run()
        if run is None:
            return
        if run.state in ("paused", "failed"):  # a failed run: from its last checkpoint
            await self._request("resume", f"resuming {run.id}", run=run.id)
        else:
            await self._pause(run.id, f"pausing {run.id} at its next step")

    @work
    async def action_release(self) -> None:
        run = self._need_run()
        if run is not None and not self._refused(run, "release"):
            await self._pause(run.id, f"pausing {run.id} and releasing its memory", release=True)

    async def _pause(self, run_id: str, done: str, release: bool = False) -> None:
        # Noted before asking: the paused event may be read before the reply is.
        self.pauses_sent.add(run_id)
        if not await self._request("pause", done, run=run_id, release=release):
            self.pauses_sent.discard(run_id)

    def _refused(self, run: RunInfo, action: str) -> bool:
        """Say why ``run``'s kind cannot do ``action`` (the daemon's words), if it cannot."""
        reason = run.refusals.get(action)
        if reason is not None:
            self.notify(reason, severity="error")
        return reason is not None

    async def _submit(self, method: str, params: dict[str, Any]) -> str | None:
        # A new run's files resolve from here; a fork runs where its parent ran (the
        # engine refuses a parameter a request does not take).
        where = {"cwd": str(Path.cwd())} if method == "start" else {}
        try:
            result = await self.link.call(method, **params, **where)
        except (EngineError, EngineUnavailable) as exc:
            return str(exc)
        self.notify(
            f"{'forked' if method == 'fork' else 'started'} {result['id']} ({result['name']})"
        )
        self.query_one(RunsTable).pending_select = result["id"]
        return None

    def action_fork(self) -> None:
        run = self._need_run()
        if run is None or self._refused(run, "fork"):
            return
        try:  # the engine's own rules and words, so the two never disagree
            check_action("fork", RunState(run.state), run.released)
        except ActionError as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(ForkDialog(run, self._fork))

    async def _fork(self, form: dict[str, Any]) -> str | None:
        """Fork as the dialog asks: one fork, or one per value of a list or a random
        axis, all from one checkpoint and grouped (as ``traintop fork`` does)."""
        try:
            variants, rule = fork_plan(form)
        except SweepError as exc:
            return str(exc)
        parent = self.state.runs.get(form["run"])
        if variants is None or parent is None:
            return await self._submit("fork", {k: form[k] for k in ("run", "overrides", "name")})
        base = form["name"] or parent.name
        problem = name_problem(base)
        if problem:
            return problem
        plan = self.plan(parent.workload, variants, base)
        try:
            forks = (await self.link.call("fork_variants", run=parent.id, variants=plan.runs,
                                          names=plan.names, sweep=plan.sweep,
                                          **({} if rule is None else
                                             {"early_stop": rule.wire()})))["runs"]
        except (EngineError, EngineUnavailable) as exc:
            return str(exc)
        group = f" (group {plan.sweep})" if plan.sweep else ""
        self.notify(f"forked {parent.id} into {len(forks)} run"
                    f"{'s' if len(forks) != 1 else ''}{group}")
        self.query_one(RunsTable).pending_select = forks[0]["id"]
        return None

    def plan(self, workload: str, runs: list[list[str]], base: str,
             searched: list[str] | None = None) -> SweepPlan:
        """Names for new runs of a sweep (or fork variants) and their group, none taken
        by a run listed (``searched``: a search's axes, see ``plan_sweep``)."""
        listed = self.state.runs.values()
        taken, sweeps = {r.name for r in listed}, {r.sweep for r in listed}
        return plan_sweep(workload, runs, base, taken.__contains__, sweeps.__contains__,
                          searched)

    def action_annotate(self) -> None:
        run = self._need_run()
        if run is not None:
            self.push_screen(AnnotateDialog(run, self._annotate))

    async def _annotate(self, params: dict[str, Any]) -> str | None:
        try:
            await self.link.call("annotate", **params)
        except (EngineError, EngineUnavailable) as exc:
            return str(exc)
        self.notify(f"saved the tags and note of {params['run']}")
        return None

    def action_new_run(self) -> None:
        self._new_run_dialog(None)

    def action_retry_run(self) -> None:
        sweep = self._selected_sweep()
        if sweep is not None:  # a sweep's header: more trials, if it is a search
            self._more_trials(*sweep)
            return
        run = self._need_run()
        if run is None:
            return
        if run.kind != "train":  # a command or a script of the user's: no form to fill in
            again = (f"'traintop restart {run.id}' runs its command again"
                     if run.kind == "wrapped" else "run your script again to restart it")
            self.notify(f"{run.id} has no workload config to edit: {again}", severity="warning")
            return
        self._new_run_dialog(run)

    def _more_trials(self, group: SweepGroup, runs: list[RunInfo]) -> None:
        """The more-trials dialog of a searched sweep (``sweep --more``)."""
        searched = [r for r in runs if r.search]
        if not searched:
            self.notify(f"sweep {group.name} is not a search: N on a searched sweep's row "
                        "adds trials to it (S starts one)", severity="warning")
            return

        async def more(params: dict[str, Any]) -> str | None:
            try:
                done = await self.link.call("search_more", **params)
            except (EngineError, EngineUnavailable) as exc:
                return str(exc)
            self.notify(f"sweep {group.name}: {params['trials']} more trials, "
                        f"{done['search']['trials']} in all; {len(done['started'])} started now")
            return None

        self.push_screen(MoreTrialsDialog(group.name, len(searched), searched[-1].search or {},
                                          more))

    @work
    async def _new_run_dialog(self, retry: RunInfo | None) -> None:
        """The new-run dialog: empty, or filled from ``retry`` (edit and retry)."""
        try:
            workloads = await self.link.call("workloads")
        except (EngineError, EngineUnavailable) as exc:
            self.notify(str(exc), severity="error")
            return

        async def describe(spec: str) -> dict[str, Any] | str:
            try:
                found = await self.link.call("workloads", workload=spec, cwd=str(Path.cwd()))
            except (EngineError, EngineUnavailable) as exc:
                return str(exc)
            return dict(next(iter(found.values())))

        self.push_screen(
            NewRunDialog(workloads, describe, lambda p: self._submit("start", p), retry)
        )

    @work
    async def action_kill(self) -> None:
        sweep = self._selected_sweep()
        if sweep is not None:  # a sweep's header: every run of it that has not ended
            group, runs = sweep
            live = [r for r in runs if not r.terminal]
            if not live:
                self.notify(f"every run of sweep {group.name} has ended", severity="warning")
                return
            body = (f"Kill the {len(live)} runs of sweep {group.name} that have not ended "
                    f"({_states_said(live)})?\nSIGTERM to each, SIGKILL after "
                    f"{DEFAULT_KILL_GRACE:g} s. Their metrics and logs are kept.")
            if await self.push_screen_wait(ConfirmDialog("Kill sweep", body, "Kill")):
                self.state.killed_here.update(r.id for r in live)  # no "done" news of it
                await self._request_each("kill", live, f"killing sweep {group.name}")
            return
        run = self._need_run()
        if run is None:
            return
        if run.terminal:
            self.notify(f"{run.id} is already {run.state}", severity="warning")
            return
        body = (
            f"Kill run {run.id} ({run.name}), {run.state} at step {run.step}"
            f" on {run.device}?\nSIGTERM to its process group, SIGKILL after "
            f"{DEFAULT_KILL_GRACE:g} s. "
            "Its metrics and logs are kept."
        )
        if await self.push_screen_wait(ConfirmDialog("Kill run", body, "Kill")):
            self.state.killed_here.add(run.id)
            await self._request("kill", f"killing {run.id}", run=run.id)

    @work
    async def action_remove(self) -> None:
        """Remove the selected ended run (on a sweep's row: its ended runs), once confirmed."""
        sweep = self._selected_sweep()
        if sweep is not None:
            group, runs = sweep
            runs = [r for r in runs if r.terminal]
            if not runs:
                self.notify(f"no run of sweep {group.name} has ended", severity="warning")
                return
        else:
            run = self._need_run()
            if run is None:
                return
            try:  # the engine's own rule and words
                check_action("remove", RunState(run.state), run.released)
            except ActionError as exc:
                self.notify(str(exc), severity="error")
                return
            runs = [run]
        # Asked first without acting: what the files take, and whether anything still
        # needs a run (a fork that will start from its checkpoint), said for each.
        sizes = await self._ask_each("remove", runs, dry_run=True)
        runs = [r for r in runs if r.id in sizes]
        if not runs:
            return
        points = await self._ask_each("remove", runs, dry_run=True, checkpoints=True)
        files = format_bytes(sum(int(reply["freed"]) for reply in sizes.values()))
        saved = format_bytes(sum(int(reply["freed"]) for reply in points.values()))
        gone = f" metrics, events, logs and checkpoints ({files} of files) are deleted for good"
        kept = sum(len(reply["kept"]) for reply in points.values())
        spared = (f"; {kept} that a fork still needs "
                  f"{'stays' if kept == 1 else 'stay'}") if kept else ""
        if sweep is not None:
            what = f"the {len(runs)} ended runs of sweep {sweep[0].name}"
            body = (f"Remove {what} ({_states_said(runs)})?\nTheir{gone}; forks keep their "
                    f"own.\nc removes only their checkpoints ({saved}{spared}) and keeps the "
                    "runs: their curves stay; they can no longer be forked or resumed.")
            done = f"the ended runs of sweep {sweep[0].name}"
            choice = await self.push_screen_wait(ChoiceDialog("Remove runs", body, REMOVE_CHOICES))
            if choice == "y":
                await self._request_each("remove", runs, f"removed {done}")
            elif choice == "c":
                await self._request_each("remove", runs, f"removed the checkpoints of {done}",
                                         checkpoints=True)
            return
        run = runs[0]
        body = (f"Remove run {run.id} ({run.name}), {run.state} at step {run.step}?\n"
                f"Its{gone}; forks keep their own.\nc removes only its checkpoints "
                f"({saved}{spared}) and keeps the run: its curves stay; it can no longer be "
                "forked or resumed.")
        choice = await self.push_screen_wait(ChoiceDialog("Remove run", body, REMOVE_CHOICES))
        if choice == "y":
            await self._request("remove", f"removed {run.id}: {files} of files freed", run=run.id)
        elif choice == "c":
            await self._request("remove", f"removed the checkpoints of {run.id}: {saved} "
                                f"freed{spared}", run=run.id, checkpoints=True)

    @work
    async def action_details(self) -> None:
        run = self._need_run()
        if run is None:
            return
        try:
            detail = await self.link.describe(run.id)
        except (EngineError, EngineUnavailable, ProtocolError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(RunDetail(detail))

    def action_diff(self) -> None:
        """The marked runs' config diff; with fewer than two marked, the runs of the
        selected sweep's row (a row each), or the run and its parent."""
        runs = [self.state.runs[r] for r in self.state.marks if r in self.state.runs]
        sweep = self._selected_sweep()
        if len(runs) < 2 and sweep is not None:
            runs = list(sweep[1])
        if len(runs) < 2:
            run = self.selected
            parent = self.state.runs.get(run.parent_id or "") if run is not None else None
            if run is None or parent is None:
                self.notify("mark two or more runs (space) to compare their configs",
                            severity="warning")
                return
            runs = [parent, run]
        self.push_screen(ConfigDiff(runs))


def _states_said(runs: list[RunInfo]) -> str:
    """How many of ``runs`` are in each state, for a confirmation: ``2 running, 3 queued``."""
    return ", ".join(f"{n} {state}" for state, n in Counter(r.state for r in runs).items())
