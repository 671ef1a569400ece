"""Removing ended runs for good: their row, events, points and files.

``traintop rm`` keeps a list of hundreds of runs to the ones worth keeping,
and gives back the disk their checkpoints hold (most of a run's bytes).

The order makes a removal safe to stop at any point:

1. the run's directory is renamed into ``trash/`` (one rename, on the state
   directory's own filesystem): from then on no scan of ``runs/`` (the import
   of offline runs, ``engine rebuild``) finds it again;
2. its row and events go, in one transaction. If the store cannot take that
   (locked, full), the directory is renamed back: nothing changed, and the user
   is told;
3. its files are deleted on a thread, and its points a slice at each of the
   daemon's ticks (``Store.purge_removed``), so that many GB of checkpoints or
   millions of points never hold up the daemon's answers.

A daemon stopped between 1 and 3 finishes the work at its next start
(``finish_removals``): every entry of ``trash/`` is a run the user asked to
remove, so its rows go (if still there) and then its files; the points of a
run whose row is gone are found and deleted by the ticks as before.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from engine.common.runs import RunState
from engine.rundir.disk_space import disk_use
from engine.rundir.paths import StatePaths
from engine.rundir.state_dir import ensure_private_dir
from engine.server.store import Store

log = logging.getLogger(__name__)


def still_needed(paths: StatePaths, store: Store, run_id: str) -> str | None:
    """Why a run that has not ended yet still needs run ``run_id``, or None.

    A fork that has not started loads its parent's checkpoint when it does, and
    a run queued ``--after`` it waits for its row to say it finished.
    """
    own_dir = str(paths.run_dir(run_id).path) + os.sep
    rows = store.db.execute(
        "SELECT id, state, parent_id, after_id, launch_from FROM runs "
        "WHERE (parent_id = ? OR after_id = ?) AND state IN (?, ?) ORDER BY rid",
        (run_id, run_id, RunState.QUEUED.value, RunState.STARTING.value),
    ).fetchall()
    for row in rows:
        other = row["id"]
        if row["parent_id"] == run_id and row["state"] == RunState.STARTING.value:
            return f"its fork {other} is starting from its checkpoint; try again in a moment"
        if row["parent_id"] == run_id and str(row["launch_from"] or "").startswith(own_dir):
            return f"its fork {other} will start from its checkpoint (start or kill {other} first)"
        if row["after_id"] == run_id:
            return f"run {other} is queued to start after it (kill {other} first)"
    return None


class Trash:
    """Moves removed runs' directories aside; one thread deletes them, off the event loop."""

    def __init__(self, paths: StatePaths, store: Store) -> None:
        self.paths = paths
        self.store = store
        self._doomed: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._deleter: threading.Thread | None = None  # while it has paths to delete
        self._lock = threading.Lock()

    def remove(self, run_id: str) -> tuple[int, int | None]:
        """Remove run ``run_id`` (ended, not followed): the bytes its files took, and the
        integer id its rows had. Raises what the store raised, having changed nothing."""
        source = self.paths.run_dir(run_id).path
        ensure_private_dir(self.paths.trash)
        # Unique even for an id used again after a removal whose files are still going.
        target = self.paths.trash / f"{run_id}.{time.time_ns()}"
        size = disk_use(source)
        try:
            source.rename(target)
        except FileNotFoundError:  # an imported run has no directory
            moved = False
        else:
            moved = True
        try:
            rid = self.store.remove_run(run_id)
        except BaseException:
            if moved:
                target.rename(source)
            raise
        if moved:
            self._delete_later(target)
        return size, rid

    def finish_removals(self) -> None:
        """Finish what a stopped daemon left in ``trash/``: rows, then files."""
        try:
            entries = sorted(self.paths.trash.iterdir())
        except FileNotFoundError:
            return
        for entry in entries:
            run_id = entry.name.split(".", 1)[0]
            if self.store.remove_run(run_id) is not None:
                log.info("removed run %s, whose removal a stopped daemon left half-way", run_id)
            self._delete_later(entry)

    def _delete_later(self, path: Path) -> None:
        with self._lock:
            self._doomed.put(path)
            if self._deleter is None:
                self._deleter = threading.Thread(
                    target=self._delete_all, name="remove runs' files", daemon=True
                )
                self._deleter.start()

    def _delete_all(self) -> None:
        """Delete what is queued, then end (the next removal starts a thread again)."""
        while True:
            with self._lock:  # (a path put meanwhile is seen here, or starts a new thread)
                if self._doomed.empty():
                    self._deleter = None
                    return
                path = self._doomed.get()
            _delete(path)


def _delete(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:  # what is left is tried again at the daemon's next start
        log.warning("could not delete all of %s: %s", path, exc)


def removal_reply(run: dict[str, Any], freed: int) -> dict[str, Any]:
    """What ``remove`` answers: which run went, and the bytes of files it gave back."""
    return {"id": run["id"], "name": run["name"], "state": run["state"], "freed": freed}
