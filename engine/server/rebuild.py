"""``traintop engine rebuild``: a new store made from the run directories.

Every run directory holds what its row needs (``launch.json``: name,
workload, config, device, lineage) and every point it logged: ``spool.jsonl``
is only ever appended to (no traintop process truncates, rotates or deletes
it), and the daemon stores a point only after reading it there. So a store
that is lost or damaged can be made again, point for point.

The old store is moved aside, never deleted. The new one is built under a
temporary name and renamed into place whole, so an interrupted rebuild
leaves no half store that a daemon would take for the real one. Runs that
still have a process get it back: the next daemon adopts them and tails
their spools from where the rebuild stopped reading.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.common.checkpoint_every import CheckpointEvery
from engine.common.pbt import PbtRule, sweep_rule
from engine.common.runs import RunState, name_from, unique_name
from engine.common.search import SearchRule
from engine.rundir.annotations import killed_at, read_annotations
from engine.rundir.line_tail import read_lines
from engine.rundir.paths import RunDir, StatePaths, read_json, sqlite_files
from engine.rundir.spool_records import (
    ErrorRecord,
    SpoolBatch,
    SpoolRecord,
    StateRecord,
    decode_record,
    rewinds_at,
    steps_after,
)
from engine.server.daemon import MaintenanceError, hold_stopped_store
from engine.server.launch_file import QUEUE_RECORD
from engine.server.requests import MAX_RETRIES, is_number
from engine.server.run_reports import SPOOL_READ_BYTES, stderr_tail
from engine.server.rungs import RungWatch
from engine.server.store import Store
from engine.server.store_queues import QUEUE_FIELDS

# Points stored per transaction while a spool is read back.
BATCH_POINTS = 50_000
REBUILT = "rebuilt from its run directory"


class RebuildError(MaintenanceError):
    """A rebuild that cannot start; the message is one line for the user."""


@dataclass
class Rebuilt:
    """What a rebuild did."""

    runs: int = 0
    points: int = 0
    aside: Path | None = None  # where the old store went (None: there was none)
    skipped: list[str] = field(default_factory=list)  # directories with no launch.json


def rebuild_store(paths: StatePaths) -> Rebuilt:
    """Make a new store from ``paths.runs``; the engine must not be running."""
    lock = hold_stopped_store(paths)
    try:
        fresh = paths.home / "store.sqlite.rebuilding"
        for leftover in sqlite_files(fresh):  # an interrupted rebuild's, never the store
            leftover.unlink(missing_ok=True)
        os.close(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        store = Store(fresh)
        try:
            result = _fill(paths, store)
            # One self-contained file to rename (the next daemon turns WAL back on).
            store.db.execute("PRAGMA journal_mode=DELETE")
        finally:
            store.close()
        result.aside = _move_aside(paths.store)
        os.replace(fresh, paths.store)
        paths.start_error.unlink(missing_ok=True)
        return result
    finally:
        lock.close()


def _move_aside(store: Path) -> Path | None:
    """Rename the store and its WAL files to ``store.sqlite.old-<time>``; None if none."""
    if not any(p.exists() for p in sqlite_files(store)):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = store.with_name(f"{store.name}.old-{stamp}"), 1
    while any(p.exists() for p in sqlite_files(aside)):
        n += 1
        aside = store.with_name(f"{store.name}.old-{stamp}-{n}")
    for src, dst in zip(sqlite_files(store), sqlite_files(aside), strict=True):
        if src.exists():
            os.rename(src, dst)
    return aside


def _fill(paths: StatePaths, store: Store) -> Rebuilt:
    result = Rebuilt()
    found: list[tuple[float, RunDir, dict[str, Any]]] = []
    try:
        dirs = sorted(p for p in paths.runs.iterdir() if p.is_dir())
    except FileNotFoundError:
        dirs = []
    for path in dirs:
        rundir = RunDir(path)
        launch = read_json(rundir.launch)
        if not isinstance(launch, dict) or not isinstance(launch.get("workload"), str):
            if not rundir.offline.exists():  # offline runs: the next daemon imports them
                result.skipped.append(path.name)
            continue
        created = launch.get("created")
        if not isinstance(created, int | float):  # a launch.json from before it said so
            created = path.stat().st_mtime
        found.append((float(created), rundir, launch))
    for created, rundir, launch in sorted(found, key=lambda f: f[0]):
        result.points += _restore_run(paths, store, rundir, launch, created)
        result.runs += 1
    _restore_queues(paths, store)
    _close_rounds(store)
    _newest_searches(store)
    return result


def _newest_searches(store: Store) -> None:
    """Give every run of a searched sweep the rule its newest run was made with: a
    ``sweep --more`` rewrote the launch.json of the sweep's last run (and wrote it into
    those made after), not of the older runs, which would keep the trials they had."""
    newest: dict[str, str] = {}
    for sweep, rule in store.db.execute(
            "SELECT sweep, search FROM runs WHERE sweep IS NOT NULL AND search IS NOT NULL "
            "ORDER BY created, rid"):
        newest[str(sweep)] = str(rule)
    for sweep, rule in newest.items():
        store.set_search(sweep, json.loads(rule))


def _close_rounds(store: Store) -> None:
    """Mark every PBT round with values judged: whether it was is not in the run
    directories, and judging one twice would replace runs on values long past (a
    round not judged yet is skipped: the population goes on to the next)."""
    rules = store.db.execute(
        "SELECT DISTINCT sweep, early_stop FROM runs WHERE sweep IS NOT NULL "
        "AND early_stop IS NOT NULL").fetchall()
    for sweep in {str(sweep) for sweep, rule in rules
                  if isinstance(sweep_rule(json.loads(rule)), PbtRule)}:
        steps = store.db.execute("SELECT DISTINCT step FROM rungs WHERE sweep = ?", (sweep,))
        for (step,) in steps.fetchall():
            store.close_round(sweep, int(step))


def _restore_queues(paths: StatePaths, store: Store) -> None:
    """The queues' settings as last copied to queues.json (a bad entry is left out)."""
    saved = read_json(paths.queues)
    if not isinstance(saved, dict):
        return
    for name, queue in saved.items():
        if not isinstance(name, str) or not isinstance(queue, dict):
            continue
        fields = {
            key: queue[key] for key in QUEUE_FIELDS
            if isinstance(queue.get(key), str if key == "reason" else int)
        }
        store.set_queue(name, **fields)


