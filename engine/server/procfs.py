"""Linux's ``/proc``, read directly: what the daemon asks of hundreds of processes
every second (is it still the run's process; its CPU, memory, threads; what it started)."""

from __future__ import annotations

import os
import sys

import psutil

HAS_PROC = sys.platform.startswith("linux") and os.path.isdir("/proc/self/task")


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or None once it is gone.

    Counting from 0: state 0, ppid 1, pgrp 2, utime 11, stime 12, threads 17,
    start (clock ticks after boot) 19, rss (pages) 21.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces and parentheses itself.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields if len(fields) > 21 else None


def _lists_children() -> bool:
    me = os.getpid()
    return HAS_PROC and os.path.exists(f"/proc/{me}/task/{me}/children")


# Kernels built without CONFIG_PROC_CHILDREN have no ``children`` files.
HAS_CHILDREN = _lists_children()


def descendants(root: int, every_thread: bool = True) -> list[int]:
    """``root`` and every process under it, parents before children; [] once it is gone.

    Followed down each thread's ``children`` list, so a process started by any
    thread is found, at a few small reads per process: a scan of every process
    on the machine (psutil's ``children``) costs that for each process there is.
    ``every_thread=False`` reads the main thread's list alone (a child started by
    another thread is missed while that thread lives), one read a process.
    Where the kernel keeps no such lists, psutil does the scan.
    """
    if not HAS_CHILDREN:
        try:
            return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
        except psutil.Error:
            return []
    found: list[int] = []
    seen: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task") if every_thread else [str(pid)]
        except OSError:
            continue  # exited
        listed = False
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                    todo.extend(int(child) for child in file.read().split())
                listed = True
            except OSError:
                continue  # the thread ended
        if listed:
            found.append(pid)
    return found
