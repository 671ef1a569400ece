"""A run's tags and note as its directory keeps them (``annotations.json``), and when its
checkpoints were removed (``traintop rm --checkpoints``).

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
    return fields


def save_annotations(rundir: RunDir, run: dict[str, Any]) -> None:
    """Keep ``run``'s tags, note and checkpoints' removal in its directory too (none there
    yet: nothing to keep)."""
    kept = {"tags": run.get("tags") or [], "note": run.get("note"),
            "checkpoints_removed": run.get("checkpoints_removed")}
    if not any(kept.values()) and not rundir.annotations.exists():
        return
    try:
        write_json_atomic(rundir.annotations, kept)
    except OSError as exc:  # the store has them: only a rebuild would miss them
        log.warning("run %s: could not save its annotations: %s", rundir.path.name, exc)
