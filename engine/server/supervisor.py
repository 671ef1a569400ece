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
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from engine.common.runs import WRAPPED_WORKLOAD, ActionError, RunState
from engine.rundir.disk_space import is_full
from engine.rundir.line_tail import read_lines
from engine.rundir.paths import (
    RunDir,
    StatePaths,
    child_env,
    read_json,
    remove_stray_temporaries,
    write_json_atomic,
)
from engine.rundir.spool_records import (
    CheckpointRecord,
    ErrorRecord,
    HeldRecord,
    Malformed,
    Metric,
    MetricsRecord,
    StateRecord,
    decode_record,
)
from engine.server.attach import attach_argv, import_offline_runs, is_attached
from engine.server.store import Store

log = logging.getLogger("traintop.supervisor")

Publish = Callable[[str, dict[str, Any]], None]

# How long a run may sit without a worker (no worker.json) before it is declared lost.
SPAWN_TIMEOUT = 30.0
# How long a dead worker's shim gets to write exit.json before the run is declared lost
# (the shim first waits up to 5 s for the rest of the process group to go).
EXIT_TIMEOUT = 15.0
# An attached process (``traintop.init``) writes exit.json itself before it ends,
# so one that is gone without it died hard (SIGKILL, OOM killer): no need to wait long.
ATTACHED_EXIT_TIMEOUT = 1.0
# How often runs/ is scanned for directories an offline ``traintop.init`` made.
IMPORT_INTERVAL = 2.0
# Stored as exit_reason while a kill is under way, so a restarted daemon finishes it.
KILL_REASON = "kill requested"
STDERR_TAIL_LINES = 20
# Points per 'metrics' event, so that no event nears the frame cap.
EVENT_POINTS = 10_000
# The most of one run's spool read at once (~8k points, ~50 ms to store).
SPOOL_READ_BYTES = 512 * 1024
# About how long one tick may work before the daemon answers requests again.
TICK_BUDGET_S = 0.05
# How often the state directory's free space is looked at (one statvfs call).
DISK_CHECK_INTERVAL = 1.0
# What a run shows while its worker cannot write its spool (see ``check_disk``).
DISK_FULL = "disk full"


@dataclass
class LiveRun:
    """What the supervisor knows about a run that has (or had) a process."""

    run_id: str
    rundir: RunDir
    generation: int
    spool_offset: int
    step: int = 0
    pid: int | None = None
    pgid: int | None = None
    pid_start: float | None = None
    shim: subprocess.Popen[bytes] | None = None
    since: float = field(default_factory=time.monotonic)
    dead_since: float | None = None
    kill_deadline: float | None = None
    ending: dict[str, Any] | None = None  # the released/finished record, once seen
    error: str | None = None  # the message of an error record
    attached: bool = False  # started by the user (traintop.init): no shim, signalled alone
    wraps: bool = False  # a wrapped command: signals, not control commands
    term_at: float | None = None  # a wrapped command's kill: when SIGINT gives way to SIGTERM
    spool_size: int = -1  # the spool's size at the last disk check
    disk_full: bool = False  # the disk holds its spool back: the worker keeps points in memory
    warned_skips: bool = False  # skipped records are logged once per run, then only counted
    failing: str | None = None  # the last unexpected error following it (logged once)


@dataclass
class _Batch:
    """What a spool read gathered to store in one transaction with the offset it ends at."""

    points: list[Metric] = field(default_factory=list)
    bad_records: int = 0
    bad_points: int = 0
    problem: str | None = None  # the first thing skipped, for the log


