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

Before 1, a checkpoint of the run that a fork still needs (``checkpoints_needed``:
one training from it, or one that failed before a checkpoint of its own) is linked
into the fork's own directory (``keep_for_forks``): a retry or a resume of the fork
goes on from it.

A daemon stopped between 1 and 3 finishes the work at its next start
(``finish_removals``): every entry of ``trash/`` is a run the user asked to
remove, so its rows go (if still there) and then its files; the points of a
run whose row is gone are found and deleted by the ticks as before.

``traintop rm --checkpoints`` removes only a run's checkpoints (most of its bytes)
and keeps the run: its points, events and logs. Its files are moved into a
``trash/`` entry whose name no run id has (``CHECKPOINTS_PREFIX``), which a
restarted daemon deletes without touching any row. A checkpoint that a run that
has not ended starts or goes on from (a fork queued from it, or training from it,
whose retry would go on from it again) is kept, and said.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from engine.common.format import format_bytes
from engine.common.runs import RunState
from engine.rundir.annotations import save_annotations
from engine.rundir.checkpoint_files import fork_name, latest_complete
from engine.rundir.disk_space import freed_by
from engine.rundir.paths import StatePaths, read_json
from engine.rundir.state_dir import ensure_private_dir
from engine.server.store import Store

log = logging.getLogger(__name__)

# How a trash entry of checkpoints alone begins (run ids are letters and digits).
CHECKPOINTS_PREFIX = "-checkpoints-of-"


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


def checkpoint_files(paths: StatePaths, run_id: str) -> list[Path]:
    """The files in a run's checkpoint directory, by name."""
    try:
        return sorted(p for p in paths.run_dir(run_id).checkpoints.iterdir() if p.is_file())
    except OSError:  # none written, or the directory is gone
        return []


def checkpoints_needed(paths: StatePaths, store: Store, run_id: str) -> dict[Path, str]:
    """The checkpoints of run ``run_id`` that a fork of it still needs, each with that
    fork: one that has not ended starts from it or started from it (a retry would go on
    from there again); one that failed before a checkpoint of its own goes on from it
    when resumed (``retries.restart_point``)."""
    own = paths.run_dir(run_id).checkpoints
    ended = [state.value for state in RunState if state.terminal and state != RunState.FAILED]
    rows = store.db.execute(
        f"SELECT id, state, launch_from FROM runs WHERE parent_id = ? AND state NOT IN "
        f"({', '.join('?' * len(ended))}) ORDER BY rid", (run_id, *ended)).fetchall()
    needed: dict[Path, str] = {}
    for row in rows:
        fork = paths.run_dir(row["id"])
        failed = row["state"] == RunState.FAILED.value
        if failed and latest_complete(fork.checkpoints) is not None:
            continue  # it goes on from its own
        launch = read_json(fork.launch)
        started = launch.get("resume_from") if isinstance(launch, dict) else None
        for path in (started,) if failed else (row["launch_from"], started):
            if isinstance(path, str) and Path(path).parent == own:
                needed.setdefault(Path(path), str(row["id"]))
    return needed


def keep_for_forks(paths: StatePaths, store: Store, run_id: str) -> None:
    """Before run ``run_id`` goes: each checkpoint of it that a fork still needs is linked
    into that fork's own checkpoints, under its fork step's name, so that the fork,
    retried or resumed, still goes on from there (``retries.restart_point`` looks there
    first). One that cannot be linked is said in the log; the fork trains on either way."""
    for path, fork_id in checkpoints_needed(paths, store, run_id).items():
        fork = store.get_run(fork_id)
        if fork is None or fork["fork_step"] is None:
            continue
        kept = paths.run_dir(fork_id).checkpoints / fork_name(int(fork["fork_step"]))
        try:
            os.link(path, kept)
        except FileExistsError:
            pass
        except OSError as exc:
            log.warning("run %s: could not keep %s for its fork %s: %s", run_id, path.name,
                        fork_id, exc)


