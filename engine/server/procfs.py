"""Linux's ``/proc/<pid>/stat``, read directly: what the daemon asks of hundreds of
processes every second (is it still the run's process; its CPU, memory, threads)."""

from __future__ import annotations

import os
import sys

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
