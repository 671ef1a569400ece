"""The requests about queues: a new run's place in one, listing, setting and moving.

A run's queue fields (queue, priority, ``after``, GPUs, expected GPU memory,
sweep) are checked here before anything is made, like every other parameter.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from engine.common.pbt import PbtRule, sweep_rule
from engine.common.runs import RunState
from engine.common.search import SearchRule, search_of
from engine.rundir.paths import read_json, write_json_atomic
from engine.server.requests import RequestError, is_number, param, tags_param
from engine.server.run_lookup import RunLookup
from engine.server.scheduler import (
    DEFAULT_QUEUE,
    gpu_ask,
    holding_slots,
    queue_limit,
    queue_problem,
)

log = logging.getLogger("traintop.requests")

# Where ``move`` may put a queued run among the runs of its queue and priority.
MOVES = ("up", "down", "top", "bottom")


class QueueRequests(RunLookup):
    """Queue fields of new runs, and the ``queues``, ``queue_set`` and ``move`` requests."""

    def queue_fields(
        self, params: dict[str, Any], device: str, inherit: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The run fields a start or fork asks for, checked (``inherit``: a fork's parent,
        whose tags a fork does not take: they say what the parent was)."""
        base = inherit or {}
        queue = param(params, "queue", str, base.get("queue") or DEFAULT_QUEUE)
        problem = queue_problem(queue)
        if problem:
            raise RequestError("bad_request", problem)
        priority = param(params, "priority", int, base.get("priority") or 0)
        after = params.get("after")
        after_id = None if after is None else self._after(after)
        gpus = params.get("gpus")
        if gpus is None:
            ask = base.get("gpus")
            gpus = gpu_ask({"device": device}) if ask is None or device == "cpu" else ask
        elif not is_number(gpus) or gpus < 0 or (gpus > 1 and gpus != math.floor(gpus)):
            raise RequestError(
                "bad_request", "gpus must be a whole number of GPUs, or a share from 0 to 1"
            )
        if device == "cpu" and gpus > 0:
            raise RequestError("bad_request", f"a run on the cpu cannot take {gpus:g} GPUs")
        memory = param(params, "gpu_memory", int, None)
        if memory is not None and memory < 0:
            raise RequestError("bad_request", "gpu_memory must be zero or more bytes")
        sweep = param(params, "sweep", str, None)
        rule = params.get("early_stop")
        if rule is not None:
            try:
                judged = sweep_rule(rule)
            except ValueError as exc:
                raise RequestError("bad_request", str(exc)) from None
            if sweep is None:
                what, option = ("PBT", "--pbt") if isinstance(judged, PbtRule) else (
                    "early stopping", "--early-stop")
                raise RequestError("bad_request", f"{what} is for the runs of a sweep "
                                   f"(traintop sweep {option})")
            rule = judged.wire()
        search = params.get("search")
        if search is not None:
            search = self._search_rule(search, sweep, rule)
        return {
            "early_stop": rule,
            "search": search,
            "tags": tags_param(params),
            "queue": queue,
            "priority": priority,
            "after_id": after_id,
            "gpus": float(gpus),
            "gpu_peak": memory,
            "sweep": sweep,
            "queue_pos": self.store.last_queue_pos() + 1,
        }

    @staticmethod
    def _search_rule(data: Any, sweep: str | None, rule: dict[str, Any] | None) -> dict[str, Any]:
        """A new run's search rule, checked: a searched sweep's, not a population's."""
        try:
            search = SearchRule.from_wire(data)
        except ValueError as exc:
            raise RequestError("bad_request", str(exc)) from None
        if sweep is None:
            raise RequestError("bad_request", "a search is for the runs of a sweep "
                               "(traintop sweep --search tpe)")
        if rule is not None and "interval" in rule:
            raise RequestError("bad_request", "a sweep is searched by TPE or made a "
                               "population by PBT, not both")
        return search.wire()

    def search_more(self, params: dict[str, Any]) -> dict[str, Any]:
        """Add ``trials`` trials to a searched sweep (``startup``: how many at once from
        now) and make those due now. Kills and failures before it no longer hold the
        search back: it goes on after a user stopped it, or after a script that failed
        three trials in a row was fixed. Every trial it made so far is learned from."""
        sweep = param(params, "sweep", str)
        more = param(params, "trials", int)
        startup = param(params, "startup", int, None)
        if more < 1 or (startup is not None and startup < 1):
            raise RequestError("bad_request", "trials and startup must be 1 or more")
        runs = self.store.sweep_runs(sweep)
        searched = [r for r in runs if r["search"]]
        rule = search_of(searched[-1]) if searched else None
        if rule is None:
            raise RequestError("not_found", f"sweep {sweep!r} is not a search (--more adds "
                               "trials to a sweep made with --search tpe)" if runs else
                               f"no sweep named {sweep!r} ('traintop ls --sweeps' lists them)")
        rule = replace(rule, trials=rule.trials + more, since=time.time(),
                       startup=rule.startup if startup is None else startup)
        self.store.set_search(sweep, rule.wire())
        for run in searched:  # clients see the new count on each
            self.supervisor.announce(run["id"])
        last = self.supervisor.paths.run_dir(searched[-1]["id"]).launch
        try:  # what 'engine rebuild' reads the rule back from
            write_json_atomic(last, {**read_json(last), "search": rule.wire()})
        except (OSError, ValueError, TypeError) as exc:
            log.warning("sweep %s: the new rule was not written to %s: %s", sweep, last, exc)
        self.store.note(searched[-1]["id"], f"search of sweep {sweep}: {more} more trials, "
                        f"{rule.trials} in all, {rule.startup} at a time")
        self.supervisor.fill_search(sweep)
        made = [r for r in self.store.sweep_runs(sweep) if r["search"]]
        return {"sweep": sweep, "search": rule.wire(), "made": len(made),
                "started": [self.summary(r) for r in made[len(searched):]]}

    def _after(self, ref: Any) -> str:
        """The run ``--after`` names; refused if it can never finish now."""
        run = self.resolve(ref)
        if run["state"] in (RunState.FAILED, RunState.KILLED):
            raise RequestError(
                "invalid_state", f"run {run['id']} is {run['state']}: nothing can follow it"
            )
        return str(run["id"])

    def queues(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every queue: its limit, how many of its runs run and wait (``waiting_count``),
        and who waits, in order (with ``waiting``: the first that many of each queue,
        for a client that shows only the head of a line of hundreds)."""
        shown = param(params, "waiting", int, None)
        if shown is not None and shown < 0:
            raise RequestError("bad_request", "waiting must be 0 or more")
        stored = self.db.queues()
        running = Counter(str(r["queue"]) for r in holding_slots(self.db))
        waiting = self.db.waiting_runs()
        names = sorted({DEFAULT_QUEUE, *stored, *running, *(str(r["queue"]) for r in waiting)})
        reasons = self.supervisor.scheduler.waiting
        listed = []
        for name in names:
            queue = stored.get(name) or {}
            line = [r for r in waiting if r["queue"] == name]
            listed.append({
                "name": name,
                "parallel": queue_limit(queue),
                "paused": bool(queue.get("paused")),
                "reason": queue.get("reason"),
                "pause_on_failure": bool(queue.get("pause_on_failure")),
                "running": running[name],
                "waiting": [
                    {"id": r["id"], "name": r["name"], "priority": r["priority"],
                     "gpus": gpu_ask(r), "why": reasons.get(r["id"])}
                    for r in line[:shown]
                ],
                "waiting_count": len(line),
            })
        return listed

    def queue_set(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create a queue or change it: ``parallel`` (0 or null: no limit), ``paused``,
        ``pause_on_failure``."""
        name = param(params, "name", str)
        problem = queue_problem(name)
        if problem:
            raise RequestError("bad_request", problem)
        fields: dict[str, Any] = {}
        if "parallel" in params:
            parallel = params["parallel"]
            if parallel is not None and (
                not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 0
            ):
                raise RequestError("bad_request", "parallel must be a number of runs, 0 or more")
            fields["parallel"] = parallel or 0  # 0: no limit; never set: the default's
        for flag in ("paused", "pause_on_failure"):
            value = param(params, flag, bool, None)
            if value is not None:
                fields[flag] = int(value)
        if fields.get("paused") == 0:
            fields["reason"] = None
        elif fields.get("paused"):
            fields["reason"] = "paused by user"
        self.store.set_queue(name, **fields)
        # A copy beside the store: a store rebuilt from the run directories gets it back.
        write_json_atomic(self.supervisor.paths.queues, self.store.queues())
        self.supervisor.scheduler.run_pass()
        return next(q for q in self.queues({}) if q["name"] == name)

    def move(self, params: dict[str, Any]) -> dict[str, Any]:
        """Move a queued run up, down, to the top or bottom of its queue (within its priority)."""
        run = self.resolve(params.get("run"))
        where = param(params, "to", str)
        if where not in MOVES:
            raise RequestError("bad_request", f"to must be one of {', '.join(MOVES)}")
        if run["state"] != RunState.QUEUED:
            raise RequestError("invalid_state", f"run {run['id']} is {run['state']}, not queued")
        line = [
            r for r in self.store.waiting_runs()
            if r["queue"] == run["queue"] and r["priority"] == run["priority"]
        ]
        index = next(i for i, r in enumerate(line) if r["id"] == run["id"])
        moved = line.pop(index)
        target = {"up": index - 1, "down": index + 1, "top": 0, "bottom": len(line)}[where]
        line.insert(max(0, min(len(line), target)), moved)
        positions = sorted(float(r["queue_pos"] or 0) for r in line)
        if len(set(positions)) < len(positions):  # old rows without a position: renumber
            first = self.store.last_queue_pos() + 1
            positions = [first + i for i in range(len(line))]
        with self.store.transaction():
            for pos, queued in zip(positions, line, strict=True):
                self.store.update_run(queued["id"], queue_pos=pos)
        for queued in line:
            self.supervisor.announce(queued["id"])
        self.supervisor.scheduler.run_pass()
        return self.summary(self.store.get_run(run["id"]) or run)