def _restore_run(
    paths: StatePaths, store: Store, rundir: RunDir, launch: dict[str, Any], created: float
) -> int:
    """Store one run: its row, every point of its spool, then its last state. Returns points."""
    run_id = rundir.path.name
    config: dict[str, Any] = launch["config"] if isinstance(launch.get("config"), dict) else {}
    # 0: written when it was queued, and it never started (older files without one: 1).
    generation = launch.get("generation")
    generation = generation if isinstance(generation, int) and generation >= 0 else 1
    steps = config.get("steps")
    store.create_run(
        {
            "id": run_id,
            "name": unique_name(name_from(str(launch.get("name") or run_id)), store.name_taken),
            "workload": launch["workload"],
            "config": config,
            "state": RunState.STARTING.value,
            "device": str(launch.get("device") or "cpu"),
            "cwd": str(launch.get("cwd") or rundir.path),
            "created": created,
            "parent_id": launch.get("parent_id") or _parent_from(paths, launch, run_id),
            "fork_step": launch.get("fork_step"),
            "restart_of": restart if isinstance(restart := launch.get("restart_of"), str)
            else None,
            "total_steps": steps if isinstance(steps, int) else None,
            "released": False,
            **_divergence(launch),
            **_queue_fields(launch),
            **_early_stop(launch),
            **_search(launch),
            **_fault_fields(launch),
            **read_annotations(rundir),
        },
        REBUILT,
    )
    killed = killed_at(rundir)
    if generation == 0 and killed is not None:  # killed in its queue: it never ran
        when, why = killed
        store.set_state(run_id, RunState.KILLED, f"{REBUILT}: {why}", ended=when,
                        exit_reason=why)
        return 0
    if generation == 0:  # it waited in its queue: it waits there again
        start_from = launch.get("launch_from")  # a fork: its parent's checkpoint
        if isinstance(start_from, str) and not Path(start_from).exists():
            why = f"the checkpoint it was to start from is gone ({start_from})"
            store.set_state(run_id, RunState.FAILED, f"{REBUILT}: {why}", ended=time.time(),
                            exit_reason=why)
            return 0
        fork_start: dict[str, Any] = {} if not isinstance(start_from, str) else {
            "launch_from": start_from, "step": launch.get("fork_step") or 0}
        store.set_state(run_id, RunState.QUEUED, f"{REBUILT}: queued", queue_pos=created,
                        **fork_start)
        return 0
    spool = _read_spool(store, run_id, rundir.spool, _rung_watch(launch, config))
    state, fields = _last_state(rundir, generation, spool)
    if killed is not None and (state in (RunState.FAILED, RunState.KILLED)
                               or fields.get("released")):
        # Killed, not failed (a worker exits 143 on SIGTERM), or killed while released.
        state = RunState.KILLED
        fields.update(exit_reason=killed[1], stderr_tail=None, released=False,
                      ended=fields.get("ended") or killed[0])
    fields.update(generation=generation, step=spool.step, control_seq=_lines(rundir.control))
    if spool.total is not None:
        fields["total_steps"] = spool.total
    store.set_state(run_id, state, f"{REBUILT}: {fields.get('exit_reason') or state.value}",
                    **fields)
    if state.terminal:
        store.seal_metrics(run_id)
    return spool.points


