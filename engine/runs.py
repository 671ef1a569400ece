"""The run model: states, ids, and which actions each state allows."""

from __future__ import annotations

import secrets
from enum import StrEnum

# Lower-case letters and digits without the easily confused 0/o, 1/l.
_ID_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"
ID_LENGTH = 6


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
        return self in (RunState.FINISHED, RunState.FAILED, RunState.KILLED)


class ActionError(Exception):
    """A request that is well-formed but not possible now (wrong state, unknown run)."""


def new_run_id() -> str:
    """A short random id that is easy to type."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))


def check_action(action: str, state: RunState, released: bool) -> None:
    """Raise ActionError unless ``action`` makes sense for a run in ``state``."""
    allowed = {
        "pause": state in (RunState.RUNNING, RunState.STARTING),
        "release": state in (RunState.RUNNING, RunState.STARTING)
        or (state is RunState.PAUSED and not released),
        "resume": state is RunState.PAUSED,
        "kill": not state.terminal,
        "fork": state in (RunState.RUNNING, RunState.PAUSED, RunState.FINISHED),
    }[action]
    if not allowed:
        extra = " (released)" if released and state is RunState.PAUSED else ""
        raise ActionError(f"cannot {action} a run that is {state.value}{extra}")


# The workload of a run that wraps a command (``traintop run -- CMD``); its config
# holds the command and the optional loss pattern.
WRAPPED_WORKLOAD = "exec"


def check_wrapped_action(action: str, run_id: str) -> None:
    """Raise ActionError for what a wrapped command cannot do: it has no checkpoints."""
    if action == "fork":
        raise ActionError(
            f"run {run_id} wraps a command: traintop cannot checkpoint it, so it cannot be "
            "forked (use a train(run) function or traintop.init)"
        )
    if action == "release":
        raise ActionError(
            f"run {run_id} wraps a command: traintop cannot checkpoint it, so it cannot be "
            "paused with its memory released (a plain pause stops it in place)"
        )
