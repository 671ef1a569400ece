"""Fair shares of the CPU cores: each run training on the CPU gets its part, whoever started it.

Why: a run's threads that spin while they wait (libgomp's default, in any
process the engine did not start) starve the runs beside them. Measured on 2
cores (``bench/fair_cores.py``): an attached script went from 27 to 2,000 ms
per iteration as soon as its fork started.

How, looked at every ``SHARE_INTERVAL`` seconds, for the runs in state
``running`` on the CPU, in the order the supervisor follows them:

* ``split_cores``: n runs on c cores get disjoint blocks of cores (sizes c//n
  or one more) and as many threads as their block has cores. With more runs
  than cores, each gets every core and one thread: pinning three runs to two
  cores would leave one run a core to itself, while the kernel shares time
  evenly among equal threads.
* The daemon sets the affinity of every thread of the run's process and its
  descendants (``/proc/PID/task``): that works for any program, a wrapped
  command included, and threads or processes started later inherit it.
* A process that reads ``control.jsonl`` (the Run API: workers and
  ``traintop.init`` scripts) is sent ``threads`` with its count, and sets its
  torch threads at its next step (``engine.run.thread_share``). A wrapped
  command cannot be asked: its affinity alone keeps it to its cores.
* A run paused or ended is not counted: the others get its cores at the next
  look. A run placed on a GPU (``cuda...``) is neither counted nor touched:
  its work is on the GPU, and its data loaders need cores that a CPU share
  would cut. A wrapped command (device unknown) counts.
* A process whose affinity someone else set is left alone from then on, not
  fought: one found not on the daemon's own cores (``taskset``), or later on
  other cores than the ones it was given (it pinned itself). Whether a script
  chose its own thread count is judged in the script (see ``thread_share``).
  In memory only: after a daemon restart, a run the last daemon pinned looks
  pinned by its user and keeps its cores until it ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.common.runs import RunState
from engine.server.backends import Host
from engine.server.live_run import LiveRun
from engine.server.procfs import descendants
from engine.server.store import Store

log = logging.getLogger("traintop.cores")

# How often the shares are looked at: a fork's cores come within about this long.
SHARE_INTERVAL = 0.5
# Passes over a process's threads: one started while the others were set gets the next.
PIN_PASSES = 3
# The most time one look spends giving shares (500 runs attached at once need ~0.3 s):
# the rest wait for the next tick, so the daemon answers in between.
SHARE_BUDGET_S = 0.02

# A process, across pid reuse: its pid and start time.
ProcessKey = tuple[int, float | None]


@dataclass(frozen=True)
class Share:
    """The cores a run may use and how many threads it should run on them."""

    cpus: tuple[int, ...]
    threads: int


def split_cores(run_ids: Sequence[str], cpus: Sequence[int]) -> dict[str, Share]:
    """Each run's share of ``cpus``: disjoint blocks, or all of them and 1 thread if too many."""
    if len(run_ids) > len(cpus):
        return {run_id: Share(tuple(cpus), 1) for run_id in run_ids}
    shares: dict[str, Share] = {}
    start = 0
    for i, run_id in enumerate(run_ids):
        size = len(cpus) // len(run_ids) + (1 if i < len(cpus) % len(run_ids) else 0)
        shares[run_id] = Share(tuple(cpus[start : start + size]), size)
        start += size
    return shares


def on_cpu(run: Mapping[str, Any]) -> bool:
    """Does the run train on the CPU? Every run not placed on a GPU counts.

    A wrapped command's device is unknown (``-``): it counts, since whatever
    else it does, it runs on cores.
    """
    return not str(run.get("device") or "").startswith("cuda")


def pin(pid: int, cpus: Sequence[int]) -> None:
    """Put every thread of ``pid`` and of its descendants on ``cpus`` (gone ones are skipped)."""
    for proc in descendants(pid):
        _pin_threads(proc, set(cpus))


def _pin_threads(pid: int, cpus: set[int]) -> None:
    """Set the affinity of each thread of one process (a thread that ended is skipped)."""
    for _ in range(PIN_PASSES):
        changed = False
        try:
            tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return
        for tid in tids:
            with contextlib.suppress(OSError):
                if os.sched_getaffinity(tid) != cpus:
                    os.sched_setaffinity(tid, cpus)
                    changed = True
        if not changed:
            return


