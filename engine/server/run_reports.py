"""What the supervisor does with what a run reports: its spool, and how it ends.

Mixed into ``Supervisor``: the spool's points go to the store with the offset
they end at, in one transaction; its state and checkpoint records change the
run's state or start a fork; exit.json (read by the supervisor) ends the run.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from engine.common.early_stop import logged_text, stop_reason
from engine.common.pbt import PbtRule
from engine.common.protocol import EVENT_POINTS
from engine.common.runs import ActionError, RunState
from engine.rundir.annotations import save_annotations
from engine.rundir.line_tail import read_lines
from engine.rundir.paths import StatePaths, remove_stray_temporaries
from engine.rundir.spool_records import (
    CheckpointRecord,
    ErrorRecord,
    HeldRecord,
    SpoolBatch,
    SpoolRecord,
    StateRecord,
    decode_record,
    rewinds_at,
    steps_after,
)
from engine.server.backends import kind_fields
from engine.server.divergence import divergence_condition, pause_reason, watch_for
from engine.server.launch_file import write_queued
from engine.server.live_run import KILL_REASON, LiveRun, Publish
from engine.server.population import Population
from engine.server.retries import fork_point, retry_point, retry_reason
from engine.server.rungs import RungWatch, rule_of
from engine.server.scheduler import Scheduler
from engine.server.search_runs import Searches
from engine.server.store import Store
from engine.server.store_metrics import MetricBatch

log = logging.getLogger("traintop.supervisor")

STDERR_TAIL_LINES = 20
# The most of one run's spool read at once (~8k points, ~50 ms to store).
SPOOL_READ_BYTES = 512 * 1024
# A checkpoint asked for several forks at once names them all, joined by this (a run id
# never holds one), so one file serves every child of the same step.
CHILDREN_SEP = ","


class RunReports(Population, Searches):
    """Reads runs' spools into the store and ends runs (part of ``Supervisor``)."""

    paths: StatePaths
    store: Store
    publish: Publish
    live: dict[str, LiveRun]
    scheduler: Scheduler
    unstored: list[tuple[LiveRun, SpoolBatch, int]]  # batches read, held for ``store_read``

    def launch(
        self, run: dict[str, Any], resume_from: str | None, reason: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Start a new generation of ``run`` (the supervisor's)."""
        raise NotImplementedError

    def send_control(self, run: dict[str, Any], cmd: str, request: str | None = None) -> None:
        """Append a command to the run's control file (the supervisor's)."""
        raise NotImplementedError

    def stop_process(self, run: dict[str, Any], pause: bool) -> None:
        """Stop or continue the run's process by signal (the supervisor's)."""
        raise NotImplementedError

    def enqueue(self, run: dict[str, Any], launch_from: str | None, reason: str,
                schedule: bool = True) -> None:
        """Put a run in its queue (the supervisor's); ``schedule``: start what may start."""
        raise NotImplementedError

    def condition(self, run: dict[str, Any]) -> str | None:
        """What needs the user that a run's state does not say (disk full, divergence,
        why a queued run waits, that its sweep stopped it early)."""
        if run["state"] == RunState.QUEUED:
            return self.scheduler.waiting.get(run["id"])
        if run["stopped_early"]:  # the first part: 'stopped early at step 300', 'diverged'
            return str(run["stopped_early"]).partition(":")[0]
        live = self.live.get(run["id"])
        if live is not None and live.held_back:
            return live.held_back
        return divergence_condition(run)

    # -- the spool ----------------------------------------------------------

    def _read_spool(self, live: LiveRun) -> bool:
        """Read what the run's spool holds past the stored offset, up to a bound.

        Its points are held to be stored with every other run's at the end of
        the tick (``store_read``), in one transaction: one commit a tick, not
        one a run, which at 500 live runs wrote 7 MB/s to the disk. A record
        that acts (ends a run, starts a fork) has the points before it stored first.

        True when the spool is read to its end (False: a backlog remains for the
        next tick; bounded so that one run's backlog never stalls the daemon).
        ``live.spool_offset`` moves only with a commit: when the store cannot be
        written, the error goes up and the next tick reads the rest again.
        """
        if live.unstored:
            self.store_read()  # what this tick read of it first: no line is read twice
        drained = True
        try:
            grown = os.stat(live.spool_file).st_size > live.spool_offset
        except OSError:
            grown = False  # not written yet
        if grown:  # (a stat is all a quiet run costs at a tick)
            read = read_lines(live.spool_file, live.spool_offset, SPOOL_READ_BYTES)
            batch, offset = SpoolBatch(step=live.step), live.spool_offset
            for line in read.lines:
                record = decode_record(line)
                if not batch.fold(record):
                    # The points before a record are stored before it acts (ends a run,
                    # starts a fork), so they are never left behind it.
                    self._hold_batch(live, batch, offset)
                    self.store_read()
                    self._on_record(live, record, offset + len(line))
                    batch = SpoolBatch(step=live.step)
                offset += len(line)
            self._hold_batch(live, batch, offset)
            drained = read.drained
        if live.diverged is not None:
            self._pause_diverged(live, live.diverged)
        if live.passed:
            self._judge_rungs(live)
        if live.rungs is not None and (missing := live.rungs.take_missing()) is not None:
            self._say_missing_metric(live.run_id, str(live.rungs.rule.metric), *missing)
        return drained

    def _hold_batch(self, live: LiveRun, batch: SpoolBatch, end: int) -> None:
        """Hold ``batch``, read up to spool offset ``end``, for ``store_read``."""
        if end != live.spool_offset:
            self.unstored.append((live, batch, end))
            live.unstored = True

    def store_read(self) -> None:
        """Store the batches held since the last call, in one transaction, and publish them.

        The store calls it before any other write too (``Store.before_write``), so
        nothing written later comes before them. Raises when the store cannot be
        written; what was held is then read again from the spools at the next tick.
        """
        held, self.unstored = self.unstored, []
        if not held:
            return
        try:
            errors = self.store.add_metric_batches([
                MetricBatch(live.run_id, batch.points, end, batch.step, batch.skipped)
                for live, batch, end in held
            ])
        finally:
            for live, _, _ in held:
                live.unstored = False
        now = time.monotonic()
        for (live, batch, end), error in zip(held, errors, strict=True):
            if error is None:
                # Past here they are stored: one run's failure must not keep the runs
                # after it from moving past theirs, or they would be read twice.
                live.spool_offset, live.step = end, batch.step
                live.stored_to(batch.step, now)
                try:
                    self._stored(live, batch)
                except Exception as exc:
                    error = exc
            if error is not None and live.failing != repr(error):  # once, not every tick
                live.failing = repr(error)
                log.error("run %s: its points could not be stored or published: %r",
                          live.run_id, error)

    def _stored(self, live: LiveRun, batch: SpoolBatch) -> None:
        """``batch`` is stored (the run has moved past it): watch it, and publish it."""
        if batch.problem is not None and not live.warned_skips:
            live.warned_skips = True  # later ones are only counted (see `traintop show`)
            log.warning(
                "run %s: skipped %d malformed spool records and %d bad points (%s)",
                live.run_id, batch.bad_records, batch.bad_points, batch.problem,
            )
        points = batch.points
        if live.divergence is None:
            live.divergence = watch_for(self.store.get_run(live.run_id) or {})
        live.diverged = live.diverged or live.divergence.check(points)
        for start in range(0, len(points), EVENT_POINTS):
            self.publish(
                "metrics", {"run": live.run_id, "points": points[start : start + EVENT_POINTS]}
            )
        if not live.rungs_ready:
            live.rungs, live.rungs_ready = self._rung_watch(live.run_id), True
        if live.rungs is not None:
            live.passed += live.rungs.check(points)
        live.failing = None

    def _on_record(self, live: LiveRun, record: SpoolRecord, end: int) -> None:
        """Act on a record that ends at spool offset ``end`` (points are the batch's).

        A state change stores ``end`` with itself, so it happens once even across
        restarts; the others are safe to see twice (the next batch stores past them).
        """
        rewind = rewinds_at(record)
        if rewind is not None:
            self._rewind(live.run_id, rewind)
        if isinstance(record, ErrorRecord):
            live.error = record.message
        elif isinstance(record, HeldRecord):
            self.store.note(
                live.run_id,
                f"spool: {record.held} points held while {record.refused}, "
                f"{record.dropped} dropped",
            )
        elif isinstance(record, CheckpointRecord):
            children = (record.request or "").split(CHILDREN_SEP)
            self.on_checkpoint(live.run_id, children, record.path, record.step)
        elif isinstance(record, StateRecord):
            self._on_state(live, record, end)

    def _on_state(self, live: LiveRun, record: StateRecord, end: int) -> None:
        state, step, run_id = record.state, record.step, live.run_id
        if state == "running":
            self.store.set_state(
                run_id, RunState.RUNNING, "worker is training", step=step,
                total_steps=record.total, spool_offset=end,
            )
        elif state == "paused":
            reason = pause_reason(self.store.get_run(run_id) or {}, "paused by user")
            self.store.set_state(run_id, RunState.PAUSED, reason, step=step, spool_offset=end)
        elif state == "resumed":
            self.store.set_state(
                run_id, RunState.RUNNING, "resumed by user", step=step, spool_offset=end
            )
        else:  # released or finished: the run ends once its exit status is in
            live.ending = {"state": state, "checkpoint": record.checkpoint}
            self.store.update_run(
                run_id, step=step, checkpoint=record.checkpoint, spool_offset=end
            )
        live.spool_offset = end
        live.step = steps_after(live.step, record)
        self.announce(run_id)

    def _rewind(self, run_id: str, step: int) -> None:
        """A generation starts training at ``step`` (its 'running' record, or a retried
        command's first points): a run taken up again from a checkpoint logs what came
        after it again, so the points the last one logged there and after go
        (TensorBoard drops them too). Before the state that says it started: a daemon
        that dies between the two does it again, to no effect."""
        dropped = self.store.rewind_metrics(run_id, step)
        if dropped:
            points = "1 point" if dropped == 1 else f"{dropped:,} points"
            self.store.note(run_id, f"{points} from step {step} on dropped: it goes on from "
                            "there, and logs those steps again")
            log.info("run %s: %d points from step %d on dropped", run_id, dropped, step)
            # A watcher's lowest, highest and latest values may have come from them: it
            # takes these instead (a run's announcement does not carry them).
            self.publish("runs", {"id": run_id, "rewound": step,
                                  **self.store.value_summary(run_id)})

    # -- divergence ---------------------------------------------------------

    def _pause_diverged(self, live: LiveRun, reason: str) -> None:
        """Pause a run whose loss diverged, as its kind pauses (the reason kept with it);
        one of a sweep judged by a rule (early stopping, PBT) or searched (TPE) is stopped
        instead, as the rule would stop it, and under PBT replaced (``replace_diverged``),
        under a search followed by its next trial: a search left overnight has nobody to
        look at it, and a paused run would never be judged.

        Called once its points are stored, never mid-read: a wrapped command's
        pause reads the spool itself first.
        """
        live.diverged = None  # asked once, whatever comes of it
        self.store.update_run(live.run_id, diverged=reason)
        run = self.store.get_run(live.run_id)
        if run is None or run["state"] != RunState.RUNNING or live.killing:
            return  # already paused, ending, or killed: nothing to stop
        rule = rule_of(run) if run["sweep"] else None
        if isinstance(rule, PbtRule):
            self._stop(run, self.replace_diverged(run, rule, reason))
            return
        if rule is not None or run["search"]:  # a searched sweep: its next trial goes on
            self._stop(run, f"diverged: {reason}")
            return
        log.warning("run %s diverged (%s): pausing it", live.run_id, reason)
        try:
            live.backend.pause(self, run, release=False)
        except ActionError as exc:
            self.store.note(live.run_id, f"{reason}; could not pause: {exc}")
        self.announce(live.run_id)

    def release_diverged(self, run: dict[str, Any], why: str) -> None:
        """Release a run paused for divergence, since ``why`` (queued runs wait for its
        slot or its GPU): asked once; a kind that cannot release keeps what it holds."""
        live = self.live.get(run["id"])
        if live is None or live.giving_room or live.killing or live.ending is not None:
            return
        live.giving_room = True
        if live.backend.refusal("release", live.run_id) is not None:
            return
        log.warning("run %s (%s): releasing its memory, as %s", live.run_id, run["diverged"], why)
        try:
            live.backend.pause(self, run, release=True)
        except ActionError as exc:
            self.store.note(live.run_id, f"could not release it for the queue: {exc}")
            return
        self.store.note(live.run_id, f"{run['diverged']}: releasing its memory, as {why}")
        self.announce(live.run_id)

    # -- early stopping ------------------------------------------------------

    def _rung_watch(self, run_id: str) -> RungWatch | None:
        """The rung watch of a sweep's run stopped early by a rule; None for other runs."""
        run = self.store.get_run(run_id) or {}
        rule = rule_of(run) if run.get("sweep") else None
        if rule is None:
            return None
        return RungWatch(rule, run.get("total_steps"), self.store.rungs_passed(run_id),
                         run.get("fork_step") or 0)

    def _judge_rungs(self, live: LiveRun) -> None:
        """Record the rungs the run passed; stop it if one says so. Like the divergence
        watch, called once its points are stored, never mid-read. A rung the store did
        not take (locked, full) is recorded at a later tick."""
        run = self.store.get_run(live.run_id)
        # A run being stopped (replaced, stopped early, killed) brings no value to a later
        # rung: it trains on only until its signal lands.
        if run is None or live.rungs is None or not run["sweep"] or live.killing:
            live.passed.clear()
            return
        rule = live.rungs.rule
        while live.passed:
            rung, value = live.passed[0]
            if isinstance(rule, PbtRule):  # judged once the round has every value it waits for
                self.store.record_rung(run["sweep"], rung, live.run_id, value)
                del live.passed[0]
                self.judge_rounds(run["sweep"], rule)
                continue
            # One that has trained its last step already saves nothing by a stop: its
            # verdict is kept, and it finishes.
            stopping = (run["state"] in (RunState.RUNNING, RunState.PAUSED)
                        and live.ending is None
                        and live.step < int(run["total_steps"] or live.step + 1))
            # The value and the verdict on it together: a daemon that dies between the two
            # would find the rung passed, never judge it again, and let the run go on.
            with self.store.transaction():
                self.store.record_rung(run["sweep"], rung, live.run_id, value)
                values = list(self.store.rung_values(run["sweep"], rung).values())
                reason = stop_reason(rule, live.rungs.key or "loss", rung, value, values)
                if reason is not None and stopping:
                    self.store.update_run(live.run_id, stopped_early=reason)
            del live.passed[0]
            if reason is None:
                continue
            live.passed.clear()
            if stopping:
                self._stop(run, reason, stored=True)

    def _say_missing_metric(self, run_id: str, metric: str, rung: int,
                            logged: list[str]) -> None:
        """A run past its first rung with no value of the metric its sweep judges by: it
        cannot be judged, which a misspelt --stop-metric would otherwise keep silent."""
        sweep = (self.store.get_run(run_id) or {}).get("sweep")
        said = (f"sweep {sweep} judges its runs by {metric!r}, which this run has not "
                f"logged by step {rung}, its first rung ({logged_text(logged)}): it is not "
                "judged (is --stop-metric misspelt?)")
        self._note_once(run_id, said)  # (a restarted daemon's watch would say it again)

    def rearm_divergence(self, run_id: str) -> None:
        """A run is resumed: forget its divergence; its EMA starts again from what follows."""
        self.store.update_run(run_id, diverged=None)
        live = self.live.get(run_id)
        if live is not None:
            live.divergence, live.diverged = None, None

    def on_checkpoint(
        self, parent_id: str, child_ids: list[str], path: Any, step: int, which: str = ""
    ) -> None:
        """A worker wrote the checkpoint forks asked for: queue each child to start from
        it, then let the queues start what they may (once: a fork into hundreds of
        variants is one pass, not one a child). ``which``: what checkpoint it is, when
        not the one asked for."""
        queued = False
        for child_id in child_ids:
            child = self.store.get_run(child_id)
            if child is None or child["state"] != RunState.QUEUED or child["awaiting"] is None:
                continue  # already given it (a replayed record) or killed meanwhile
            if not path:
                self.store.set_state(
                    child_id,
                    RunState.FAILED,
                    f"parent {parent_id} tracks nothing to checkpoint",
                    ended=time.time(),
                    exit_reason="parent tracks nothing to checkpoint",
                )
                self.announce(child_id)
                continue
            self.store.update_run(child_id, fork_step=step, step=step)
            self.enqueue(child, str(path), f"forked from {parent_id} at step {step}{which}; "
                         "queued", schedule=False)
            queued = True
            try:  # what a rebuilt store queues it from again; the fork goes on without it
                write_queued(self.paths, {**child, "fork_step": step},
                             launch_from=str(path), sync=False)
            except OSError as exc:
                log.warning("fork %s: its launch.json for a rebuild was not written: %s",
                            child_id, exc)
        if queued:
            self.scheduler.run_pass()

    # -- ending -------------------------------------------------------------

    def _finish(self, live: LiveRun, returncode: int) -> None:
        run = self.store.get_run(live.run_id)
        if run is None:
            return
        ending = live.ending or {}
        finished = ending.get("state") == "finished" and returncode == 0
        # (A kill asked while the store was locked went out unrecorded: the live run knows.)
        killed = run["exit_reason"] == KILL_REASON or live.killing
        if killed and finished:
            # It trained its last step before the kill landed, which spared no compute:
            # every point and its last checkpoint are there. It finished.
            if run["stopped_early"]:  # (and not for a rebuild either)
                self.store.update_run(live.run_id, stopped_early=None)
                save_annotations(live.rundir, {**run, "stopped_early": None})
            self.store.note(live.run_id, f"{live.kill_reason} after its last step: it "
                            "had finished")
            self._end(live, RunState.FINISHED, "finished", 0)
        elif killed:
            self._end(live, RunState.KILLED, live.kill_reason, returncode)
        elif ending.get("state") == "released" and returncode == 0:
            self.store.set_state(
                live.run_id,
                RunState.PAUSED,
                pause_reason(run, "paused") + "; memory released",
                released=True,
                pid=None,
                pgid=None,
                pid_start=None,
            )
            self.live.pop(live.run_id, None)  # after the store has it: else the next tick retries
            released = self.store.get_run(live.run_id)
            if live.resume_asked and released is not None and released["checkpoint"]:
                self.enqueue(released, str(released["checkpoint"]),
                             "to resume from its checkpoint (resumed as it was released)")
            self.scheduler.wake()  # its slot is free
            self.announce(live.run_id)
        elif returncode == 0:
            self._end(live, RunState.FINISHED, "finished", 0)
        else:
            if live.error:
                reason = live.error
            elif returncode < 0:
                reason = f"killed by signal {signal.Signals(-returncode).name}"
            else:
                reason = f"exited with code {returncode}"
            self._end(live, RunState.FAILED, reason, returncode)

    def _end(self, live: LiveRun, state: RunState, reason: str, returncode: int | None) -> None:
        self.store.seal_metrics(live.run_id)
        tail = stderr_tail(live.rundir.stderr) if state is RunState.FAILED else None
        self.store.set_state(
            live.run_id,
            state,
            reason,
            ended=time.time(),
            exit_code=returncode,
            exit_reason=reason,
            stderr_tail=tail,
            pid=None,
            pgid=None,
            pid_start=None,
        )
        self.live.pop(live.run_id, None)  # after the store has it: else the next tick retries
        self._remove_stray_temporaries(live.run_id)
        log.info("run %s %s: %s", live.run_id, state.value, reason)
        self._settle_forks(live.run_id, state)
        ended = self.store.get_run(live.run_id)
        if ended is not None:
            if state is RunState.FAILED and self._retry(ended):
                self.scheduler.wake()  # its slot is free, for it or for another
            else:
                self.scheduler.run_ended(ended, state)
            rule = rule_of(ended) if ended["sweep"] else None
            if isinstance(rule, PbtRule):  # a round may have waited only for this run
                self.judge_rounds(ended["sweep"], rule)
            # Its sweep's next trial is made before its end is told: a client waiting on
            # the sweep sees the new run before the last one ends.
            self.next_trial(ended)
        self.announce(live.run_id)

    def _retry(self, run: dict[str, Any]) -> bool:
        """Queue a failed run with retries left again, at its old place, to go on from
        its newest checkpoint (``engine.server.retries``); False if it is not retried."""
        point = retry_point(self.paths, run)
        if point is None:
            return False
        step, checkpoint = point
        reason = retry_reason(run, step, checkpoint)
        log.info("run %s: %s", run["id"], reason)
        self.store.set_state(
            run["id"], RunState.QUEUED, reason, step=step, retried=int(run["retried"]) + 1,
            launch_from=None if checkpoint is None else str(checkpoint), awaiting=None,
            ended=None,
        )
        self.rearm_divergence(run["id"])
        return True

    def _remove_stray_temporaries(self, run_id: str) -> None:
        """Remove a run's half-written files (a checkpoint cut by SIGKILL): it has ended."""
        rundir = self.paths.run_dir(run_id)
        for path in [*remove_stray_temporaries(rundir.path),
                     *remove_stray_temporaries(rundir.checkpoints)]:
            log.info("run %s: removed %s, left by a writer that is gone", run_id, path.name)

    def _settle_forks(self, parent_id: str, state: RunState) -> None:
        """Forks still waiting on a parent that ended: from its final checkpoint; from its
        newest one if it failed (``fork_point``: what a retry of it goes on from too);
        else they fail."""
        parent = self.store.get_run(parent_id)
        waiting = [child for child in self.store.runs_in_states([RunState.QUEUED.value])
                   if child["parent_id"] == parent_id and child["awaiting"] is not None]
        if parent is None or not waiting:
            return
        ids = [child["id"] for child in waiting]
        if state is RunState.FINISHED and parent["checkpoint"]:
            self.on_checkpoint(parent_id, ids, parent["checkpoint"], parent["step"])
            return
        point = fork_point(self.paths, parent) if state is RunState.FAILED else None
        if point is not None:
            self.on_checkpoint(parent_id, ids, point[1], point[0],
                               " (its newest checkpoint: it failed before the one asked for)")
            return
        for child_id in ids:
            self.store.set_state(
                child_id,
                RunState.FAILED,
                f"parent {parent_id} {state.value} first",
                ended=time.time(),
                exit_reason=f"parent {state.value} before its checkpoint",
            )
            self.announce(child_id)

    def announce(self, run_id: str) -> None:
        """Publish a run as it now is (its row, kind and condition) to subscribers."""
        run = self.store.get_run(run_id)
        if run is not None:
            self.publish("runs", {**run, **kind_fields(run), "condition": self.condition(run)})


def stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file (at most 64 KiB are read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
