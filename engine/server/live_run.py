"""What the supervisor keeps about each run that has (or had) a process."""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.rundir.paths import RunDir
from engine.server.backends import RunBackend, ShimProcess
from engine.server.divergence import DivergenceWatch
from engine.server.output_order import OutputOrder
from engine.server.rungs import RungWatch

# publish(topic, data): send an event to the daemon's subscribers.
Publish = Callable[[str, dict[str, Any]], None]

RATE_WINDOW_S = 30.0  # a run's steps a second are measured over about this long
# Stored as exit_reason while a kill is under way, so a restarted daemon finishes it.
KILL_REASON = "kill requested"
# A kill's signals still to send: (when, on the monotonic clock; which signals).
Ladder = list[tuple[float, tuple[signal.Signals, ...]]]


@dataclass
class LiveRun:
    """A run's current generation as the supervisor follows it (a ``backends.Process``)."""

    run_id: str
    rundir: RunDir
    generation: int
    spool_offset: int
    backend: RunBackend
    step: int = 0
    pid: int | None = None
    pgid: int | None = None
    pid_start: float | None = None
    shim: ShimProcess | None = None
    since: float = field(default_factory=time.monotonic)
    dead_since: float | None = None
    alive_due: float = 0.0  # when the next look at its process is due (monotonic)
    seen_alive: bool = True  # what the last look found
    kill_ladder: Ladder | None = None  # None: no kill asked for
    kill_sent: signal.Signals | None = None  # the last signal of a kill that went out
    ending: dict[str, Any] | None = None  # the released/finished record, once seen
    error: str | None = None  # the message of an error record
    spool_size: int = -1  # the spool's size at the last disk check
    # Why the disk holds its spool back (DISK_FULL...): the worker keeps points in memory.
    held_back: str | None = None
    warned_skips: bool = False  # skipped records are logged once per run, then only counted
    failing: str | None = None  # the last unexpected error following it (logged once)
    unstored: bool = False  # points read this tick wait to be stored (``store_read``)
    divergence: DivergenceWatch | None = None  # made from its row at its first points
    diverged: str | None = None  # why it tripped, until its pause is asked for
    giving_room: bool = False  # paused for divergence, asked to release for queued runs
    resume_asked: bool = False  # resumed by its user while that release was under way
    rungs: RungWatch | None = None  # its sweep's early stopping, if the sweep has a rule
    rungs_ready: bool = False  # whether ``rungs`` was made (at its first points)
    passed: list[tuple[int, float]] = field(default_factory=list)  # rungs to judge
    stop_reason: str | None = None  # why its sweep's rule stopped it (its kill's reason)
    output: OutputOrder | None = None  # the order its stdout and stderr came in
    # (monotonic time, step) as its points were stored, a second or more apart, over
    # the last RATE_WINDOW_S or so
    progress: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    # Steps a second over that window: written here only, read by listings on reader
    # threads (one float, swapped whole). None until two stores apart in time.
    rate: float | None = None
    # The files looked at for it at every tick, as strings (made once, not per tick).
    spool_file: str = field(init=False)
    exit_file: str = field(init=False)

    def __post_init__(self) -> None:
        self.spool_file = str(self.rundir.spool)
        self.exit_file = str(self.rundir.exit)

    def stored_to(self, step: int, now: float) -> None:
        """Its points are stored up to ``step`` at ``now`` (monotonic): its rate anew."""
        marks = self.progress
        if marks and step < marks[-1][1]:
            marks.clear()  # it went back (a retry, a rewind): the old pace says nothing
        if not marks or now - marks[-1][0] >= 1.0:  # a mark a second: the deque spans 64 s
            marks.append((now, step))
        while len(marks) > 2 and now - marks[1][0] >= RATE_WINDOW_S:
            marks.popleft()
        first_t, first_step = marks[0]
        if now > first_t and step > first_step:
            self.rate = (step - first_step) / (now - first_t)

    @property
    def kill_reason(self) -> str:
        """What a killed run's exit says: who killed it, and with which signal last."""
        if self.stop_reason is not None:
            return self.stop_reason
        sent = f" with {self.kill_sent.name}" if self.kill_sent is not None else ""
        return f"killed by user{sent}"

    @property
    def killing(self) -> bool:
        """Whether a kill was asked for (its signals may not all have gone yet)."""
        return self.kill_ladder is not None

    def start_kill(self, grace: float, adopted: bool = False) -> None:
        """Plan the kill's signals from now on.

        A restarted daemon (``adopted``) cannot know which signals went out
        before: it sends only the last (SIGKILL), once ``grace`` is up.
        """
        now = time.monotonic()
        steps = self.backend.kill_ladder(grace)
        if adopted:
            self.kill_ladder = [(now + grace, steps[-1].signals)]
        else:
            self.kill_ladder = [(now + step.after, step.signals) for step in steps]

    def escalate_kill(self) -> None:
        """Send the kill's signals whose time has come; the last repeats until it is gone."""
        if self.kill_ladder is None or self.pid is None:  # not started: they go once it is
            return
        now = time.monotonic()
        due = [signals for at, signals in self.kill_ladder if at <= now]
        for signals in due:
            for sig in signals:
                self.backend.signal(self, sig)
                if sig is not signal.SIGCONT:  # sent along to wake a paused process
                    self.kill_sent = sig
        self.kill_ladder = self.kill_ladder[len(due):] or self.kill_ladder[-1:]