def widen_own_affinity() -> list[int]:
    """Let this process (and what it starts) run on every core it may, and return them.

    A daemon started on demand inherits the affinity of whatever started it,
    and that may be a script its user pinned to one core (``taskset``): the
    runs' cores are the machine's, not that script's. The kernel keeps the
    mask within the cores a cpuset allows. Every thread of the daemon is
    widened: a process takes the mask of the thread that starts it.
    """
    _pin_threads(os.getpid(), set(range(os.cpu_count() or 1)))
    return sorted(os.sched_getaffinity(0))


class CoreShares:
    """Gives each CPU run its share of the daemon's cores, and remembers what it gave."""

    def __init__(self) -> None:
        # Where affinity cannot be set (not Linux), only thread counts are shared.
        self.can_pin = hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")
        self.cpus = widen_own_affinity() if self.can_pin else list(range(os.cpu_count() or 1))
        self.given: dict[str, tuple[ProcessKey, Share]] = {}
        self.hands_off: dict[str, ProcessKey] = {}  # runs whose process chose its own cores
        self._next = 0.0
        self._failing: str | None = None

    def tick(self, live: Mapping[str, LiveRun], store: Store, host: Host,
             budget: float = SHARE_BUDGET_S) -> None:
        """Share the cores anew if it is time; a failure is logged once, then retried.

        Works for about ``budget`` seconds; shares left to give are given from the
        next tick on, without waiting for the next look.
        """
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + SHARE_INTERVAL
        try:
            if not self._share(live, store, host, now + budget):
                self._next = now
            self._failing = None
        except Exception as exc:  # sharing cores must never stop the runs being followed
            if self._failing != repr(exc):
                self._failing = repr(exc)
                log.exception("sharing the cores failed")

    def _share(self, live: Mapping[str, LiveRun], store: Store, host: Host,
               deadline: float) -> bool:
        """Give each counted run its share; False when ``deadline`` came first."""
        # Only ids and devices: full rows (their configs decoded) are read for the runs
        # whose share changes, which at 500 live runs is seldom any.
        running = store.devices_in_state(RunState.RUNNING.value)
        counted: list[tuple[str, LiveRun, ProcessKey]] = []
        for run_id, proc in live.items():
            device = running.get(run_id)
            if device is None or proc.pid is None or not on_cpu({"device": device}):
                continue
            key = (proc.pid, proc.pid_start)
            if self.hands_off.get(run_id) == key:
                continue
            if self._set_by_someone_else(run_id, key):
                log.info("run %s: its process chose its own cores; left as it is", run_id)
                self.hands_off[run_id] = key
                continue
            counted.append((run_id, proc, key))
        shares = split_cores([run_id for run_id, _, _ in counted], self.cpus)
        pinned: dict[int, Share] = {}  # runs attached from one script share its process
        gave = 0
        for run_id, proc, key in counted:
            share = shares[run_id]
            if self.given.get(run_id) == (key, share) or not proc.backend.alive(proc):
                continue
            if gave and time.monotonic() > deadline:
                return False  # (one is given at each call at least, so it moves on)
            row = store.get_run(run_id)
            if row is None:
                continue
            assert proc.pid is not None
            if self.can_pin and pinned.get(proc.pid) != share:
                pin(proc.pid, share.cpus)
                pinned[proc.pid] = share
            if proc.backend.reads_control:
                host.send_control(row, "threads", str(share.threads))
            self.given[run_id] = (key, share)
            gave += 1
            log.info("run %s: cores %s, %d threads", run_id, share.cpus, share.threads)
        for known in (self.given, self.hands_off):
            for gone in set(known) - set(live):
                del known[gone]
        return True

    def _set_by_someone_else(self, run_id: str, key: ProcessKey) -> bool:
        """Is the process on other cores than the daemon put it on (or, new, than its own)?"""
        if not self.can_pin:
            return False
        try:
            current = os.sched_getaffinity(key[0])
        except OSError:
            return False  # gone: the supervisor will see it end
        given = self.given.get(run_id)
        expected = given[1].cpus if given is not None and given[0] == key else self.cpus
        return current != set(expected)
