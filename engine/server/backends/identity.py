"""Is a pid still the process a run started?  Asked about every live run, every second.

A pid alone says nothing once its process is gone: the kernel hands it out
again. A run's process is therefore known by its pid and its start time, which
the worker records (psutil's ``create_time``: the boot time plus the start in
clock ticks, as a wall-clock float).

psutil answers by reading ``/proc/<pid>/stat`` and ``/proc/stat`` and building a
process object: about 0.15 ms, and several times that on a loaded machine. For
500 live runs that was most of the daemon's time. So on Linux, once psutil has
confirmed a process, its start in clock ticks is kept, and later answers read
``/proc/<pid>/stat`` alone and compare that whole number: one small read, and
no wall-clock arithmetic, so a step of the clock cannot make a live run look
gone. Elsewhere psutil answers every time.
"""

from __future__ import annotations

import psutil

from engine.server.procfs import HAS_PROC, stat_fields

# Confirmed processes remembered at most (a daemon that runs for months starts many).
_REMEMBERED = 4096
_GONE = (b"Z", b"X")  # zombie, dead: exited, not yet (or just) reaped


def _stat(pid: int) -> tuple[bytes, int] | None:
    """The process state letter and start (clock ticks after boot) of ``pid``, or None."""
    fields = stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[19]))


class Identities:
    """Says whether (pid, start time) is still a running process, cheaply after the first time."""

    def __init__(self) -> None:
        self._ticks: dict[tuple[int, float], int] = {}

    def alive(self, pid: int, started: float) -> bool:
        """Whether ``pid`` runs and is the process that started at ``started`` (not a zombie)."""
        key = (pid, started)
        ticks = self._ticks.get(key)
        if ticks is not None:
            seen = _stat(pid)
            return seen is not None and seen[1] == ticks and seen[0] not in _GONE
        try:
            found = psutil.Process(pid)
            same = (
                abs(found.create_time() - started) < 0.01
                and found.status() != psutil.STATUS_ZOMBIE
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        if same and HAS_PROC:
            seen = _stat(pid)
            if seen is not None:
                if len(self._ticks) >= _REMEMBERED:
                    self._ticks.clear()
                self._ticks[key] = seen[1]
        return same


IDENTITIES = Identities()