class Supervisor:
    """Owns the processes of runs; the store is the truth it writes to."""

    def __init__(self, paths: StatePaths, store: Store, publish: Publish) -> None:
        self.paths = paths
        self.store = store
        self.publish = publish
        self.live: dict[str, LiveRun] = {}
        self._next_import = 0.0
        self._next_run = 0  # where the next tick starts, after one that ran out of time
        self._next_disk_check = 0.0
        self.disk_full = False  # the state directory's filesystem, at the last check

    # -- starting -----------------------------------------------------------

    def launch(
        self,
        run: dict[str, Any],
        resume_from: str | None,
        reason: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Start a new generation of ``run``: write launch.json, start its shim.

        ``extra`` goes into launch.json as well (a wrapped command's ``command``,
        the run's ``env``). Without an ``env``, a run keeps the one it was started
        with, and a fork takes its parent's.
        """
        rundir = self.paths.run_dir(run["id"])
        rundir.path.mkdir(parents=True, exist_ok=True)
        rundir.checkpoints.mkdir(exist_ok=True)
        generation = int(run["generation"]) + 1
        extra = dict(extra or {})
        if "env" not in extra:
            env = self._env_of(run["id"]) or self._env_of(run["parent_id"])
            if env is not None:
                extra["env"] = env
        for stale in (rundir.worker, rundir.exit):
            stale.unlink(missing_ok=True)
        control_offset = rundir.control.stat().st_size if rundir.control.exists() else 0
        write_json_atomic(
            rundir.launch,
            {
                **launch_record(run),
                "generation": generation,
                "resume_from": resume_from,
                "control_offset": control_offset,
                "argv": attach_argv(run["workload"]),  # a traintop.init script: re-run it
                **extra,
            },
        )
        env = child_env()
        with open(rundir.path / "shim.log", "ab") as shim_log:
            shim = subprocess.Popen(
                [sys.executable, "-m", "engine.run.shim", str(rundir.path)],
                stdin=subprocess.DEVNULL,
                stdout=shim_log,
                stderr=shim_log,
                start_new_session=True,
                close_fds=True,
                env=env,
                cwd=rundir.path,
            )
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
            run["id"], rundir, generation, offset, step=int(run["step"]), shim=shim,
            wraps=run["workload"] == WRAPPED_WORKLOAD,
        )
        self._announce(run["id"])

    def adopt_all(self) -> None:
        """Follow every run a previous daemon left with a process (or about to have one).

        (The temporaries that dead writers left went before: ``tidy_tree``.)
        """
        active = (RunState.STARTING, RunState.RUNNING, RunState.PAUSED)
        for run in self.store.runs_in_states([s.value for s in active]):
            if run["state"] == RunState.PAUSED and run["released"]:
                continue
            live = LiveRun(
                run["id"],
                self.paths.run_dir(run["id"]),
                int(run["generation"]),
                int(run["spool_offset"]),
                step=int(run["step"]),
                pid=run["pid"],
                pgid=run["pgid"],
                pid_start=run["pid_start"],
                wraps=run["workload"] == WRAPPED_WORKLOAD,
            )
            if run["exit_reason"] == KILL_REASON:
                live.kill_deadline = time.monotonic() + float(run["kill_grace"] or 0)
            live.attached = is_attached(live.rundir.worker, live.generation)
            self.live[run["id"]] = live
            log.info("adopted run %s (generation %s, pid %s)", run["id"], live.generation, live.pid)

    def _remove_stray_temporaries(self, run_id: str) -> None:
        """Remove a run's half-written files (a checkpoint cut by SIGKILL): it has ended."""
        rundir = self.paths.run_dir(run_id)
        for path in [*remove_stray_temporaries(rundir.path),
                     *remove_stray_temporaries(rundir.checkpoints)]:
            log.info("run %s: removed %s, left by a writer that is gone", run_id, path.name)

    def _env_of(self, run_id: str | None) -> dict[str, str] | None:
        """The environment a run was last launched with (None: the daemon's own)."""
        if run_id is None:
            return None
        launch = read_json(self.paths.run_dir(run_id).launch)
        env = launch.get("env") if isinstance(launch, dict) else None
        return env if isinstance(env, dict) else None

    def follow_attached(
        self, run: dict[str, Any], pid: int, pid_start: float, env: dict[str, str] | None = None
    ) -> None:
        """Follow a process that attached itself (``traintop.init``) as generation 1 of ``run``.

        Its worker.json is written here (there is no shim) and marks it attached;
        its launch.json (which the process never reads) records the run, and the
        environment that a fork or resume will re-run its command with.
        """
        rundir = self.paths.run_dir(run["id"])
        rundir.checkpoints.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            rundir.launch,
            {**launch_record(run), "generation": 1, "attached": True,
             **({} if env is None else {"env": env})},
        )
        write_json_atomic(
            rundir.worker,
            {"pid": pid, "pgid": pid, "create_time": pid_start, "shim_pid": None,
             "generation": 1, "attached": True},
        )
        self.store.set_state(
            run["id"], RunState.RUNNING, f"attached: pid {pid}", generation=1,
            started=time.time(), pid=pid, pgid=pid, pid_start=pid_start,
        )
        self.live[run["id"]] = LiveRun(
            run["id"], rundir, 1, int(run["spool_offset"]), step=int(run["step"]),
            pid=pid, pgid=pid, pid_start=pid_start, attached=True,
        )
        self._announce(run["id"])

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
        if live is not None and live.pid is not None and self._alive(live):
            with contextlib.suppress(ProcessLookupError):
                os.kill(live.pid, signal.SIGUSR1)

    def kill(self, run: dict[str, Any], grace: float) -> None:
        """SIGTERM the run's process group now, SIGKILL it after ``grace`` seconds.

        A wrapped command gets SIGINT first (scripts clean up on Ctrl-C), SIGTERM
        after ``grace`` and SIGKILL after another ``grace``.
        """
        live = self.live.get(run["id"])
        if live is None:  # nothing running: queued, or paused with its memory released
            self.store.set_state(
                run["id"],
                RunState.KILLED,
                "killed by user",
                ended=time.time(),
                exit_reason="killed by user",
            )
            self._announce(run["id"])
            return
        self.store.update_run(run["id"], exit_reason=KILL_REASON, kill_grace=grace)
        live.kill_deadline = time.monotonic() + grace
        if live.wraps:
            live.term_at = live.kill_deadline
            live.kill_deadline += grace
        self._first_kill_signal(live)

    def _first_kill_signal(self, live: LiveRun) -> None:
        if live.wraps:
            self._signal_group(live, signal.SIGINT)
            self._signal_group(live, signal.SIGCONT)  # a stopped command must see it
        else:
            self._signal_group(live, signal.SIGTERM)

    def stop_wrapped(self, run: dict[str, Any], pause: bool) -> None:
        """Pause (SIGSTOP) or resume (SIGCONT) a wrapped command's process group."""
        live = self.live.get(run["id"])
        if live is not None and live.pid is None:
            self._read_worker_file(live)
        if live is None or live.pid is None or not self._alive(live):
            raise ActionError(f"run {run['id']} has no running command yet; try again shortly")
        self._read_spool(live)  # its 'running' record first, so it cannot undo the pause
        self._signal_group(live, signal.SIGSTOP if pause else signal.SIGCONT)
        if pause:
            self.store.set_state(run["id"], RunState.PAUSED, "paused by user (SIGSTOP)")
        else:
            self.store.set_state(run["id"], RunState.RUNNING, "resumed by user (SIGCONT)")
        self._announce(run["id"])

    def _signal_group(self, live: LiveRun, sig: int) -> None:
        if live.pgid is None or not self._alive(live):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if live.attached:  # its group may be the user's shell job: signal it alone
                assert live.pid is not None
                os.kill(live.pid, sig)
            else:
                os.killpg(live.pgid, sig)

    # -- following ----------------------------------------------------------

    def tick(self, budget: float = TICK_BUDGET_S) -> bool:
        """Read what live runs wrote since the last tick, and act on it.

        Works for about ``budget`` seconds, then stops so the daemon can answer
        requests; the next tick starts with the run this one did not reach.
        Returns True when it stopped with work left (call again soon).
        """
        deadline = time.monotonic() + budget
        if time.monotonic() >= self._next_disk_check:
            self._next_disk_check = time.monotonic() + DISK_CHECK_INTERVAL
            self.check_disk()
        if not self.store.may_write():  # still locked by another process
            for waiting in list(self.live.values()):
                self._escalate_kill(waiting)  # a kill goes on: signals need no store
            return False  # the spools wait for the next tick
        if time.monotonic() >= self._next_import:
            self._next_import = time.monotonic() + IMPORT_INTERVAL
            try:
                import_offline_runs(self.paths, self.store, self.follow_attached)
            except Exception:
                log.exception("importing offline runs failed")
        order = list(self.live)
        first = self._next_run % len(order) if order else 0
        for done, run_id in enumerate(order[first:] + order[:first]):
            if done and time.monotonic() > deadline:
                self._next_run = first + done
                return True
            live = self.live.get(run_id)
            if live is None:  # ended by another run's record (a fork's parent) this tick
                continue
            try:
                self._follow(live)
                live.failing = None
            except Exception as exc:
                if self.store.write_failed(exc):
                    # Every other run would fail the same way: the next tick tries again.
                    self._next_run = first + done
                    return False
                if live.failing != repr(exc):  # once, not at every tick it repeats
                    live.failing = repr(exc)
                    log.exception("following run %s failed", run_id)
        self._next_run = 0
        self.store.write_succeeded()
        return time.monotonic() > deadline

    def check_disk(self) -> None:
        """Mark the live runs whose spool the full disk holds back, and clear the rest.

        Decided here, from statvfs and the spool's size, rather than said by the
        worker: that needs no disk and no new channel, holds for every kind of
        run (a wrapped command's shim, an attached script) and for a daemon
        that restarts while the disk is full. A spool that still grows is not
        held back, whatever statvfs says (root's reserved blocks, a stale count).
        """
        self.disk_full = is_full(self.paths.runs)
        for live in list(self.live.values()):
            try:
                size = live.rundir.spool.stat().st_size
            except OSError:
                size = -1
            held_back = self.disk_full and size == live.spool_size
            live.spool_size = size
            if held_back != live.disk_full:
                live.disk_full = held_back
                if held_back:
                    log.warning("run %s: disk full; its worker holds its points", live.run_id)
                else:
                    log.info("run %s: its spool is written again", live.run_id)
                self._announce(live.run_id)

    def condition(self, run_id: str) -> str | None:
        """What is wrong with a live run that its state does not say (``disk full``), or None."""
        live = self.live.get(run_id)
        return DISK_FULL if live is not None and live.disk_full else None

    def _follow(self, live: LiveRun) -> None:
        if live.shim is not None:
            live.shim.poll()  # reap it once it is done, so no zombie stays
        self._escalate_kill(live)  # first: the store may be locked, and signals need none
        if live.pid is None:
            self._read_worker_file(live)
        drained = self._read_spool(live)
        exit_info = read_json(live.rundir.exit)
        if isinstance(exit_info, dict) and exit_info.get("generation") == live.generation:
            # Every point it wrote is stored first (a long backlog takes a few ticks).
            if drained and self._read_spool(live):
                self._finish(live, int(exit_info.get("returncode", -1)))
            return
        now = time.monotonic()
        if live.pid is None:
            if live.kill_deadline is not None and live.shim is None:
                self._end(live, RunState.KILLED, "killed by user", None)
            elif now - live.since > SPAWN_TIMEOUT and not self.disk_full:
                # (On a full disk the shim waits for room to write worker.json.)
                self._end(live, RunState.FAILED, "lost: the worker never started", None)
            return
        if not self._alive(live):
            live.dead_since = live.dead_since or now
            waited = now - live.dead_since
            # On a full disk the shim waits for room to write exit.json: not lost yet. No
            # exit status can come once the run's directory is gone: no use waiting then.
            gone = not live.rundir.path.is_dir()
            if not self.disk_full and (
                gone or waited > (ATTACHED_EXIT_TIMEOUT if live.attached else EXIT_TIMEOUT)
            ):
                state = RunState.KILLED if live.kill_deadline is not None else RunState.FAILED
                reason = (
                    "killed by user"
                    if live.kill_deadline is not None
                    else ("lost: the worker ended without an exit status")
                )
                self._end(live, state, reason, None)

    def _escalate_kill(self, live: LiveRun) -> None:
        """A kill under way: SIGTERM (wrapped commands) and SIGKILL once their time comes."""
        now = time.monotonic()
        if live.pid is None:  # not started yet: its first signal goes when it is
            return
        if live.term_at is not None and now >= live.term_at:
            live.term_at = None
            self._signal_group(live, signal.SIGTERM)
        if live.kill_deadline is not None and now >= live.kill_deadline:
            self._signal_group(live, signal.SIGKILL)

    def _read_worker_file(self, live: LiveRun) -> None:
        info = read_json(live.rundir.worker)
        if not isinstance(info, dict) or info.get("generation") != live.generation:
            return
        pid, pgid, pid_start = int(info["pid"]), int(info["pgid"]), float(info["create_time"])
        # Stored first: if the store cannot take it, the next tick reads the file again.
        self.store.update_run(live.run_id, pid=pid, pgid=pgid, pid_start=pid_start)
        live.pid, live.pgid, live.pid_start = pid, pgid, pid_start
        if live.kill_deadline is not None:  # a kill asked for before the worker existed
            self._first_kill_signal(live)

    def _alive(self, live: LiveRun) -> bool:
        """Is the worker the same process we started (pid and start time, never pid alone)?"""
        if live.pid is None:
            return False
        try:
            proc = psutil.Process(live.pid)
            return (
                abs(proc.create_time() - (live.pid_start or 0.0)) < 0.01
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def _read_spool(self, live: LiveRun) -> bool:
        """Store what the run's spool holds past the stored offset, up to a bound.

        True when the spool is read to its end (False: a backlog remains for the
        next tick; bounded so that one run's backlog never stalls the daemon).
        ``live.spool_offset`` moves only with a commit: when the store cannot be
        written, the error goes up and the next tick reads the rest again.
        """
        read = read_lines(live.rundir.spool, live.spool_offset, SPOOL_READ_BYTES)
        batch, offset = _Batch(), live.spool_offset
        for line in read.lines:
            record = decode_record(line)
            if isinstance(record, MetricsRecord):
                batch.points += record.points
                batch.bad_points += record.bad_points
                batch.problem = batch.problem or record.problem
            elif isinstance(record, Malformed):
                batch.bad_records += 1
                batch.problem = batch.problem or record.problem
            else:
                # The points before a record are stored before it acts (ends a run,
                # starts a fork), so they are never left behind it.
                self._store_batch(live, batch, offset)
                batch = _Batch()
                self._on_record(live, record, offset + len(line))
            offset += len(line)
        self._store_batch(live, batch, offset)
        return read.drained

    def _store_batch(self, live: LiveRun, batch: _Batch, end: int) -> None:
        """Store ``batch`` with the spool offset ``end`` it was read up to, in one transaction."""
        if end == live.spool_offset:
            return
        # A point at step s means s steps were done before it, so s + 1 are done after.
        step = max([live.step, *(p[0] + 1 for p in batch.points)])
        self.store.add_metrics(
            live.run_id, batch.points, end, step, (batch.bad_records, batch.bad_points)
        )
        live.spool_offset, live.step = end, step
        if batch.problem is not None and not live.warned_skips:
            live.warned_skips = True  # later ones are only counted (see `traintop show`)
            log.warning(
                "run %s: skipped %d malformed spool records and %d bad points (%s)",
                live.run_id, batch.bad_records, batch.bad_points, batch.problem,
            )
        points = batch.points
        for start in range(0, len(points), EVENT_POINTS):
            self.publish(
                "metrics", {"run": live.run_id, "points": points[start : start + EVENT_POINTS]}
            )

    def _on_record(
        self, live: LiveRun,
        record: StateRecord | CheckpointRecord | ErrorRecord | HeldRecord,
        end: int,
    ) -> None:
        """Act on a record that ends at spool offset ``end``.

        A state change stores ``end`` with itself, so it happens once even across
        restarts; the others are safe to see twice (the next batch stores past them).
        """
        if isinstance(record, ErrorRecord):
            live.error = record.message
        elif isinstance(record, HeldRecord):
            self.store.note(
                live.run_id,
                f"spool: {record.held} points held while the disk was full, "
                f"{record.dropped} dropped",
            )
        elif isinstance(record, CheckpointRecord):
            self.on_checkpoint(live.run_id, record.request, record.path, record.step)
        else:
            self._on_state(live, record, end)

    def _on_state(self, live: LiveRun, record: StateRecord, end: int) -> None:
        state, step, run_id = record.state, record.step, live.run_id
        if state == "running":
            self.store.set_state(
                run_id, RunState.RUNNING, "worker is training", step=step,
                total_steps=record.total, spool_offset=end,
            )
        elif state == "paused":
            self.store.set_state(
                run_id, RunState.PAUSED, "paused by user", step=step, spool_offset=end
            )
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
        live.step = step if state == "running" else max(live.step, step)
        self._announce(run_id)

    def on_checkpoint(self, parent_id: str, child_id: str, path: Any, step: int) -> None:
        """A worker wrote the checkpoint a fork asked for: start the child from it."""
        child = self.store.get_run(child_id)
        if child is None or child["state"] != RunState.QUEUED:
            return  # already started (a replayed record) or killed meanwhile
        if not path:
            self.store.set_state(
                child_id,
                RunState.FAILED,
                f"parent {parent_id} tracks nothing to checkpoint",
                ended=time.time(),
                exit_reason="parent tracks nothing to checkpoint",
            )
            self._announce(child_id)
            return
        self.store.update_run(child_id, fork_step=step, step=step)
        child = self.store.get_run(child_id)
        assert child is not None
        self.launch(child, str(path), f"forked from {parent_id} at step {step}")

    # -- ending -------------------------------------------------------------

    def _finish(self, live: LiveRun, returncode: int) -> None:
        run = self.store.get_run(live.run_id)
        if run is None:
            return
        ending = live.ending or {}
        if run["exit_reason"] == KILL_REASON:
            self._end(live, RunState.KILLED, "killed by user", returncode)
        elif ending.get("state") == "released" and returncode == 0:
            self.store.set_state(
                live.run_id,
                RunState.PAUSED,
                "paused; memory released",
                released=True,
                pid=None,
                pgid=None,
                pid_start=None,
            )
            self.live.pop(live.run_id, None)  # after the store has it: else the next tick retries
            self._announce(live.run_id)
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
        self._announce(live.run_id)

    def _settle_forks(self, parent_id: str, state: RunState) -> None:
        """Forks still waiting on a parent that ended: use its final checkpoint, or fail."""
        parent = self.store.get_run(parent_id)
        for child in self.store.runs_in_states([RunState.QUEUED.value]):
            if child["parent_id"] != parent_id or parent is None:
                continue
            if state is RunState.FINISHED and parent["checkpoint"]:
                self.on_checkpoint(parent_id, child["id"], parent["checkpoint"], parent["step"])
            else:
                self.store.set_state(
                    child["id"],
                    RunState.FAILED,
                    f"parent {parent_id} {state.value} first",
                    ended=time.time(),
                    exit_reason=f"parent {state.value} before its checkpoint",
                )
                self._announce(child["id"])

    def _announce(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if run is not None:
            self.publish("runs", {**run, "condition": self.condition(run_id)})



def launch_record(run: dict[str, Any]) -> dict[str, Any]:
    """What launch.json says about a run itself: enough to rebuild its row in a new store."""
    return {
        "run_id": run["id"],
        "name": run["name"],
        "workload": run["workload"],
        "config": run["config"],
        "device": run["device"],
        "cwd": run["cwd"],
        "created": run["created"],
        "parent_id": run["parent_id"],
        "fork_step": run["fork_step"],
    }


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
