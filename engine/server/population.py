"""Population based training: the daemon's part (``engine.common.pbt`` has the rule).

Mixed into ``Supervisor``. A PBT sweep's runs record their value at each round as an
early-stopped sweep's do at a rung (``run_reports``). A round is judged once no run of
the sweep that is still training has yet to reach it (a paused run is not waited for):
each of the worst runs still running is replaced by a fork of one of the best still
running, its axes perturbed, and is stopped. A round is judged once, even across a
restart of the daemon (``pbt_rounds``), and a round cut short by the daemon's death is
finished by the next one.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import Any

from engine.common.pbt import PbtRule, perturbed, ranked
from engine.common.runs import DEFAULT_KILL_GRACE, RunState, unique_name
from engine.server.live_run import LiveRun
from engine.server.store import Store

log = logging.getLogger("traintop.supervisor")

# A request handler the daemon's request side lends: ``fork``, as a user's fork is made.
ForkRun = Callable[[dict[str, Any]], dict[str, Any]]


class Population:
    """Judges the rounds of PBT sweeps (part of ``Supervisor``)."""

    store: Store
    live: dict[str, LiveRun]
    fork_run: ForkRun | None

    def kill(self, run: dict[str, Any], grace: float) -> None:
        """Kill the run's process (the supervisor's)."""
        raise NotImplementedError

    def announce(self, run_id: str) -> None:
        """Publish a run as it now is (the supervisor's)."""
        raise NotImplementedError

    def judge_rounds(self, sweep: str, rule: PbtRule) -> None:
        """Judge each round of ``sweep`` that every run still training has reached, in order."""
        for step in self.store.open_rounds(sweep):
            if any(self._on_its_way(run, step) for run in self.store.round_missing(sweep, step)):
                return  # a later round waits for this one
            # Closed once its replacements are made: a daemon that dies between the two
            # judges it again, and a loser replaced already has been stopped (it is no
            # longer training), so only the ones it had not come to are replaced.
            self._replace_worst(sweep, rule, step, self.store.rung_values(sweep, step))
            self.store.close_round(sweep, step)

    def _replace_worst(self, sweep: str, rule: PbtRule, step: int,
                       values: dict[str, float]) -> None:
        worst, best = ranked(values, rule.quantile, rule.mode)
        members = {r: self.store.get_run(r) for r in (*worst, *best)}
        donors = [r for r in best if self._training(members[r])]
        metric = rule.metric or "loss"
        worse = "highest" if rule.mode == "min" else "lowest"
        among = f"the {worse}" if len(worst) == 1 else f"among the {worse} {len(worst)}"
        for loser_id in worst:
            loser = members.get(loser_id)
            if not self._training(loser):
                continue  # ended, or paused by someone: theirs to decide
            assert loser is not None
            ranking = f"{metric} {values[loser_id]:.4g} is {among} of the {len(values)} runs there"
            if not donors:
                self.store.note(loser_id, f"PBT round at step {step}: {ranking}, but none of "
                                "the best is still running to copy: it goes on")
                continue
            rng = random.Random(f"{sweep}:{step}:{loser_id}")
            donor = members[rng.choice(donors)]
            assert donor is not None
            try:
                child = self._replacement(loser, donor, rule, rng, f"PBT round at step {step}")
            except Exception as exc:  # refused (disk full, a config the workload rejects)
                self.store.note(loser_id, f"PBT round at step {step}: {ranking}, but a fork of "
                                f"{donor['id']} was refused ({exc}): it goes on")
                continue
            self._stop(loser, f"replaced at step {step}: {ranking}; {child} (a fork of "
                       f"{donor['id']}) takes its place")
            self.announce(child)

    def replace_diverged(self, run: dict[str, Any], rule: PbtRule, diverged: str) -> str:
        """Why a run of a PBT sweep whose loss ``diverged`` stops: replaced at once by a
        fork of one of the best quantile of the runs still running, ranked at the sweep's
        last round, as a round would replace it; with no round yet, or none of that
        round's runs running, only stopped."""
        why = f"diverged: {diverged}"
        last = self.store.last_round(run["sweep"])
        if last is None:
            return f"{why} (no PBT round yet to pick a run to copy)"
        # The best of those still running (a round's best may have ended, or be a fork
        # still starting): ranked by their values at that round.
        at_round = self.store.rung_values(run["sweep"], last)
        members = {r: self.store.get_run(r) for r in at_round}
        values = {r: v for r, v in at_round.items()
                  if r != run["id"] and self._training(members[r])}
        if not values:
            return f"{why} (none of the runs of the round at step {last} is still running " \
                   "to copy)"
        order = sorted(values, key=lambda r: (values[r] if rule.mode == "min" else -values[r], r))
        donors = order[:max(1, math.ceil(len(order) * rule.quantile))]
        rng = random.Random(f"{run['sweep']}:diverged:{run['id']}")
        donor = members[rng.choice(donors)]
        assert donor is not None
        try:
            child = self._replacement(run, donor, rule, rng, "PBT, on divergence")
        except Exception as exc:  # refused: stopped all the same
            return f"{why} (a fork of {donor['id']} in its place was refused: {exc})"
        self.announce(child)
        return (f"replaced at step {run['step']}: {diverged}; {child} (a fork of "
                f"{donor['id']}) takes its place")

    def _replacement(self, loser: dict[str, Any], donor: dict[str, Any], rule: PbtRule,
                     rng: random.Random, when: str) -> str:
        """A fork of ``donor``, its axes perturbed, made to take ``loser``'s place in the
        sweep (its id; raises what refused it), with a note that says so."""
        overrides, changes = perturbed(rule, donor["config"], rng)
        child = self._fork(donor, overrides, loser["sweep"], rule)
        self.store.note(child, f"{when}: forked from {donor['id']} in place of "
                        f"{loser['id']}; {', '.join(changes)}")
        return child

    def _stop(self, run: dict[str, Any], reason: str, stored: bool = False) -> None:
        """Stop a run of a ruled sweep for ``reason``: kept in its row before its kill is
        sent (``stored``: the caller kept it already), and in its directory as the kill
        is (``kill``), so a daemon that dies in between sends it at its next start
        (``adopt_all``)."""
        log.info("run %s: %s", run["id"], reason)
        if not stored:
            self.store.update_run(run["id"], stopped_early=reason)
        live = self.live.get(run["id"])
        if live is not None:
            live.stop_reason = reason
        self.kill(run, DEFAULT_KILL_GRACE)
        self.announce(run["id"])

    def _training(self, run: dict[str, Any] | None) -> bool:
        """Whether a run of the round still trains: running, not being stopped (by a user,
        or by a round: ``stopped_early`` is stored before its kill), steps left."""
        if run is None or run["state"] != RunState.RUNNING or run["stopped_early"]:
            return False
        live = self.live.get(run["id"])
        total = run["total_steps"]
        return (live is None or not live.killing) and (total is None or run["step"] < total)

    def _on_its_way(self, run: dict[str, Any], step: int) -> bool:
        """Whether a run that trains without a value at round ``step`` may still bring one:
        it has more steps than that, and has not passed it (the store's step may be past it
        while the value waits for the next tick; its rung watch knows)."""
        total = run["total_steps"]
        if total is not None and total <= step:
            return False
        live = self.live.get(run["id"])
        if live is None or live.rungs is None:
            return int(run["step"] or 0) < step
        ahead = live.rungs.next
        return (ahead is not None and ahead <= step) or any(r == step for r, _ in live.passed)

    def _fork(self, donor: dict[str, Any], overrides: list[str], sweep: str,
              rule: PbtRule) -> str:
        """The id of a fork of ``donor`` that joins the sweep (raises what refused it)."""
        if self.fork_run is None:
            raise RuntimeError("the engine has no fork to make it with")
        # Its own share of a GPU (a fork of a GPU run would otherwise ride beside its
        # parent): it takes the place of the run it replaces, on whichever GPU frees.
        child = self.fork_run({"run": donor["id"], "overrides": overrides, "sweep": sweep,
                               "tags": donor["tags"],
                               "name": unique_name(f"{sweep}-pbt", self.store.name_taken,
                                                   bare=False),
                               "gpus": donor["gpus"]})
        self.store.update_run(child["id"], early_stop=rule.wire())
        return str(child["id"])
