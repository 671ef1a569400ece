"""The queues: which queued runs start now, and why the others wait.

Every run goes through a queue (``default`` unless named). A queued run starts
when all of these hold, checked in this order:

- its queue is not paused, and the run it waits for (``--after``) has finished
  (one that failed or was killed fails it too, as pueue does);
- its queue has a free slot: fewer live runs in it than its ``parallel`` (a
  paused run keeps its slot, one paused with its memory released does not);
- it fits on the GPUs (``engine.server.placement``) when it asks for any.

A run paused by the divergence watch keeps its slot and memory only while no
queued run needs them: a pass that finds runs short of a slot in its queue (or,
for a run on a GPU, short of GPU room) has it released, as ``pause --release``
would, so a blow-up at 3 a.m. does not stall the queue until morning.

Runs are taken by priority, then in the order they were queued. A run that
does not fit on a GPU now lets a smaller one behind it in the same queue start
(backfill); a run without a slot stops its queue's line. A pass reads the
store, so queues and their order are exactly as durable as the store, across
daemon restarts; it runs when something changed and at least once a second
(GPU memory frees up by itself).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from engine.common.runs import RunState, name_problem
from engine.server.placement import GpuRoom, Placement, place, rooms_from
from engine.server.store import Store

log = logging.getLogger("traintop.scheduler")

DEFAULT_QUEUE = "default"
# The default queue's number of slots where the user set none: this many runs at
# once, else one per core this process may use.
SLOTS_ENV = "TRAINTOP_CPU_SLOTS"
# Seconds between passes when nothing asks for one sooner.
PASS_INTERVAL = 1.0
# The states in which a run holds its slot (a released pause does not).
HOLDING = (RunState.STARTING.value, RunState.RUNNING.value, RunState.PAUSED.value)

# Memory per GPU (total, used; None where unknown) and the GPU bytes each run holds now.
GpuView = Callable[[], tuple[Mapping[int, tuple[int | None, int | None]], Mapping[str, int]]]
# Starts a queued run on the GPUs chosen for it (none for a CPU run).
Launcher = Callable[[dict[str, Any], tuple[int, ...]], None]
# Releases a run paused for divergence, saying who waits for what it holds.
Releaser = Callable[[dict[str, Any], str], None]


def _full(queue: str) -> str:
    """How the reason of a run short of a slot in ``queue`` begins."""
    return f"queue {queue} full, "


def slot_wait(queue: str, running: int, limit: int) -> str:
    """Why a run short of a slot waits: what 'ls' cuts to 40 characters says it first."""
    return f"{_full(queue)}{running}/{limit} running"


def _waiting(count: int) -> str:
    return "1 run waits" if count == 1 else f"{count} runs wait"


def default_parallel() -> int:
    """The default queue's slots: ``$TRAINTOP_CPU_SLOTS``, else the cores this process may use."""
    text = os.environ.get(SLOTS_ENV, "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def holding_slots(store: Store) -> list[dict[str, Any]]:
    """The runs that hold a slot of their queue: live ones, a pause with its memory kept."""
    return [
        r for r in store.runs_in_states(HOLDING)
        if not (r["state"] == RunState.PAUSED and r["released"])
    ]


def queue_problem(name: str) -> str | None:
    """Why ``name`` cannot name a queue (the rules of run names), or None if it can."""
    problem = name_problem(name)
    return None if problem is None else problem.replace("run name", "queue name")


def queue_limit(queue: Mapping[str, Any] | None) -> int | None:
    """A queue's number of slots (None: no limit). One never given a limit has the
    default queue's: a run sent to a queue with a misspelt name does not start with
    every other run sent there, all at once."""
    if queue is not None and queue.get("parallel") is not None:
        return int(queue["parallel"]) or None  # 0: no limit, as asked
    return default_parallel()


def gpu_ids(device: str | None) -> tuple[int, ...]:
    """The GPUs a device string names: ``cuda:3`` -> (3,), ``cuda:0,1`` -> (0, 1)."""
    if not device or not device.startswith("cuda:"):
        return ()
    try:
        return tuple(int(i) for i in device[5:].split(","))
    except ValueError:
        return ()


def gpu_ask(run: Mapping[str, Any]) -> float:
    """How much GPU a run asks for: its ``gpus``, else a whole GPU if its device is one."""
    if run.get("gpus") is not None:
        return float(run["gpus"])
    return 1.0 if str(run.get("device") or "").startswith("cuda") else 0.0


class Scheduler:
    """Starts queued runs when their queue and the GPUs have room; says why others wait."""

    def __init__(
        self, store: Store, launch: Launcher, announce: Callable[[str], None]
    ) -> None:
        self.store = store
        self.launch = launch
        self.announce = announce
        self.gpu_view: GpuView = lambda: ({}, {})
        self.release_diverged: Releaser = lambda run, why: None
        self.waiting: dict[str, str] = {}  # queued run id -> why it has not started
        self._due = 0.0

    def wake(self) -> None:
        """Something changed (a run queued or ended, a queue set): pass at the next tick."""
        self._due = 0.0

    def tick(self) -> bool:
        """Run a pass if one is due; whether it ran."""
        now = time.monotonic()
        if now < self._due:
            return False
        self._due = now + PASS_INTERVAL
        self.run_pass()
        return True

    def run_pass(self) -> None:
        """Start every queued run that may start now, in order; note why the rest wait."""
        queued = self.store.waiting_runs()
        if not queued:
            self.waiting.clear()
            return
        queues = self.store.queues()
        holding = holding_slots(self.store)
        occupied = Counter(str(r["queue"]) for r in holding)
        totals, held = self.gpu_view()
        holders = [
            (gpu_ids(r["device"]), gpu_ask(r), self.expected_peak(r), held.get(r["id"], 0))
            for r in holding
        ]
        rooms = rooms_from(totals, [h for h in holders if h[0]])
        why: dict[str, str] = {}
        short: Counter[str] = Counter()  # queue -> runs waiting for a slot in it
        short_of_gpu = 0  # runs that do not fit on the GPUs now
        for run in queued:
            reason = self._blocked(run, queues, occupied)
            if reason is not None and reason.startswith(_full(str(run["queue"]))):
                short[str(run["queue"])] += 1
            placement = Placement() if reason else self._place(run, rooms)
            short_of_gpu += reason is None and placement.why is not None
            reason = reason or placement.why
            if reason is not None:
                why[run["id"]] = reason
                continue
            try:
                self.launch(self.store.get_run(run["id"]) or run, placement.gpus)
            except Exception as exc:  # the next pass tries again; the user is told why
                log.warning("could not start queued run %s: %s", run["id"], exc)
                why[run["id"]] = f"could not start: {exc}"
                continue
            occupied[str(run["queue"])] += 1
            if placement.gpus:
                peak = self.expected_peak(run)
                holders.append((placement.gpus, gpu_ask(run), peak, 0))
                rooms = rooms_from(totals, [h for h in holders if h[0]])
        self._give_room(holding, short, short_of_gpu)
        changed = {k for k in why.keys() | self.waiting.keys() if why.get(k) != self.waiting.get(k)}
        self.waiting = why
        for run_id in changed:
            self.announce(run_id)

    def has_room(self, name: str) -> bool:
        """Whether a run queued now in queue ``name`` would find a free slot there (its
        GPUs aside): the queue is not paused, and holds fewer runs than its limit."""
        queue = self.store.queues().get(name)
        if queue is not None and queue["paused"]:
            return False
        limit = queue_limit(queue)
        return limit is None or sum(
            1 for r in holding_slots(self.store) if r["queue"] == name) < limit

    def _give_room(
        self, holding: list[dict[str, Any]], short: Counter[str], short_of_gpu: int
    ) -> None:
        """Release each run paused for divergence whose slot (its queue) or GPU memory
        a queued run is waiting for."""
        for run in holding:
            if run["state"] != RunState.PAUSED or not run["diverged"]:
                continue
            queue = str(run["queue"])
            if short[queue]:
                self.release_diverged(run, f"{_waiting(short[queue])} for a slot in queue {queue}")
            elif short_of_gpu and gpu_ids(run["device"]):
                self.release_diverged(run, f"{_waiting(short_of_gpu)} for GPU room")

    def _blocked(
        self, run: dict[str, Any], queues: Mapping[str, Mapping[str, Any]], occupied: Counter[str]
    ) -> str | None:
        """Why ``run`` may not start yet for a reason other than GPUs, or None."""
        if run["awaiting"] == "checkpoint":
            return f"waiting for {run['parent_id']}'s checkpoint"
        name = str(run["queue"])
        queue = queues.get(name)
        if queue is not None and queue["paused"]:
            return f"queue {name} is paused" + (f" ({queue['reason']})" if queue["reason"] else "")
        if run["after_id"]:
            waited = self.store.get_run(run["after_id"])
            if waited is None or waited["state"] != RunState.FINISHED:
                if waited is not None and waited["state"] in (RunState.FAILED, RunState.KILLED):
                    self._fail_dependent(run, waited)
                    return f"run {waited['id']} it waited for {waited['state']}"
                return f"waiting for run {run['after_id']} to finish"
        limit = queue_limit(queue)
        if limit is not None and occupied[name] >= limit:
            return slot_wait(name, occupied[name], limit)
        return None

    def _place(self, run: dict[str, Any], rooms: list[GpuRoom]) -> Placement:
        ask = gpu_ask(run)
        named = gpu_ids(run["device"])
        return place(ask, self.expected_peak(run), rooms, named or None)

    def expected_peak(self, run: Mapping[str, Any]) -> int | None:
        """The most GPU memory a run is expected to hold: its own peak, else its parent's."""
        if run.get("gpu_peak"):
            return int(run["gpu_peak"])
        if run.get("parent_id"):
            parent = self.store.get_run(str(run["parent_id"]))
            if parent is not None and parent["gpu_peak"]:
                return int(parent["gpu_peak"])
        return None

    def _fail_dependent(self, run: dict[str, Any], waited: dict[str, Any]) -> None:
        """A run whose ``--after`` run failed or was killed fails too, saying which."""
        reason = f"run {waited['id']} it was to follow (--after) {waited['state']}"
        self.store.set_state(
            run["id"], RunState.FAILED, reason, ended=time.time(), exit_reason=reason
        )
        self.announce(run["id"])

    def run_ended(self, run: Mapping[str, Any], state: RunState) -> None:
        """A run ended: its slot is free; a failure pauses a queue that asked for it."""
        self.wake()
        if state is not RunState.FAILED:
            return
        name = str(run.get("queue") or DEFAULT_QUEUE)
        queue = self.store.queues().get(name)
        if queue is not None and queue["pause_on_failure"] and not queue["paused"]:
            reason = f"run {run['id']} failed"
            self.store.set_queue(name, paused=1, reason=reason)
            log.warning("queue %s paused: %s", name, reason)