@dataclass
class _Spool:
    points: int = 0
    step: int = 0
    total: int | None = None
    last: str | None = None  # the last state record's state
    ending: dict[str, Any] = field(default_factory=dict)  # its released/finished record
    error: str | None = None


def _rung_watch(launch: dict[str, Any], config: dict[str, Any]) -> tuple[str, RungWatch] | None:
    """A sweep's run's sweep and a watch of its rungs, as the daemon made one at its
    launch (its early-stopping or PBT rule, counted from its fork step); None if it
    has none."""
    sweep, rule = launch.get("sweep"), _early_stop(launch).get("early_stop")
    if not isinstance(sweep, str) or rule is None:
        return None
    steps, start = config.get("steps"), launch.get("fork_step")
    return sweep, RungWatch(sweep_rule(rule), steps if isinstance(steps, int) else None,
                            start=start if isinstance(start, int) else 0)


def _read_spool(store: Store, run_id: str, path: Path,
                rungs: tuple[str, RungWatch] | None = None) -> _Spool:
    """Store every point of a spool, in order, with the offset read up to (as the daemon does),
    and with ``rungs``, the run's value at each rung it passed (as the daemon records them).

    Lines are decoded and folded as the daemon folds them (``SpoolBatch``), so what
    it would skip (and count) is skipped and counted here too.
    """

    def store_points(batch: SpoolBatch, offset: int) -> None:
        store.add_metrics(run_id, batch.points, offset, batch.step, batch.skipped)
        if rungs is not None:
            sweep, watch = rungs
            for rung, value in watch.check(batch.points):
                store.record_rung(sweep, rung, run_id, value)

    seen = _Spool()
    batch = SpoolBatch()
    offset, drained = 0, False
    while not drained:
        read = read_lines(path, offset, SPOOL_READ_BYTES)
        # A record still being written is left out: the daemon reads it later.
        drained = read.drained or not read.lines
        for raw in read.lines:
            offset += len(raw)
            record = decode_record(raw)
            if not batch.fold(record):
                rewind = rewinds_at(record)
                if rewind is not None:
                    # A generation that went on from a checkpoint logs its points from
                    # there again: the daemon dropped those after it (``rewind_metrics``).
                    store_points(batch, offset)
                    seen.points += len(batch.points) - store.rewind_metrics(run_id, rewind)
                    batch = SpoolBatch(step=batch.step)
                _note(record, seen, batch)
            if len(batch.points) >= BATCH_POINTS:
                store_points(batch, offset)
                seen.points += len(batch.points)
                batch = SpoolBatch(step=batch.step)
    store_points(batch, offset)
    seen.points += len(batch.points)
    seen.step = batch.step
    return seen


def _note(record: SpoolRecord, seen: _Spool, batch: SpoolBatch) -> None:
    """Keep what a state or error record says about how the run went."""
    if isinstance(record, ErrorRecord):
        seen.error = record.message
    elif isinstance(record, StateRecord):
        seen.last = record.state
        batch.step = steps_after(batch.step, record)
        if record.state == "running" and record.total is not None:
            seen.total = record.total
        if record.state in ("released", "finished"):
            seen.ending = {"state": record.state, "checkpoint": record.checkpoint}


