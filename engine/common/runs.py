"""The run model: states, ids, and which actions each state allows."""

from __future__ import annotations

import secrets
import signal
import unicodedata
from collections.abc import Callable
from enum import StrEnum

# Lower-case letters and digits without the easily confused 0/o, 1/l.
_ID_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"
ID_LENGTH = 6
# Seconds between a kill's SIGTERM and its SIGKILL unless the request names others.
DEFAULT_KILL_GRACE = 10.0
# A run is paused when its loss exceeds this multiple of its EMA. A healthy run's
# batch loss seldom reaches 2-3x its recent mean (a hard batch, a warm-up bump); a
# diverging one grows by orders of magnitude within a few steps. 10x lets the noise
# pass with a wide margin and still stops a blow-up a step or two after it starts.
DEFAULT_DIVERGENCE_FACTOR = 10.0


class RunState(StrEnum):
    """Life cycle: queued -> starting -> running <-> paused -> finished | failed | killed."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def terminal(self) -> bool:
        """Whether the run has ended: finished, failed or killed (a failed one may be resumed)."""
        return self in (RunState.FINISHED, RunState.FAILED, RunState.KILLED)


class ActionError(Exception):
    """A request that is well-formed but not possible now (wrong state, unknown run)."""


# Names show in a table column, in paths and in every reply about a run.
MAX_NAME_LENGTH = 100
MAX_TAG_LENGTH = 40
MAX_TAGS = 20  # a run's; more is a label system, not tags
MAX_NOTE_LENGTH = 2000


def _word_problem(word: str, what: str, limit: int) -> str | None:
    """Why ``word`` cannot be a ``what`` (one word, at most ``limit`` characters,
    printable), or None if it can."""
    if not word.strip() or any(c.isspace() for c in word):
        return f"invalid {what} {word[:limit]!r}: it must be one word"
    if len(word) > limit:
        return f"{what} is {len(word)} characters long; the limit is {limit}"
    if any(unicodedata.category(c).startswith("C") for c in word):
        return f"invalid {what} {word!r}: it holds control characters"
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run, or None if it can."""
    return _word_problem(name, "run name", MAX_NAME_LENGTH)


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` cannot tag a run, or None if it can."""
    return _word_problem(tag, "tag", MAX_TAG_LENGTH)


def note_problem(note: str) -> str | None:
    """Why ``note`` cannot be a run's note, or None: printable (lines and tabs allowed)."""
    if len(note) > MAX_NOTE_LENGTH:
        return f"note is {len(note)} characters long; the limit is {MAX_NOTE_LENGTH}"
    if any(unicodedata.category(c).startswith("C") and c not in "\n\t" for c in note):
        return "the note holds control characters"
    return None


def name_from(text: str, fallback: str = "run") -> str:
    """A valid name base made from a script or command name (controls dropped, cut short)."""
    kept = "".join(
        c for c in "-".join(text.split()) if not unicodedata.category(c).startswith("C")
    )
    return kept[: MAX_NAME_LENGTH - 8] or fallback  # room for a "-12345" suffix


def unique_name(
    base: str, taken: Callable[[str], bool], bare: bool = True, separator: str = "-"
) -> str:
    """A name no run has: ``base`` itself if free (and ``bare``), else the first free ``base-N``
    (``base`` + ``separator`` + N).

    Numbers start at 2 after a bare ``base`` (``demo``, ``demo-2``), at 1 when every
    name is numbered (``train-1``, ``train-2``).
    """
    if bare and not taken(base):
        return base
    n = 2 if bare else 1
    while taken(f"{base}{separator}{n}"):
        n += 1
    return f"{base}{separator}{n}"


def new_run_id() -> str:
    """A short random id that is easy to type."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))


def check_action(action: str, state: RunState, released: bool) -> None:
    """Raise ActionError unless ``action`` makes sense for a run in ``state``."""
    allowed = {
        "pause": state in (RunState.RUNNING, RunState.STARTING),
        "release": state in (RunState.RUNNING, RunState.STARTING)
        or (state is RunState.PAUSED and not released),
        # A failed run goes on from its last complete checkpoint, if it has one.
        "resume": state in (RunState.PAUSED, RunState.FAILED),
        "kill": not state.terminal,
        "fork": state in (RunState.RUNNING, RunState.PAUSED, RunState.FINISHED, RunState.FAILED),
        # Its files and points go for good: never under a process that may still write them.
        "remove": state.terminal,
    }[action]
    if not allowed:
        extra = " (released)" if released and state is RunState.PAUSED else ""
        hint = "; kill it first" if action == "remove" else ""
        if state is RunState.QUEUED and action in ("pause", "release"):
            hint = "; it waits for its turn: 'traintop queue QUEUE --pause' holds its queue"
        raise ActionError(f"cannot {action} a run that is {state.value}{extra}{hint}")


def exit_text(reason: str | None, code: int | None) -> str | None:
    """How a run ended, said the same way by ``show``, ``wait``, the TUI's details and its
    notices: the reason (``killed by user with SIGINT``), then, once, how the process
    itself ended: its exit code, or the signal that ended it. None: it has not ended."""
    if not reason:
        return None
    if code is None or (code == 0 and reason == "finished"):
        return reason
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return reason if name in reason else f"{reason}; ended by {name}"
    return reason if reason == f"exited with code {code}" else f"{reason}; exit code {code}"


def checkpoints_removed_said(run_id: str) -> str:
    """Why a run whose checkpoints were removed cannot go on, and what can be done."""
    return (f"its checkpoints were removed (traintop rm --checkpoints); 'traintop restart "
            f"{run_id}' trains it again from step 0")


def stopped_as(stopped_early: str) -> str:
    """How a run its sweep's rule stopped is named in a word, by the reason stored:
    'replaced' (PBT), 'diverged' (its loss), else 'stopped early' (a rung)."""
    return next((word for word in ("replaced", "diverged") if stopped_early.startswith(word)),
                "stopped early")


# Said where a run's output would show, for a script that attached itself (traintop.init):
# it prints to the terminal it was started from, and nothing makes a copy.
ATTACHED_OUTPUT = ("an attached script prints to the terminal it runs in: traintop keeps no "
                   "copy of its output")
