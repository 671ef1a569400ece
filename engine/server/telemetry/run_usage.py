"""Per-run CPU, memory and threads, summed over each run's process tree.

A run's processes are its worker, everything descending from it (data-loader
workers, compilers, ...) and anything still in its process group (an orphaned
grandchild). Finding them by scanning every process on the machine costs
about 15 microseconds a process, too much each second on a box with
thousands, so on Linux a full scan happens every ``rescan_seconds`` and each
tick in between follows the kernel's children lists down from each worker,
plus the processes already known. A GPU process no run claims is traced up
its parents before it is called someone else's.

On Linux one read of ``/proc/<pid>/stat`` gives all a process contributes
(a third of what three psutil calls cost); elsewhere psutil gives the same.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import psutil

from engine.common.telemetry import RunUsage
from engine.server.procfs import HAS_CHILDREN, HAS_PROC, descendants, stat_fields

RunRef = tuple[str, int, int]  # run id, worker pid, worker process group
_TICKS = os.sysconf("SC_CLK_TCK") if HAS_PROC else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if HAS_PROC else 4096
_MAX_DEPTH = 64


class ProcStat(NamedTuple):
    """What one process contributes, and where it sits in the tree."""

    parent: int
    group: int
    start: float  # start time: a pid with a new start time is a new process
    cpu_seconds: float
    threads: int
    rss: int


class RunUsageReader:
    """Keeps each process's CPU time between reads, so CPU % covers the time since the last tick.

    One thread only (the sampler's).
    """

    def __init__(self, rescan_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rescan = rescan_seconds
        self._clock = clock
        self._scan_due = 0.0
        self._members: dict[str, set[int]] = {}
        self._groups: dict[int, str] = {}
        self._owner: dict[int, str] = {}
        self._cpu: dict[int, tuple[float, float, float]] = {}  # pid -> (start, cpu s, when)
        self._described: dict[int, tuple[str | None, str | None]] = {}

    def read(self, runs: Iterable[RunRef], gpu_pids: Iterable[int] = ()) -> dict[str, RunUsage]:
        """Usage of every run in ``runs``; ``gpu_pids`` that descend from a run join it."""
        runs = list(runs)
        now = self._clock()
        table: dict[int, ProcStat] = {}
        full = now >= self._scan_due or not HAS_CHILDREN  # (without: a scan every time)
        if full:
            table = _scan()
            self._scan_due = now + self._rescan
        own_group = os.getpgrp()
        self._groups = {pgid: run_id for run_id, _, pgid in runs if pgid > 1 and pgid != own_group}
        children, grouped = _children_in(table) if full else ({}, {})
        walked: dict[int, set[int]] = {}  # runs attached from one script share its tree
        members: dict[str, set[int]] = {}
        for run_id, root, pgid in runs:
            if root not in walked:
                walked[root] = _descendants_in(table, children, root) if full \
                    else set(descendants(root, every_thread=False))
            found = set(walked[root])
            if full and pgid in self._groups:
                found |= grouped.get(pgid, set())
            elif not full:
                found |= self._members.get(run_id, set())
            members[run_id] = found
        self._owner = {pid: run_id for run_id, pids in members.items() for pid in pids}
        for pid in gpu_pids:
            owner = self.run_of(pid)
            if owner is not None:
                members[owner].add(pid)
        # Each process is read once, and its CPU taken over the same span for every run
        # that holds it (a script that attached several runs): each shows all of it.
        figures: dict[int, _Figures | None] = {}
        usages = {}
        for run_id, pids in members.items():
            for pid in pids:
                if pid not in figures:
                    figures[pid] = self._figures(pid, table, now)
            pids.difference_update([pid for pid in pids if figures[pid] is None])
            usages[run_id] = _sum(f for pid in pids if (f := figures[pid]) is not None)
        self._cpu = {pid: seen for pid, seen in self._cpu.items() if figures.get(pid) is not None}
        self._members = members
        return usages

    def run_of(self, pid: int) -> str | None:
        """The run ``pid`` belongs to (as of the last ``read``), else None."""
        run_id = self._owner.get(pid)
        if run_id is not None:
            return run_id
        # Not seen by the last walk (started since, or by a non-main thread): trace it up.
        current = pid
        for _ in range(_MAX_DEPTH):
            stat = _read_stat(current)
            if stat is None:
                return None
            run_id = self._owner.get(current) or self._groups.get(stat.group)
            if run_id is not None:
                self._owner[pid] = run_id
                return run_id
            if stat.parent <= 1:
                return None
            current = stat.parent
        return None

    def describe(self, pid: int) -> tuple[str | None, str | None]:
        """(user, command line) of a process, cached; None for what cannot be read."""
        cached = self._described.get(pid)
        if cached is not None:
            return cached
        user = command = None
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            with contextlib.suppress(psutil.Error):
                user = process.username()
            with contextlib.suppress(psutil.Error):
                command = " ".join(process.cmdline()) or process.name()
        if len(self._described) > 1024:
            self._described.clear()
        self._described[pid] = (user, command)
        return user, command

    def _figures(self, pid: int, table: dict[int, ProcStat], now: float) -> _Figures | None:
        """One process's (CPU %, rss, threads) since the last read; None once it is gone."""
        stat = table.get(pid) or _read_stat(pid)
        if stat is None:
            return None
        cpu_percent = 0.0
        seen = self._cpu.get(pid)
        if seen is not None and seen[0] == stat.start and now > seen[2]:
            cpu_percent = 100.0 * max(0.0, stat.cpu_seconds - seen[1]) / (now - seen[2])
        self._cpu[pid] = (stat.start, stat.cpu_seconds, now)
        return _Figures(cpu_percent, stat.rss, stat.threads)


class _Figures(NamedTuple):
    cpu_percent: float
    rss: int
    threads: int


def _sum(figures: Iterable[_Figures]) -> RunUsage:
    cpu_percent, rss, threads, processes = 0.0, 0, 0, 0
    for found in figures:
        cpu_percent += found.cpu_percent
        rss += found.rss
        threads += found.threads
        processes += 1
    return RunUsage(round(cpu_percent, 1), rss, threads, processes)


def _children_in(table: dict[int, ProcStat]) -> tuple[dict[int, list[int]], dict[int, set[int]]]:
    """Each process's children, and each process group's members, in a full scan."""
    children: dict[int, list[int]] = {}
    grouped: dict[int, set[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.parent, []).append(pid)
        grouped.setdefault(stat.group, set()).add(pid)
    return children, grouped


def _descendants_in(table: dict[int, ProcStat], children: dict[int, list[int]],
                    root: int) -> set[int]:
    """``root`` and its descendants in a full scan (``children``: ``_children_in(table)``)."""
    if root not in table:
        return set()
    found = {root}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _scan() -> dict[int, ProcStat]:
    """Every process we can see."""
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()] if HAS_PROC \
        else psutil.pids()
    table = {}
    for pid in pids:
        stat = _read_stat(pid)
        if stat is not None:
            table[pid] = stat
    return table


def _read_stat(pid: int) -> ProcStat | None:
    """One process's figures; None once it has exited (or cannot be read)."""
    if not HAS_PROC:
        return _read_psutil(pid)
    fields = stat_fields(pid)
    if fields is None:
        return None
    return ProcStat(int(fields[1]), int(fields[2]), float(fields[19]),
                    (int(fields[11]) + int(fields[12])) / _TICKS, int(fields[17]),
                    int(fields[21]) * _PAGE)


def _read_psutil(pid: int) -> ProcStat | None:
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            cpu = process.cpu_times()
            return ProcStat(process.ppid(), os.getpgid(pid), process.create_time(),
                            cpu.user + cpu.system, process.num_threads(),
                            process.memory_info().rss)
    except (psutil.Error, OSError):
        return None