def _last_state(rundir: RunDir, generation: int, spool: _Spool) -> tuple[RunState, dict[str, Any]]:
    """A run's state as its files tell it, with the fields that go with it."""
    done = read_json(rundir.exit)
    checkpoint = spool.ending.get("checkpoint")
    if not (isinstance(done, dict) and done.get("generation") == generation):
        worker = read_json(rundir.worker)
        if not (isinstance(worker, dict) and worker.get("generation") == generation):
            return RunState.STARTING, {"checkpoint": checkpoint}
        # Still going, or died unrecorded: the next daemon adopts it and finds out which.
        state = RunState.PAUSED if spool.last == "paused" else RunState.RUNNING
        return state, {"pid": worker.get("pid"), "pgid": worker.get("pgid"),
                       "pid_start": worker.get("create_time"), "checkpoint": checkpoint}
    code = int(done.get("returncode", -1))
    fields: dict[str, Any] = {"ended": done.get("time"), "exit_code": code,
                              "checkpoint": checkpoint}
    if code == 0 and spool.last == "released":
        return RunState.PAUSED, {"released": True, "checkpoint": checkpoint}
    if code == 0:
        return RunState.FINISHED, {**fields, "exit_reason": "finished"}
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        reason = f"killed by signal {name}"
        user_kill = -code in (signal.SIGTERM, signal.SIGKILL)  # what 'traintop kill' sends
        state = RunState.KILLED if user_kill else RunState.FAILED
    else:
        reason, state = spool.error or f"exited with code {code}", RunState.FAILED
    tail = stderr_tail(rundir.stderr) if state is RunState.FAILED else None
    return state, {**fields, "exit_reason": reason, "stderr_tail": tail}


def _parent_from(paths: StatePaths, launch: dict[str, Any], run_id: str) -> str | None:
    """A fork's parent, from the checkpoint its first generation resumed from (old launch.json)."""
    source = launch.get("resume_from")
    if int(launch.get("generation") or 1) != 1 or not isinstance(source, str):
        return None
    parent = Path(source).parent.parent
    if parent.parent != paths.runs or parent.name == run_id:
        return None
    return parent.name


def _lines(path: Path) -> int:
    """How many commands a control file holds (the next one is numbered after them)."""
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _queue_fields(launch: dict[str, Any]) -> dict[str, Any]:
    """The run's queue, priority, --after, GPUs and sweep, where launch.json says them well."""
    kinds: dict[str, type | tuple[type, ...]] = {
        "queue": str, "priority": int, "after_id": str, "gpus": (int, float), "sweep": str,
    }
    return {
        key: launch[key] for key in QUEUE_RECORD
        if isinstance(launch.get(key), kinds[key]) and not isinstance(launch[key], bool)
    }


def _fault_fields(launch: dict[str, Any]) -> dict[str, Any]:
    """Its checkpoint interval and retries, as launch.json has them (bad ones: none)."""
    every = CheckpointEvery.from_wire(launch.get("checkpoint_every"))
    retries = launch.get("retries")
    return {"checkpoint_every": None if every is None else every.wire(),
            "retries": retries if type(retries) is int and 0 <= retries <= MAX_RETRIES else 0}


def _early_stop(launch: dict[str, Any]) -> dict[str, Any]:
    """A sweep's run's early-stop (or PBT) rule, if launch.json holds one that is right
    (the values at its rungs are made again from its spool: ``_rung_watch``)."""
    try:
        rule = sweep_rule(launch["early_stop"]) if launch.get("early_stop") else None
    except ValueError:
        return {}
    return {} if rule is None else {"early_stop": rule.wire()}


def _search(launch: dict[str, Any]) -> dict[str, Any]:
    """A searched sweep's run's search rule, if launch.json holds one that is right."""
    try:
        rule = SearchRule.from_wire(launch["search"]) if launch.get("search") else None
    except ValueError:
        return {}
    return {} if rule is None else {"search": rule.wire()}


def _divergence(launch: dict[str, Any]) -> dict[str, Any]:
    """The run's divergence watch, if launch.json says it (older ones do not: the default)."""
    if "divergence_factor" not in launch:
        return {}
    factor = launch["divergence_factor"]
    if factor is None or (is_number(factor) and factor > 1):
        return {"divergence_factor": factor}
    return {}
