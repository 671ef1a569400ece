"""Whether ``store.sqlite`` can be used, checked before a daemon opens it.

A damaged store is said in one line that names the file, and left exactly as
it is: ``traintop engine rebuild`` moves it aside and makes a new one from the
run directories. A store that is missing, empty, or does not know runs whose
directories the daemon made (a lost store, an old backup put back) is said
too, rather than served as if those runs never existed.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from engine.rundir.paths import StatePaths, wal_of
from engine.server.store import StoreError
from engine.server.store_connection import is_damage

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100
REBUILD_HINT = (
    "'traintop engine rebuild' moves it aside and rebuilds the store from the run directories"
)
__all__ = ["REBUILD_HINT", "check_store", "damage_message", "is_damage"]
def damage_message(path: Path, detail: str) -> str:
    """The one line that says a store is damaged, and what to do."""
    return f"the store {path} is damaged ({detail}); it was left as it is: {REBUILD_HINT}"


def _made_by_a_daemon(paths: StatePaths, names: list[str]) -> list[str]:
    """The run directories among ``names`` that a daemon made (``launch.json`` or
    ``worker.json``), so a store knew them. One with only ``offline.json`` is a run
    not yet imported: no store knew it."""
    runs = paths.runs
    return [
        name for name in names
        if (runs / name / "launch.json").exists() or (runs / name / "worker.json").exists()
    ]


def _run_dirs(paths: StatePaths) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(paths.runs) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def check_store(paths: StatePaths) -> None:
    """Raise StoreError, in one line, if the store must not be opened as it is."""
    path = paths.store
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = None
    names = _run_dirs(paths)
    if not size:
        known = _made_by_a_daemon(paths, names)
        if known:
            what = "missing" if size is None else "empty"
            raise StoreError(
                f"the store {path} is {what} but {paths.runs} holds {len(known)} runs; "
                f"they would not be shown: {REBUILD_HINT}"
            )
        return
    problem = _damage(path)
    if problem is not None:
        raise StoreError(damage_message(path, problem))
    try:
        stored = _stored_ids(path)
    except sqlite3.DatabaseError as exc:  # the runs table itself is damaged
        raise StoreError(damage_message(path, str(exc))) from None
    # Only the directories the store does not list are looked into (at 500 runs,
    # a stat or two each would hold up every daemon start).
    unknown = _made_by_a_daemon(paths, [name for name in names if name not in stored])
    if unknown:
        raise StoreError(
            f"the store {path} does not know {len(unknown)} of the runs in {paths.runs} "
            f"(e.g. {unknown[0]}); it is older than they are: {REBUILD_HINT}"
        )


def _damage(path: Path) -> str | None:
    """What is wrong with the file, found cheaply (header, size, schema); None if nothing."""
    with open(path, "rb") as f:
        header = f.read(HEADER_SIZE)
    if len(header) < HEADER_SIZE or not header.startswith(SQLITE_MAGIC):
        return "not an SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid when the change counter matches its copy (SQLite's rule).
    if header[24:28] == header[92:96] and pages:
        size = path.stat().st_size
        if size < pages * page_size:
            return f"truncated: {size} bytes where its header says {pages * page_size}"
    try:
        db = _read_only(path)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that writes nothing, not even the -wal and -shm files of a WAL store.

    With no -wal file there is nothing but the main file to read, so SQLite may
    take it as immutable; with one, it must read (and lock) it as usual.
    """
    immutable = "" if wal_of(path).exists() else "&immutable=1"
    return sqlite3.connect(f"file:{path}?mode=ro{immutable}", uri=True)


def _stored_ids(path: Path) -> set[str]:
    db = _read_only(path)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is None:
            return set()  # a store never used
        return {str(row[0]) for row in db.execute("SELECT id FROM runs")}
    finally:
        db.close()
