"""A run's tags and note as its directory keeps them (``annotations.json``), when its
checkpoints were removed (``traintop rm --checkpoints``), and whether it was killed and
why (by its user, or by its sweep's rule: ``stopped_early``, an end the sweep meant).
A process's exit status cannot say it: a worker exits 143 on SIGTERM, as a script
might for reasons of its own, and a queued run killed has no process at all.

The store has them too; this copy is what ``traintop engine rebuild`` reads back.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.common.runs import note_problem, tag_problem
from engine.rundir.paths import RunDir, read_json, write_json_atomic

log = logging.getLogger(__name__)


def read_annotations(rundir: RunDir) -> dict[str, Any]:
    """The tags and note a run directory keeps, as row fields (none: an empty dict).
    Anything malformed in the file is left out rather than refused: it is a copy."""
    saved = read_json(rundir.annotations)
    if not isinstance(saved, dict):
        return {}
    fields: dict[str, Any] = {}
    tags = saved.get("tags")
    if isinstance(tags, list):
        fields["tags"] = [t for t in tags if isinstance(t, str) and tag_problem(t) is None]
    note = saved.get("note")
    if isinstance(note, str) and note and note_problem(note) is None:
        fields["note"] = note
    removed = saved.get("checkpoints_removed")
    if isinstance(removed, int | float) and not isinstance(removed, bool):
        fields["checkpoints_removed"] = float(removed)
    stopped = saved.get("stopped_early")
    if isinstance(stopped, str) and stopped:
        fields["stopped_early"] = stopped
    return fields


def killed_at(rundir: RunDir) -> tuple[float, str] | None:
    """When a kill was sent to the run and why, as its directory keeps it; None: never."""
    saved = read_json(rundir.annotations)
    killed = saved.get("killed") if isinstance(saved, dict) else None
    if not isinstance(killed, list) or len(killed) != 2:
        return None
    when, why = killed
    if isinstance(when, int | float) and not isinstance(when, bool) and isinstance(why, str):
        return float(when), why
    return None


def save_annotations(rundir: RunDir, run: dict[str, Any],
                     killed: tuple[float, str] | None = None) -> None:
    """Keep ``run``'s tags, note, checkpoints' removal and early stop in its directory too
    (none there yet: nothing to keep), and ``killed``: when a kill was sent, and why (what
    was kept before stays)."""
    kept = {"tags": run.get("tags") or [], "note": run.get("note"),
            "checkpoints_removed": run.get("checkpoints_removed"),
            "stopped_early": run.get("stopped_early"),
            "killed": list(killed) if killed else killed_at(rundir)}
    if not any(kept.values()) and not rundir.annotations.exists():
        return
    try:
        write_json_atomic(rundir.annotations, kept)
    except OSError as exc:  # the store has them: only a rebuild would miss them
        log.warning("run %s: could not save its annotations: %s", rundir.path.name, exc)