class Trash:
    """Moves removed runs' directories aside; one thread deletes them, off the event loop."""

    def __init__(self, paths: StatePaths, store: Store) -> None:
        self.paths = paths
        self.store = store
        self._doomed: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._deleter: threading.Thread | None = None  # while it has paths to delete
        self._lock = threading.Lock()

    def remove(self, run_id: str) -> tuple[int, int | None]:
        """Remove run ``run_id`` (ended, not followed): the bytes the disk gets back, and
        the integer id its rows had. Raises what the store raised, having changed nothing."""
        source = self.paths.run_dir(run_id).path
        ensure_private_dir(self.paths.trash)
        # Unique even for an id used again after a removal whose files are still going.
        target = self.paths.trash / f"{run_id}.{time.time_ns()}"
        size = freed_by(source)
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
            self.delete_later(target)
        return size, rid

    def discard(self, run_id: str, files: list[Path]) -> Path:
        """Move ``files`` (checkpoints of run ``run_id``) into a new ``trash/`` entry, to be
        deleted once ``delete_later`` is called with it (``put_back`` undoes the move).
        Raises OSError having moved nothing."""
        ensure_private_dir(self.paths.trash)
        target = self.paths.trash / f"{CHECKPOINTS_PREFIX}{run_id}.{time.time_ns()}"
        ensure_private_dir(target)
        moved: list[Path] = []
        try:
            for path in files:
                path.rename(target / path.name)
                moved.append(path)
        except OSError:
            self.put_back(target, moved)
            raise
        return target

    def put_back(self, target: Path, files: list[Path]) -> None:
        """Move ``files`` back from the trash entry ``discard`` made, and drop it."""
        for path in files:
            with contextlib.suppress(OSError):
                (target / path.name).rename(path)
        with contextlib.suppress(OSError):
            target.rmdir()

    def finish_removals(self) -> None:
        """Finish what a stopped daemon left in ``trash/``: rows, then files."""
        try:
            entries = sorted(self.paths.trash.iterdir())
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(CHECKPOINTS_PREFIX):  # a run's checkpoints, not a run
                self.delete_later(entry)
                continue
            run_id = entry.name.split(".", 1)[0]
            if self.store.remove_run(run_id) is not None:
                log.info("removed run %s, whose removal a stopped daemon left half-way", run_id)
            self.delete_later(entry)

    def delete_later(self, path: Path) -> None:
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


def removal_freed(paths: StatePaths, store: Store, run_id: str) -> int:
    """What removing run ``run_id`` would give back: its files, less the checkpoints
    ``keep_for_forks`` would keep for its forks."""
    return freed_by(paths.run_dir(run_id).path,
                    kept=set(checkpoints_needed(paths, store, run_id)))


def removal_reply(run: dict[str, Any], freed: int) -> dict[str, Any]:
    """What ``remove`` answers: which run went, and the bytes of files it gave back."""
    return {"id": run["id"], "name": run["name"], "state": run["state"], "freed": freed}


def remove_checkpoints(paths: StatePaths, store: Store, trash: Trash, run: dict[str, Any],
                       dry_run: bool) -> dict[str, Any]:
    """Remove an ended run's checkpoints, keeping the run (``dry_run``: say what would go):
    the ``removal_reply``, and ``kept``, the files a fork that has not ended still needs
    (``{"file", "run"}`` each). Raises what refused it, having changed nothing."""
    needed = checkpoints_needed(paths, store, run["id"])
    files = checkpoint_files(paths, run["id"])
    doomed = [path for path in files if path not in needed]
    freed = freed_by(*doomed)  # (not an auto-N.pt that is step-N.pt too, kept)
    kept = [{"file": path.name, "run": needer} for path, needer in needed.items()
            if path in files]
    if doomed and not dry_run:
        target = trash.discard(run["id"], doomed)
        try:
            removed = time.time()
            store.update_run(run["id"], checkpoints_removed=removed)
            store.note(run["id"], f"checkpoints removed ({format_bytes(freed)}); its points, "
                       "events and logs are kept")
        except BaseException:
            trash.put_back(target, doomed)
            raise
        trash.delete_later(target)
        save_annotations(paths.run_dir(run["id"]), {**run, "checkpoints_removed": removed})
    return {**removal_reply(run, freed), "kept": kept}
