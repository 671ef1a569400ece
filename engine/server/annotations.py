"""What the user says of a run: its tags and its note (``traintop tag``, ``note``, ``e``).

Kept in the run's row, and in its directory's ``annotations.json`` as well
(``engine.rundir.annotations``), so a store rebuilt from the run directories
(``traintop engine rebuild``) keeps them.
"""

from __future__ import annotations

from typing import Any

from engine.common.runs import MAX_TAGS, note_problem
from engine.rundir.annotations import save_annotations
from engine.server.requests import RequestError, param, tags_param
from engine.server.run_lookup import RunLookup


class AnnotationRequests(RunLookup):
    """The ``annotate`` request."""

    def annotate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Add tags to a run (``add``), take some off (``remove``), or set its note
        (``note``; an empty one clears it). Checked whole before anything is written."""
        run = self.resolve(params.get("run"))
        add = tags_param(params, "add")
        remove: list[str] = param(params, "remove", list, [])
        note: str | None = param(params, "note", str, None)
        if note is not None and (problem := note_problem(note)) is not None:
            raise RequestError("bad_request", problem)
        tags = [t for t in run["tags"] if t not in remove]
        tags += [t for t in add if t not in tags]
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
            save_annotations(rundir, changed)
        self.supervisor.announce(run["id"])
        return self.summary(self.store.get_run(run["id"]) or changed)
