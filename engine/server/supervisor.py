"""The supervisor: starts runs, follows what their workers report, ends them.

It never waits on a worker. Each run's shim and worker write to files in the
run directory (see ``engine.rundir.paths``), and ``tick()`` — called by the daemon a
few times a second — reads what is new: spool records become metrics and
state changes, ``exit.json`` ends a generation. Because everything a worker
says is on disk, a daemon that restarts picks up exactly where the last one
stopped (``adopt_all``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import time
from typing import Any

from engine.common.runs import DEFAULT_KILL_GRACE, ActionError, RunState
from engine.rundir.annotations import save_annotations
from engine.rundir.disk_space import NOT_WRITABLE, refusal
from engine.rundir.paths import StatePaths, read_json
from engine.server.attach import import_offline_runs
from engine.server.backends import backend_for
from engine.server.backends.attached import record_started_by_user
from engine.server.cores import CoreShares
from engine.server.divergence import pause_reason
from engine.server.launch_file import launch_record
from engine.server.live_run import KILL_REASON, LiveRun, Publish
from engine.server.output_order import OutputOrder
from engine.server.removal import Trash
from engine.server.run_reports import RunReports
from engine.server.scheduler import Scheduler
from engine.server.store import Store
from engine.server.warm_pool import WarmPool

log = logging.getLogger("traintop.supervisor")

# How long a run may sit without a worker (no worker.json) before it is declared lost.
SPAWN_TIMEOUT = 30.0
# How often runs/ is scanned for directories an offline ``traintop.init`` made.
IMPORT_INTERVAL = 2.0
# About how long one tick may work before the daemon answers requests again.
TICK_BUDGET_S = 0.02
# How often the state directory's free space is looked at (one statvfs call).
DISK_CHECK_INTERVAL = 1.0
# How often a live run's process (and its exit.json) is looked at. A run that ends says so
# in its spool first, and is then looked at every tick; this finds a process that died
# without a word (SIGKILL, the OOM killer, os._exit) within a second.
ALIVE_CHECK_S = 1.0


class Supervisor(RunReports):
    """Owns the processes of runs; the store is the truth it writes to.

    What differs between kinds of run (how one starts, pauses, is signalled)
    is its backend's (``engine.server.backends``); the supervisor never asks
    which kind a run is.
    """

    def __init__(self, paths: StatePaths, store: Store, publish: Publish) -> None:
        self.paths = paths
        self.store = store
        self.publish = publish
        self.live: dict[str, LiveRun] = {}
        self.unstored = []
        self._batch_s: float | None = None  # seconds to store one held batch (an average)
        store.before_write = self.store_read  # a tick's points go before any other write
        self._next_import = 0.0
        self._next_run = 0  # where the next tick starts, after one that ran out of time
        self._next_disk_check = 0.0
        # Why the state directory's disk refuses writes (DISK_FULL...), at the last check.
        self.disk_refuses: str | None = None
        self.scheduler = Scheduler(store, self._launch_queued, self.announce)
        self.scheduler.release_diverged = self.release_diverged
        self.fork_run = None  # the request side's fork, for PBT (set by ``Engine``)
        self.start_run = None  # its start, for a searched sweep's next trials
        self.trial_values = {}
        self.short_of_room = {}
        self.cores = CoreShares()  # each CPU run's share of the cores
        self.warm = WarmPool(paths)  # a worker with torch imported, for the next launch
        self.trash = Trash(paths, store)  # removed runs' files, deleted off the event loop
        self._purge_failed: str | None = None  # the last error deleting removed runs' points

    # -- starting -----------------------------------------------------------

    def launch(
        self,
        run: dict[str, Any],
        resume_from: str | None,
        reason: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Start a new generation of ``run``: its backend writes launch.json and starts it.

        ``extra`` goes into launch.json as well (the run's ``env``). Without an
        ``env``, a run keeps the one it was started with, and a fork takes its parent's.
        """
        rundir = self.paths.run_dir(run["id"])
        rundir.path.mkdir(parents=True, exist_ok=True)
        rundir.checkpoints.mkdir(exist_ok=True)
        save_annotations(rundir, run)  # (a fork's first launch makes its directory)
        generation = int(run["generation"]) + 1
        extra = dict(extra or {})
        if "env" not in extra:
            env = self.env_of(run["id"]) or self.env_of(run["parent_id"])
            if env is not None:
                extra["env"] = env
        for stale in (rundir.worker, rundir.exit):
            stale.unlink(missing_ok=True)
        control_offset = rundir.control.stat().st_size if rundir.control.exists() else 0
        backend = backend_for(run)
        shim = backend.launch(rundir, {
            **launch_record(run),
            "generation": generation,
            "resume_from": resume_from,
            "control_offset": control_offset,
            # Where a command run again that names no step counts on from (None: no point).
            "last_step": self.store.last_step(run["id"]),
            **extra,
        }, self.warm)
        self.store.set_state(
            run["id"],
            RunState.STARTING,
            reason,
            generation=generation,
            started=time.time(),
            released=False,
            pid=None,
            pgid=None,
            pid_start=None,
            ended=None,
            exit_code=None,
            exit_reason=None,
            stderr_tail=None,
        )
        offset = int(run["spool_offset"])
        self.live[run["id"]] = LiveRun(
            run["id"], rundir, generation, offset, backend, step=int(run["step"]), shim=shim,
        )
        self.announce(run["id"])

    def enqueue(self, run: dict[str, Any], launch_from: str | None, reason: str,
                schedule: bool = True) -> None:
        """Put ``run`` at the back of its queue; it starts (from ``launch_from``) in its
        turn (``schedule``: a free slot is taken at once, in the same request)."""
        self.store.set_state(
            run["id"], RunState.QUEUED, reason, launch_from=launch_from, awaiting=None,
            queue_pos=self.store.last_queue_pos() + 1,
        )
        if schedule:
            self.scheduler.run_pass()
        self.announce(run["id"])

    def _launch_queued(self, run: dict[str, Any], gpus: tuple[int, ...]) -> None:
        """Start a queued run whose turn it is, on ``gpus`` (none: its device as it is)."""
        extra: dict[str, Any] = {}
        if gpus:
            run = {**run, "device": "cuda:" + ",".join(str(i) for i in gpus)}
            self.store.update_run(run["id"], device=run["device"])
            if backend_for(run).kind != "train":  # its own code picks "cuda": show it these
                env = self.env_of(run["id"]) or self.env_of(run["parent_id"]) or dict(os.environ)
                extra["env"] = {**env, "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in gpus)}
        launch_from = run["launch_from"]
        if launch_from and run["generation"] == 0 and run["parent_id"]:
            reason = f"forked from {run['parent_id']} at step {run['step']}"
        elif launch_from:
            reason = f"resumed from its checkpoint at step {run['step']}"
        else:
            reason = f"started (queue {run['queue']})"
        self.launch(run, launch_from, reason, extra)
        self.store.update_run(run["id"], launch_from=None)

    def adopt_all(self) -> None:
        """Follow every run a previous daemon left with a process (or about to have one).

        (The temporaries that dead writers left went before: ``tidy_tree``.) Removals a
        stopped daemon left half-way are finished first.
        """
        self.trash.finish_removals()
        active = (RunState.STARTING, RunState.RUNNING, RunState.PAUSED)
        for run in self.store.runs_in_states([s.value for s in active]):
            if run["state"] == RunState.PAUSED and run["released"]:
                continue
            live = LiveRun(
                run["id"],
                self.paths.run_dir(run["id"]),
                int(run["generation"]),
                int(run["spool_offset"]),
                backend_for(run),
                step=int(run["step"]),
                pid=run["pid"],
                pgid=run["pgid"],
                pid_start=run["pid_start"],
            )
            if run["exit_reason"] == KILL_REASON:
                live.start_kill(float(run["kill_grace"] or 0), adopted=True)
                live.stop_reason = run["stopped_early"]
            self.live[run["id"]] = live
            log.info("adopted run %s (generation %s, pid %s)", run["id"], live.generation, live.pid)
            if run["stopped_early"] and not live.killing:
                # A rule stopped it (a rung, a PBT round) and the daemon died before the
                # kill went out: it goes now.
                live.stop_reason = run["stopped_early"]
                self.kill(run, DEFAULT_KILL_GRACE)

    def env_of(self, run_id: str | None) -> dict[str, str] | None:
        """The environment a run was last launched with (None: the daemon's own)."""
        if run_id is None:
            return None
        launch = read_json(self.paths.run_dir(run_id).launch)
        env = launch.get("env") if isinstance(launch, dict) else None
        return env if isinstance(env, dict) else None

    def follow_attached(
        self, run: dict[str, Any], pid: int, pid_start: float, env: dict[str, str] | None = None
    ) -> None:
        """Follow a process that attached itself (``traintop.init``) as generation 1 of ``run``."""
        rundir = self.paths.run_dir(run["id"])
        record_started_by_user(rundir, launch_record(run), pid, pid_start, env)
        save_annotations(rundir, run)  # the tags it attached with, for a rebuild
        self.store.set_state(
            run["id"], RunState.RUNNING, backend_for(run).followed_reason(pid), generation=1,
            started=time.time(), pid=pid, pgid=pid, pid_start=pid_start,
        )
        self.live[run["id"]] = LiveRun(
            run["id"], rundir, 1, int(run["spool_offset"]), backend_for(run),
            step=int(run["step"]), pid=pid, pgid=pid, pid_start=pid_start,
        )
        self.announce(run["id"])

    # -- control ------------------------------------------------------------

    def send_control(self, run: dict[str, Any], cmd: str, request: str | None = None) -> None:
        """Append a command to the run's control file and nudge its worker."""
        rundir = self.paths.run_dir(run["id"])
        seq = int(run["control_seq"]) + 1
        line = json.dumps({"seq": seq, "cmd": cmd, "request": request}) + "\n"
        # The store first: if it refuses (locked, full), no command has gone out. A
        # line that then fails to be written leaves only a gap in the numbers.
        self.store.update_run(run["id"], control_seq=seq)
        with open(rundir.control, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        live = self.live.get(run["id"])
        if live is not None and live.pid is not None and live.backend.alive(live):
            with contextlib.suppress(ProcessLookupError):
                os.kill(live.pid, signal.SIGUSR1)

    def stop_process(self, run: dict[str, Any], pause: bool) -> None:
        """Pause (SIGSTOP) or resume (SIGCONT) a run's process, and record it at once."""
        live = self.live.get(run["id"])
        if live is not None and live.pid is None:
            self._read_worker_file(live)
        if live is None or live.pid is None or not live.backend.alive(live):
            raise ActionError(f"run {run['id']} has no running command yet; try again shortly")
        self._read_spool(live)  # its 'running' record first, so it cannot undo the pause
        live.backend.signal(live, signal.SIGSTOP if pause else signal.SIGCONT)
        if pause:
            reason = pause_reason(run, "paused by user (SIGSTOP)")
            self.store.set_state(run["id"], RunState.PAUSED, reason)
        else:
            self.store.set_state(run["id"], RunState.RUNNING, "resumed by user (SIGCONT)")
        self.announce(run["id"])

    def kill(self, run: dict[str, Any], grace: float) -> None:
        """Kill the run's process by its backend's signal ladder (SIGKILL once ``grace`` is up).

        A run with no process (queued, or paused with its memory released) ends at once.
        Its directory keeps that it was killed, and why, for ``engine rebuild``.
        """
        rundir = self.paths.run_dir(run["id"])
        if rundir.path.is_dir():  # (a fork queued from a checkpoint to come has none yet)
            current = self.store.get_run(run["id"]) or run
            save_annotations(rundir, current,
                             killed=(time.time(), current["stopped_early"] or "killed by user"))
        live = self.live.get(run["id"])
        if live is None:
            self.store.set_state(
                run["id"],
                RunState.KILLED,
                "killed by user",
                ended=time.time(),
                exit_reason="killed by user",
            )
            self.announce(run["id"])
            return
        # The signals first: they need no store, and a store another process holds
        # locked must not keep a runaway run alive. Unrecorded, the run still ends as
        # killed once the store takes writes: ``_finish`` asks the live run too.
        live.start_kill(grace)
        live.escalate_kill()
        if not self.store.may_write():
            return
        try:
            self.store.update_run(run["id"], exit_reason=KILL_REASON, kill_grace=grace)
        except sqlite3.OperationalError as exc:
            if not self.store.write_failed(exc):
                raise

    # -- following ----------------------------------------------------------

    def tick(self, budget: float = TICK_BUDGET_S) -> bool:
        """Read what live runs wrote since the last tick, and act on it.

        Works for about ``budget`` seconds, then stops so the daemon can answer
        requests; the next tick starts with the run this one did not reach.
        Returns True when it stopped with work left (call again soon): runs it did
        not reach, or a spool longer than one read.
        """
        deadline = time.monotonic() + budget
        if time.monotonic() >= self._next_disk_check:
            self._next_disk_check = time.monotonic() + DISK_CHECK_INTERVAL
            self.check_disk()
        if not self.store.may_write():  # still locked by another process
            for waiting in list(self.live.values()):
                waiting.escalate_kill()  # a kill goes on: signals need no store
            return False  # the spools wait for the next tick
        if time.monotonic() >= self._next_import:
            self._next_import = time.monotonic() + IMPORT_INTERVAL
            try:
                import_offline_runs(self.paths, self.store, self.follow_attached)
            except Exception:
                log.exception("importing offline runs failed")
        self.cores.tick(self.live, self.store, self)
        order = list(self.live)
        first = self._next_run if self._next_run < len(order) else 0
        backlog = False
        for index in range(first, len(order)):
            # (Storing what was read counts against the budget too.)
            if index > first and time.monotonic() + self._storing_s() > deadline:
                self._next_run = index
                return self._store_read(first)
            run_id = order[index]
            live = self.live.get(run_id)
            if live is None:  # ended by another run's record (a fork's parent) this tick
                continue
            try:
                backlog = not self._follow(live) or backlog
                if not live.unstored:  # (else it is cleared once its points are stored)
                    live.failing = None
            except Exception as exc:
                if self.store.write_failed(exc):
                    # Every other run would fail the same way: the next tick tries again.
                    self._drop_unstored()
                    self._next_run = first
                    return False
                if live.failing != repr(exc):  # once, not at every tick it repeats
                    live.failing = repr(exc)
                    log.exception("following run %s failed", run_id)
        if not self._store_read(first):
            return False
        self._next_run = 0
        if self.scheduler.tick() and self.short_of_room:
            self.feed_searches()
        self.warm.tick()
        self._purge_removed()
        self.store.write_succeeded()
        # Every run was followed: the next tick comes after a pause unless a spool has more.
        return backlog

    def _purge_removed(self) -> None:
        """Delete a slice of removed runs' points (``Store.purge_removed``), once a tick;
        once none is left, give a slice of the room they took back to the disk."""
        try:
            if not self.store.purge_removed():
                self.store.reclaim_free()
        except Exception as exc:
            # Unavailable (locked, full): the next tick tries again. Else said once.
            if not self.store.write_failed(exc) and self._purge_failed != repr(exc):
                self._purge_failed = repr(exc)
                log.exception("deleting removed runs' points, or giving their room back, failed")

    def _store_read(self, first: int) -> bool:
        """Store what this tick read (``store_read``); False if the store cannot be written
        now: the next tick reads it again, from the run it started with (``first``)."""
        held, started = len(self.unstored), time.monotonic()
        try:
            self.store_read()
        except Exception as exc:
            if not self.store.write_failed(exc):
                raise
            self._next_run = first
            return False
        if held:
            each = (time.monotonic() - started) / held
            self._batch_s = each if self._batch_s is None else 0.8 * self._batch_s + 0.2 * each
        return True

    def _storing_s(self) -> float:
        """About how long storing the batches held now will take, from the last ticks."""
        return len(self.unstored) * (self._batch_s or 0.0)

    def _drop_unstored(self) -> None:
        """Forget the batches held: the store cannot take them; the spools still hold them."""
        for live, _, _ in self.unstored:
            live.unstored = False
        self.unstored = []

    def check_disk(self) -> None:
        """Mark the live runs whose spool the disk holds back (full, read-only, the file
        not writable), and clear the rest.

        Decided here, from statvfs, access() and the spool's size, rather than said by
        the worker: that needs no disk and no new channel, holds for every kind of
        run (a wrapped command's shim, an attached script) and for a daemon
        that restarts while the disk refuses. A spool that still grows is not
        held back, whatever statvfs says (root's reserved blocks, a stale count).
        """
        self.disk_refuses = refusal(self.paths.runs)
        for live in list(self.live.values()):
            try:
                size = live.rundir.spool.stat().st_size
            except OSError:
                size = -1
            why = self.disk_refuses
            if why is None and size >= 0 and not os.access(live.rundir.spool, os.W_OK):
                why = NOT_WRITABLE  # this file alone (made immutable, its mode changed)
            held_back = why if why is not None and size == live.spool_size else None
            live.spool_size = size
            if held_back != live.held_back:
                live.held_back = held_back
                if held_back:
                    log.warning("run %s: %s; its worker holds its points", live.run_id,
                                held_back)
                else:
                    log.info("run %s: its spool is written again", live.run_id)
                self.announce(live.run_id)

    def _follow(self, live: LiveRun) -> bool:
        """Store what the run wrote, and see whether it ended; False: its spool has more."""
        if live.shim is not None:
            live.shim.poll()  # reap it once it is done, so no zombie stays
        live.escalate_kill()  # first: the store may be locked, and signals need none
        if live.pid is None:
            self._read_worker_file(live)
        if live.output is None:
            live.output = OutputOrder(live.rundir)
        live.output.note()
        drained = self._read_spool(live)
        self._look_for_the_end(live, drained)
        return drained

    def _look_for_the_end(self, live: LiveRun, drained: bool) -> None:
        """End the run if its exit.json says so, or its process is gone without one."""
        now = time.monotonic()
        looked = live.pid is not None and now >= live.alive_due
        if looked:
            live.alive_due = now + ALIVE_CHECK_S
            live.seen_alive = live.backend.alive(live)
        # exit.json comes after the spool's last record, or after a death found above:
        # read at every tick once the run is ending, else with each look at the process.
        ending = (
            live.pid is None or live.killing or not live.seen_alive
            or live.ending is not None or live.error is not None
            or (live.shim is not None and live.shim.returncode is not None)
        )
        if looked or ending:
            exit_info = read_json(live.exit_file)
            if isinstance(exit_info, dict) and exit_info.get("generation") == live.generation:
                # Every point it wrote is stored first (a long backlog takes a few ticks).
                if drained and self._read_spool(live):
                    self._finish(live, int(exit_info.get("returncode", -1)))
                return
        if live.pid is None:
            if live.killing and live.shim is None:
                self._end(live, RunState.KILLED, live.kill_reason, None)
            elif now - live.since > SPAWN_TIMEOUT and self.disk_refuses is None:
                # (On a refusing disk the shim waits to write worker.json.)
                self._end(live, RunState.FAILED, "lost: the worker never started", None)
            return
        if not live.seen_alive:
            live.dead_since = live.dead_since or now
            waited = now - live.dead_since
            # On a full disk the shim waits for room to write exit.json: not lost yet. No
            # exit status can come once the run's directory is gone: no use waiting then.
            gone = not live.rundir.path.is_dir()
            if self.disk_refuses is None and (gone or waited > live.backend.exit_timeout(live)):
                if live.killing:
                    self._end(live, RunState.KILLED, live.kill_reason, None)
                else:
                    reason = "lost: the worker ended without an exit status"
                    self._end(live, RunState.FAILED, reason, None)

    def _read_worker_file(self, live: LiveRun) -> None:
        info = read_json(live.rundir.worker)
        if not isinstance(info, dict) or info.get("generation") != live.generation:
            return
        pid, pgid, pid_start = int(info["pid"]), int(info["pgid"]), float(info["create_time"])
        # Stored first: if the store cannot take it, the next tick reads the file again.
        self.store.update_run(live.run_id, pid=pid, pgid=pgid, pid_start=pid_start)
        live.pid, live.pgid, live.pid_start = pid, pgid, pid_start
        live.escalate_kill()  # a kill asked for before the worker existed goes out now
