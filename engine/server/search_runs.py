"""A searched sweep's next trials: the daemon's part (``engine.common.search`` has the
rule and the maths).

Mixed into ``Supervisor``. A searched sweep keeps as many trials in flight (queued,
starting, running or paused) as it started with, less those a user killed: a kill ends
that trial and the search goes on with one fewer at a time (kill them all to stop it).
When a run of it ends, after the queue has given the freed slot to whatever of it waits
(``fill_search``), its next trials are made, as a ``start`` of the same workload,
directory, environment, queue and options, while

- it has trials left (every run of it with the rule counts, whatever became of it);
- none of its trials waits in its queue, and the queue has a free slot: each trial is
  chosen as late as it can be, from the most that have ended, and a queue with fewer
  slots than the search started with sets how many run at once;
- the last ``FAILURES_IN_A_ROW`` trials did not all fail with none ever finished (the
  script is likely broken: said on the last of them).

A search left short of trials that way (its queue full of other runs) is remembered, and
topped up as soon as its queue has room, whoever's run freed it (``feed_searches``, at
the scheduler's pass): else a search whose slots a later-queued sweep took stalled for
good once its own runs had ended, with nothing of it left to end.

The count is read from the store, so a daemon that died after a run ended and before
it made the next trial makes it at its next start (``resume_searches``).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import Any

from engine.common.checkpoint_every import CheckpointEvery
from engine.common.config import parse_literal
from engine.common.early_stop import logged_text, window
from engine.common.output_lines import training_loss_key
from engine.common.runs import RunState
from engine.common.search import FAILURES_IN_A_ROW, SearchRule, Trial, propose, search_of
from engine.common.sweep import run_names, short_text
from engine.server.scheduler import Scheduler
from engine.server.store import Store

log = logging.getLogger("traintop.supervisor")

# A request handler the daemon's request side lends: ``start``, as a user's start is made
# (its second argument: why the run is made, its first event's reason).
StartRun = Callable[[dict[str, Any], str], dict[str, Any]]
# The most points of a run's metric its value is averaged over (its last twentieth).
VALUE_POINTS = 5000
_IN_FLIGHT = (RunState.QUEUED, RunState.STARTING, RunState.RUNNING, RunState.PAUSED)


class Searches:
    """Makes the next trials of searched sweeps (part of ``Supervisor``)."""

    store: Store
    scheduler: Scheduler
    start_run: StartRun | None
    # What each ended trial scored, by run id, read from the store once: a search of 500
    # trials would otherwise read ~1,500 queries' worth at every trial it makes. (A failed
    # run is read again each time: a retry may bring it back.)
    trial_values: dict[str, Trial | None]
    # Searches with trials due that their queue had no room for: sweep -> its queue.
    short_of_room: dict[str, str]

    def env_of(self, run_id: str | None) -> dict[str, str] | None:
        """The environment a run was last launched with (the supervisor's)."""
        raise NotImplementedError

    def next_trial(self, ended: dict[str, Any]) -> None:
        """A run just ended: make the trials of its searched sweep that are due now."""
        if ended["sweep"] and ended["search"]:
            rule = search_of(ended)
            if rule is not None and rule.metric:
                self._scored(ended, rule)  # says so if it never logged the metric
            self.fill_search(str(ended["sweep"]))

    def resume_searches(self) -> None:
        """At the daemon's start: make the trials a daemon that died at the wrong time
        (after a run ended, before its next trial) did not make."""
        for sweep in self.store.searched_sweeps():
            self.fill_search(sweep)

    def feed_searches(self) -> None:
        """Make the trials of the searches left short for want of room, whose queue has
        room now (a slot another sweep's run freed, a limit raised, a queue let go)."""
        for sweep, queue in list(self.short_of_room.items()):
            if self.scheduler.has_room(queue):
                self.fill_search(sweep)

    def fill_search(self, sweep: str) -> None:
        """Make the trials of a searched sweep that are due: while it has fewer in flight
        than it started with (less those a user killed), has trials left, none of them
        waits in its queue, and the queue has a free slot."""
        self.short_of_room.pop(sweep, None)
        runs = [r for r in self.store.sweep_runs(sweep) if r["search"]]
        rule = search_of(runs[-1]) if runs else None
        if rule is None or len(runs) >= rule.trials:
            return  # (a search long done costs an engine start one read)
        self.scheduler.run_pass()  # a trial of it that waits takes a freed slot first
        if any(r["state"] == RunState.QUEUED for r in runs):  # the pass may have started it
            runs = [r for r in self.store.sweep_runs(sweep) if r["search"]]
        killed = sum(1 for r in runs if r["state"] == RunState.KILLED
                     and not r["stopped_early"] and (r["ended"] or 0) > rule.since)
        flying = sum(1 for r in runs if r["state"] in _IN_FLIGHT)
        due = min(rule.startup, rule.trials) - killed - flying
        queue = str(runs[-1]["queue"])
        # Oldest end first; the trials made below have not ended, so this holds for all.
        ended = sorted((r for r in runs if r["ended"]), key=lambda r: r["ended"])
        while due > 0 and len(runs) < rule.trials:
            if any(r["state"] == RunState.QUEUED for r in runs) or self._crashing(
                    sweep, ended, rule.since):
                return
            if not self.scheduler.has_room(queue):
                self.short_of_room[sweep] = queue
                return
            made = self._make_trial(sweep, runs, ended, rule)
            if made is None:
                return
            runs.append(made)
            due -= 1

    def _crashing(self, sweep: str, ended: list[dict[str, Any]], since: float) -> bool:
        """Whether the last trials (of ``ended``, oldest first: those ended after
        ``since``) all failed, and none has ever finished (said once, on the last)."""
        recent = [r for r in ended if r["ended"] > since][-FAILURES_IN_A_ROW:]
        if len(recent) < FAILURES_IN_A_ROW or any(r["state"] != RunState.FAILED for r in recent) \
                or any(r["state"] == RunState.FINISHED for r in ended):
            return False
        said = (f"search of sweep {sweep}: the last {FAILURES_IN_A_ROW} trials failed and none "
                "has finished: no more are made (fix the script, then 'traintop sweep --more "
                f"{sweep} --trials N')")
        self._note_once(recent[-1]["id"], said)
        return True

    def _note_once(self, run_id: str, said: str) -> None:
        """Note ``said`` on the run unless it is there already (a restarted daemon, or
        one more pass over the same trials, says it again)."""
        if not any(e["reason"] == said for e in self.store.events(run_id)):
            log.warning("run %s: %s", run_id, said)
            self.store.note(run_id, said)

    def _make_trial(self, sweep: str, runs: list[dict[str, Any]], ended: list[dict[str, Any]],
                    rule: SearchRule) -> dict[str, Any] | None:
        """Start the sweep's next trial, chosen from the trials that have ended (``ended``,
        oldest first); its row (None: refused, and said on the last trial made)."""
        trials = [t for t in (self._scored(r, rule) for r in ended) if t is not None]
        rng = random.Random(f"{sweep}:{len(runs)}:{rule.seed}")
        pending = [r["config"] for r in runs if r["state"] in _IN_FLIGHT]
        try:  # (a run's end must not fail with it: it is said, on the last trial made)
            values, how = propose(rule, trials, rng, pending)
            said = ", ".join(f"{k}={short_text(parse_literal(v))}" for k, v in values.items())
            why = f"trial {len(runs) + 1} of {rule.trials} of sweep {sweep}: {said}, {how}"
            child = self._start_trial(runs[-1], rule, values, sweep, why)
        except Exception as exc:  # refused (disk full, a config the workload rejects)
            log.warning("sweep %s: its next trial was not made", sweep, exc_info=True)
            self.store.note(runs[-1]["id"], f"search of sweep {sweep}: its next trial was "
                            f"not made ({exc})")
            return None
        log.info("run %s: %s", child, why)
        return self.store.get_run(child)

    def _start_trial(self, like: dict[str, Any], rule: SearchRule, values: dict[str, str],
                     sweep: str, why: str) -> str:
        """Start a trial as ``like``, a trial before it, was started (raises what
        refused it)."""
        if self.start_run is None:
            raise RuntimeError("the engine has no start to make it with")
        overrides = rule.overrides(values)
        factor = like["divergence_factor"]
        every = CheckpointEvery.from_wire(like["checkpoint_every"])
        params: dict[str, Any] = {
            "workload": like["workload"], "cwd": like["cwd"],
            "overrides": overrides,
            "name": run_names(sweep, [overrides], self.store.name_taken, list(rule.axes))[0],
            "device": rule.device, "queue": like["queue"], "priority": like["priority"],
            "gpus": like["gpus"], "sweep": sweep, "tags": like["tags"],
            "early_stop": like["early_stop"], "search": rule.wire(),
            "retries": like["retries"],
            **({"divergence_factor": factor} if factor else {"divergence_pause": False}),
            **({"checkpoint_every": every.text()} if every else {}),
        }
        env = self.env_of(like["id"])
        if env is not None:
            params["env"] = env
        return str(self.start_run(params, why)["id"])

    def _scored(self, run: dict[str, Any], rule: SearchRule) -> Trial | None:
        """``_trial``, kept for a run that can no longer change (finished or killed)."""
        if run["id"] in self.trial_values:
            return self.trial_values[run["id"]]
        trial = self._trial(run, rule)
        if run["state"] in (RunState.FINISHED, RunState.KILLED):
            self.trial_values[run["id"]] = trial
            if trial is None and rule.metric:
                self._say_unscored(run, rule.metric)
        return trial

    def _say_unscored(self, run: dict[str, Any], metric: str) -> None:
        """Say (once, on the trial) that it logged other metrics but not the one the
        search learns from: a misspelt --stop-metric would leave the search at random."""
        logged = sorted(self.store.last_values(run["id"]))
        if not logged or metric in logged:
            return
        said = (f"search of sweep {run['sweep']} learns from {metric!r}, which this trial "
                f"never logged ({logged_text(logged)}): it cannot learn from it (is "
                "--stop-metric misspelt?)")
        self._note_once(run["id"], said)

    def _trial(self, run: dict[str, Any], rule: SearchRule) -> Trial | None:
        """What an ended run scored: the mean of its metric over its last twentieth of
        steps (a diverged one: the worst there is); None for a failed run, or one
        without a value."""
        if run["state"] == RunState.FAILED:
            return None
        if run["diverged"]:  # ranked last: below any that stopped for a rule or a user
            return Trial(run["config"], math.inf if rule.mode == "min" else -math.inf,
                         False, 0)
        key = rule.metric or training_loss_key(self.store.last_values(run["id"]))
        if key is None:
            return None
        last = self.store.last_metrics(run["id"], key, 1)
        if not last:
            return None
        step = last[0][0]
        span = window(step)
        near = [v for s, _, v, _ in self.store.last_metrics(run["id"], key,
                                                            min(span, VALUE_POINTS))
                if s > step - span and math.isfinite(v)]
        if not near:
            return None
        complete = run["state"] == RunState.FINISHED
        return Trial(run["config"], sum(near) / len(near), complete, step)
