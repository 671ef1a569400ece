"""Telling the terminal that runs stopped: a bell and a desktop notification.

Two escape sequences carry a desktop notification, and terminals differ in
which they read: OSC 9 (iTerm2, WezTerm, Windows Terminal, kitty, Ghostty) and
OSC 777 (rxvt-unicode, foot, VTE terminals such as GNOME Terminal). Both travel
over SSH like any other output. Inside tmux a sequence reaches the outer
terminal only wrapped in tmux's DCS passthrough (and with ``allow-passthrough``
on); the bell needs no wrapping, tmux passes it on itself.

Everything here is pure: the app decides when to tell, this module what to say
and in which bytes.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.client.events import RunInfo
from engine.client.sweep_summary import best_of, ended_line
from engine.common.format import shown
from engine.common.runs import exit_text

NOTIFY_ENV = "TRAINTOP_NOTIFY"  # on (the default), off, osc9 or osc777
ESC, BEL = "\x1b", "\a"
# A burst of endings is told once: after this long with no further ending...
QUIET_S = 2.0
# ...or this long after its first, whichever comes first (a slow trickle still gets told).
MAX_WAIT_S = 10.0
# The states a run is told about when it enters one while the app watches.
TOLD_STATES = ("finished", "failed", "paused")
# What a stop says of a run that failed and was queued again by its retries.
RETRIED = "retried"
# A stop that is a whole sweep's: its last run has ended (``Stop.sweep``).
SWEEP_ENDED = "sweep ended"
BODY_LIMIT = 200  # characters: a desktop notification is a line, not a log
_OFF_WORDS = {"off", "0", "no", "false", "none"}


def desktop_wanted(env: Mapping[str, str]) -> bool:
    """Whether the bell and desktop notifications are on (``TRAINTOP_NOTIFY`` not off)."""
    return env.get(NOTIFY_ENV, "on").strip().lower() not in _OFF_WORDS


def uses_osc777(env: Mapping[str, str]) -> bool:
    """Whether this terminal is one known to read OSC 777 rather than OSC 9.

    ``TRAINTOP_NOTIFY=osc777`` or ``osc9`` decides outright. Otherwise ``$TERM``
    naming rxvt or foot, or ``$VTE_VERSION`` (set by every VTE terminal), picks
    OSC 777; anything else gets OSC 9, which the most terminals read.
    """
    chosen = env.get(NOTIFY_ENV, "").strip().lower()
    if chosen in ("osc777", "osc9"):
        return chosen == "osc777"
    term = env.get("TERM", "")
    return term.startswith(("rxvt", "foot")) or bool(env.get("VTE_VERSION"))


def _plain(text: str, separator: bool = False) -> str:
    """``text`` with nothing that could end the sequence early: no control characters
    (ESC, BEL), and for an OSC 777 field no ``;`` (its separator)."""
    kept = "".join(c for c in text if not unicodedata.category(c).startswith("C"))
    return kept.replace(";", ",") if separator else kept


def desktop_sequence(title: str, body: str, env: Mapping[str, str]) -> str:
    """The escape sequence that shows ``title`` and ``body`` as a desktop notification.

    In tmux (``$TMUX`` set) it is wrapped in the DCS passthrough, every ESC inside
    doubled, so tmux hands it to the terminal it runs in.
    """
    body = _plain(body, separator=True)[:BODY_LIMIT]
    if uses_osc777(env):
        sequence = f"{ESC}]777;notify;{_plain(title, separator=True)};{body}{BEL}"
    else:  # OSC 9 has no title field: the title leads the text
        sequence = f"{ESC}]9;{_plain(title)}: {body}{BEL}"
    if env.get("TMUX"):
        sequence = f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ESC}\\"
    return sequence


def terminal_alert(title: str, body: str, env: Mapping[str, str]) -> str:
    """The bell, then the desktop notification: all the app writes to the terminal."""
    return BEL + desktop_sequence(title, body, env)


@dataclass(frozen=True)
class Stop:
    """One run that stopped while the app watched: finished, failed or paused itself."""

    run_id: str
    name: str
    state: str
    reason: str | None = None

    @classmethod
    def of(cls, run: RunInfo) -> Stop:
        """The stop ``run`` (as just announced) made, with why: a failure's exit reason,
        or what a paused run's condition says (e.g. the divergence that paused it). A run
        that failed and was queued again by its retries is ``retried``."""
        ended = exit_text(run.exit_reason, run.exit_code)
        if run.state == "queued" and run.retried:
            return cls(run.id, run.name, RETRIED,
                       f"{ended or 'it failed'}; retry {run.retried} of {run.retries}")
        why = {"failed": ended, "paused": run.condition}.get(run.state)
        return cls(run.id, run.name, run.state, why)

    @classmethod
    def sweep(cls, name: str, runs: Sequence[RunInfo]) -> Stop:
        """A sweep whose last run has ended, and what it came to."""
        best = best_of(runs)
        return cls("" if best is None else best[0].id, name, SWEEP_ENDED, ended_line(runs))


def summary(stops: list[Stop]) -> str:
    """One line for a batch: ``run-7 (a1b2c3) finished``, or ``30 runs ended: 28 finished,
    2 failed``; a sweep that ended first: ``sweep lr done: 12 runs: ...; best ...``."""
    said = [f"sweep {shown(s.name)} done: {s.reason}" for s in stops if s.state == SWEEP_ENDED]
    runs = [s for s in stops if s.state != SWEEP_ENDED]
    if len(runs) == 1:
        stop = runs[0]
        why = f": {stop.reason}" if stop.reason and stop.state != "finished" else ""
        said.append(f"{shown(stop.name)} ({stop.run_id}) {stop.state}{why}")
    elif runs:
        told = (*TOLD_STATES, RETRIED)
        counts = {state: sum(s.state == state for s in runs) for state in told}
        parts = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        said.append(f"{len(runs)} runs ended: {parts}")
    return "; ".join(said)


@dataclass
class StopBatch:
    """Stops gathered until the burst they came in is over (see QUIET_S, MAX_WAIT_S)."""

    pending: list[Stop] = field(default_factory=list)
    first_at: float = 0.0
    last_at: float = 0.0

    def add(self, stop: Stop, now: float | None = None) -> None:
        """One more stop, seen at ``now`` (monotonic seconds)."""
        now = time.monotonic() if now is None else now
        if not self.pending:
            self.first_at = now
        self.pending.append(stop)
        self.last_at = now

    def take_due(self, now: float | None = None) -> list[Stop]:
        """The batch, if its burst is over at ``now``; else nothing (and it keeps gathering)."""
        now = time.monotonic() if now is None else now
        if not self.pending or (
            now - self.last_at < QUIET_S and now - self.first_at < MAX_WAIT_S
        ):
            return []
        batch, self.pending = self.pending, []
        return batch
