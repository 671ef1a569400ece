"""The worker's side of a core share: torch's thread count, as the daemon sizes it.

The daemon sends ``threads`` (the count in the command's ``request`` field)
whenever the runs on the CPU change (``engine.server.cores``); it is applied at
the next step boundary. The count is capped at what the process had when the
first one came, so a run alone again gets its own default back.

A script that chose its thread count is left alone: one started with
``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set, or one that changed it after
a share was applied (its ``torch.set_num_threads`` wins from then on).
"""

from __future__ import annotations

import os
import sys

# Set in the environment, these say the user chose the thread count.
CHOSEN_BY_USER_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def sleeping_waits(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a process the engine starts: OpenMP threads sleep while they wait.

    Several runs share the cores; OpenMP threads that spin while waiting
    (libgomp's default) then starve each other: measured 1.1 vs 130 steps/s for
    three small CPU runs on 2 cores. Sleeping waits change no numerics. A
    policy the user set is kept.
    """
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


class ThreadShare:
    """Applies the daemon's thread counts to torch, unless the script chose its own."""

    def __init__(self) -> None:
        self.chosen_by_user = any(name in os.environ for name in CHOSEN_BY_USER_ENV)
        self.own: int | None = None  # torch's count when the first share came
        self.applied: int | None = None

    def apply(self, count: object) -> None:
        """Set torch's thread count to ``count`` (at most the process's own count)."""
        # A script without torch has no thread pool to size (and importing it would be slow).
        torch = sys.modules.get("torch")
        if self.chosen_by_user or torch is None:
            return
        try:
            wanted = max(1, int(str(count)))
        except ValueError:
            print(f"traintop: ignored a thread count of {count!r}", file=sys.stderr)
            return
        now = int(torch.get_num_threads())
        if self.own is None:
            self.own = now
        elif now != self.applied:
            self.chosen_by_user = True  # the script set its own since: it keeps it
            return
        target = min(wanted, self.own)
        if target != now:
            torch.set_num_threads(target)
        self.applied = target
