"""A searched sweep's next trials: the daemon's part (``engine.common.search`` has the
rule and the maths).

Mixed into ``Supervisor``. When a run of a searched sweep ends, the sweep's next trial
is made, as a ``start`` of the same workload, directory, environment, queue and options,
unless:

- the sweep has all its trials (every run of it with the rule counts, whatever became
  of it);
- one of its trials waits in its queue already: that one takes the slot this end frees,
  so the sweep never holds more runs than its queue lets run (and each trial is chosen
  as late as it can be, from the most that have ended);
- the run was killed by a user (not by a rule): a kill ends that trial, and the search
  goes on with one fewer at a time; kill them all to stop it;
- ``FAILURES_IN_A_ROW`` trials failed one after another and none ever had a value: the
  script is likely broken, said on the run.

A daemon that died between a run's end and its next trial makes it at its next start,
for a sweep left with nothing queued or running (``resume_searches``).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import Any

from engine.common.checkpoint_every import CheckpointEvery
from engine.common.config import parse_literal
from engine.common.early_stop import window
from engine.common.output_lines import training_loss_key
from engine.common.runs import RunState
from engine.common.search import FAILURES_IN_A_ROW, SearchRule, Trial, propose, search_of
from engine.common.sweep import run_names, short_text
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
    start_run: StartRun | None

    def env_of(self, run_id: str | None) -> dict[str, str] | None:
        """The environment a run was last launched with (the supervisor's)."""
        raise NotImplementedError

    def next_trial(self, ended: dict[str, Any], state: RunState) -> None:
        """Make the next trial of the searched sweep ``ended`` (a run that just ended in
        ``state``) belongs to, if it is due."""
        rule = search_of(ended) if ended["sweep"] else None
        if rule is None or (state is RunState.KILLED and not ended["stopped_early"]):
            return
        self._make_trial(ended, rule)

    def resume_searches(self) -> None:
        """At the daemon's start: a searched sweep with trials left and none queued or
        running lost its next trial to a daemon that died at the wrong time; make it."""
        for sweep in self.store.searched_sweeps():
            runs = self.store.sweep_runs(sweep)
            if any(r["state"] in _IN_FLIGHT for r in runs):
                continue
            searched = [r for r in runs if r["search"]]
            last = max(searched, key=lambda r: r["ended"] or 0.0, default=None)
            if last is not None and not (last["state"] == RunState.KILLED
                                         and not last["stopped_early"]):
                rule = search_of(last)
                assert rule is not None
                self._make_trial(last, rule)

    def _make_trial(self, ended: dict[str, Any], rule: SearchRule) -> None:
        sweep = str(ended["sweep"])
        runs = [r for r in self.store.sweep_runs(sweep) if r["search"]]
        if len(runs) >= rule.trials or any(r["state"] == RunState.QUEUED for r in runs):
            return
        finished = sorted((r for r in runs if r["ended"]), key=lambda r: r["ended"])
        recent = finished[-FAILURES_IN_A_ROW:]
        if len(recent) == FAILURES_IN_A_ROW and all(
                r["state"] == RunState.FAILED for r in recent) and not any(
                r["state"] == RunState.FINISHED for r in finished):
            self.store.note(ended["id"], f"search of sweep {sweep}: the last "
                            f"{FAILURES_IN_A_ROW} trials failed and none has finished: no "
                            "more are made (fix the script, then start the sweep again)")
            return
        trials = [t for t in (self._trial(r, rule) for r in finished) if t is not None]
        rng = random.Random(f"{sweep}:{len(runs)}:{rule.seed}")
        values, how = propose(rule, trials, rng)
        said = ", ".join(f"{k}={short_text(parse_literal(v))}" for k, v in values.items())
        why = f"trial {len(runs) + 1} of {rule.trials} of sweep {sweep}: {said}, {how}"
        try:
            child = self._start_trial(ended, rule, values, sweep, why)
        except Exception as exc:  # refused (disk full, a config the workload rejects)
            self.store.note(ended["id"], f"search of sweep {sweep}: its next trial was "
                            f"refused ({exc})")
            return
        log.info("run %s: %s", child, why)

    def _start_trial(self, ended: dict[str, Any], rule: SearchRule, values: dict[str, str],
                     sweep: str, why: str) -> str:
        """Start a trial as the sweep's runs were started (raises what refused it)."""
        if self.start_run is None:
            raise RuntimeError("the engine has no start to make it with")
        overrides = rule.overrides(values)
        factor = ended["divergence_factor"]
        every = CheckpointEvery.from_wire(ended["checkpoint_every"])
        params: dict[str, Any] = {
            "workload": ended["workload"], "cwd": ended["cwd"],
            "overrides": overrides,
            "name": run_names(sweep, [overrides], self.store.name_taken, list(rule.axes))[0],
            "device": rule.device, "queue": ended["queue"], "priority": ended["priority"],
            "gpus": ended["gpus"], "sweep": sweep, "tags": ended["tags"],
            "early_stop": ended["early_stop"], "search": rule.wire(),
            "retries": ended["retries"],
            **({"divergence_factor": factor} if factor else {"divergence_pause": False}),
            **({"checkpoint_every": every.text()} if every else {}),
        }
        env = self.env_of(ended["id"])
        if env is not None:
            params["env"] = env
        return str(self.start_run(params, why)["id"])

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
