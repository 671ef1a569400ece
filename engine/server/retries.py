"""Retries: a failed run with ``--retries`` left is taken up again by the engine.

A run crashes (an out-of-memory kill, a CUDA error, a node that rebooted under it) and
with retries left it goes back to its queue at its old place, to go on from its newest
complete checkpoint: one it wrote itself (``--checkpoint-every``), a release's, or the
one it started from (a fork's, in its parent's directory); without any, from step 0.
The points its last generation logged past that step are dropped when the next one
starts (``RunReports._rewind``): a resume replays them. A wrapped command
(``traintop run --retries``) is run again as it was: it goes on from whatever it saved
itself, and the points from the step of its first ones on are dropped then.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.rundir.checkpoint_files import fork_name, is_auto, latest_complete
from engine.rundir.paths import StatePaths, read_json
from engine.server.backends import backend_for


def restart_point(paths: StatePaths, run: dict[str, Any]) -> tuple[int, Path] | None:
    """Where a failed run can go on from, and the step there: its newest complete
    checkpoint, else the one its last launch started from (a fork's, in its parent's
    directory, or a release's); None: neither is on the disk."""
    rundir = paths.run_dir(run["id"])
    own = latest_complete(rundir.checkpoints)
    if own is not None:
        return own
    launch = read_json(rundir.launch)
    started = launch.get("resume_from") if isinstance(launch, dict) else None
    if isinstance(started, str) and Path(started).is_file():
        return int(run["fork_step"] or 0), Path(started)
    return None


def fork_point(paths: StatePaths, run: dict[str, Any]) -> tuple[int, Path] | None:
    """Where a fork of a run that failed before writing the checkpoint the fork asked for
    starts: the run's ``restart_point``, kept under a fork checkpoint's name when it is
    one of the run's own (a retried run deletes those as it writes newer ones). None:
    the run has no checkpoint, or the name could not be made."""
    point = restart_point(paths, run)
    if point is None or not is_auto(point[1]):
        return point
    step, path = point
    kept = path.with_name(fork_name(step))
    try:
        os.link(path, kept)
    except FileExistsError:
        pass  # a fork at that step already has it, or this one was made before a restart
    except OSError:
        return None
    return step, kept


def retry_point(paths: StatePaths, run: dict[str, Any]) -> tuple[int, Path | None] | None:
    """Where a failed run goes on from if it is retried: ``restart_point``, else the start
    (``(0, None)``; a wrapped command runs again). None: it is not retried (no retries
    left, a kind that cannot be, or a fork whose starting checkpoint is gone: from 0 it
    would be no fork)."""
    if int(run["retried"] or 0) >= int(run["retries"] or 0):
        return None
    if backend_for(run).refusal("retry", run["id"]) is not None:
        return None
    point = restart_point(paths, run)
    if point is not None:
        return point
    return None if run["parent_id"] is not None else (0, None)


def reruns_as_started(run: dict[str, Any]) -> bool:
    """Whether the engine takes a failed run up again by running it as it was started
    (a wrapped command, which has no checkpoint of traintop's to go on from)."""
    backend, run_id = backend_for(run), run["id"]
    return backend.refusal("restart", run_id) is not None and backend.refusal(
        "retry", run_id) is None


def retry_reason(run: dict[str, Any], step: int, checkpoint: Path | None) -> str:
    """'retry 1 of 3 after <why it failed>: from its checkpoint at step 500'."""
    if checkpoint is not None:
        where = f"from its checkpoint at step {step:,}"
    elif reruns_as_started(run):
        where = "its command runs again, to go on from what it saved itself"
    else:
        where = "from the start (it has no checkpoint)"
    return (f"retry {int(run['retried'] or 0) + 1} of {run['retries']} after "
            f"{run['exit_reason'] or 'a failure'}: {where}")
