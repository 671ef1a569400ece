"""What the user says of a run: its tags and its note (``traintop tag``, ``note``, ``e``).

Kept in the run's row, and in its directory's ``annotations.json`` as well, so a
store rebuilt from the run directories (``traintop engine rebuild``) keeps them.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.common.runs import MAX_TAGS, note_problem, tag_problem
from engine.rundir.paths import RunDir, read_json, write_json_atomic
from engine.server.requests import RequestError, param
from engine.server.run_lookup import RunLookup

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
    return fields


class AnnotationRequests(RunLookup):
    """The ``annotate`` request."""

    def annotate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Add tags to a run (``add``), take some off (``remove``), or set its note
        (``note``; an empty one clears it). Checked whole before anything is written."""
        run = self.resolve(params.get("run"))
        add: list[str] = param(params, "add", list, [])
        remove: list[str] = param(params, "remove", list, [])
        note: str | None = param(params, "note", str, None)
        for tag in add:
            problem = tag_problem(tag)
            if problem is not None:
                raise RequestError("bad_request", problem)
        if note is not None and (problem := note_problem(note)) is not None:
            raise RequestError("bad_request", problem)
        tags = [t for t in run["tags"] if t not in remove]
        tags += [t for t in dict.fromkeys(add) if t not in tags]
        if len(tags) > MAX_TAGS:
            raise RequestError(
                "bad_request", f"run {run['id']} would have {len(tags)} tags; the limit is "
                f"{MAX_TAGS}"
            )
        fields: dict[str, Any] = {"tags": tags}
        if note is not None:
            fields["note"] = note or None
        self.store.update_run(run["id"], **fields)
        changed = {**run, **fields}
        rundir = self.supervisor.paths.run_dir(run["id"])
        if rundir.path.is_dir():  # (an imported run has none)
            try:
                write_json_atomic(rundir.annotations,
                                  {"tags": changed["tags"], "note": changed["note"]})
            except OSError as exc:  # the store has them: only a rebuild would miss them
                log.warning("run %s: could not save its tags and note: %s", run["id"], exc)
        self.supervisor.announce(run["id"])
        return self.summary(self.store.get_run(run["id"]) or changed)
