"""The store's connection: opening it, transactions, and a store that cannot be written.

``StoreConnection`` is what the row classes (``store_runs``, ``store_metrics``)
build on: one SQLite connection in WAL mode, so readers never block the one
writer (the daemon), and the knowledge of whether that writer can write now.
A store that is locked by another process or on a full disk is not a bug:
metrics wait in the spools until it can be written again.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

from engine.server.points import Points
from engine.server.store_schema import migrate, schema_version

log = logging.getLogger("traintop.store")

# How long a write waits for another process's lock on the store before it fails.
BUSY_TIMEOUT = 5.0
# Once the store is known to be locked, how long a caller checks for the lock before it
# gives up until its next turn (the daemon goes on answering rather than wait 5 s).
RECHECK_WAIT = 0.05
# SQLite's primary result codes for a store that cannot be written now but may be later.
_UNAVAILABLE_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
)


# SQLite's codes for a file that is not (or no longer) a valid database.
DAMAGE_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def is_damage(exc: BaseException) -> bool:
    """Whether an sqlite3 error says the file is damaged (not busy, not interrupted)."""
    return isinstance(exc, sqlite3.DatabaseError) and getattr(
        exc, "sqlite_errorname", ""
    ) in DAMAGE_CODES


def store_unavailable(exc: BaseException) -> bool:
    """Is ``exc`` a store that cannot be written for now (locked, full), so worth a retry?"""
    code = getattr(exc, "sqlite_errorcode", None)
    # Extended codes (SQLITE_IOERR_WRITE...) carry the primary one in their low byte.
    return isinstance(exc, sqlite3.OperationalError) and isinstance(code, int) and (
        code & 0xFF in _UNAVAILABLE_CODES
    )


class StoreConnection:
    """One connection to ``store.sqlite``, migrated on open unless read-only."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.set_busy_timeout(BUSY_TIMEOUT)
        if readonly:
            self.db.execute("PRAGMA query_only=1")
        else:
            # A new store keeps a map of its pages, so that the room removed runs' points
            # leave can go back to the disk while it is in use (``reclaim_free``). A store
            # made before takes it at its next VACUUM (``traintop engine compact``).
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.migrate()
        self.points = Points(self.db)
        self._rids: dict[str, int] = {}
        # Whether removed runs' points are left to delete (None: not looked yet).
        self._purging: bool | None = None
        # Free pages given back to the disk: None, to be looked at; True, being given back
        # (some were moved); False, nothing to give until the next removal.
        self._reclaiming: bool | None = None
        # Why the store cannot be written, from a failed write until one succeeds.
        self.unavailable: str | None = None
        self.unavailable_since: float | None = None  # unix time of the first failed write
        # Why the store is damaged, once an operation found it so: never written again.
        self.damaged: str | None = None
        self._changes_at_failure = 0
        # Called before every write, so that writes held back to be stored together
        # (the daemon's metric batches of one tick) go first: see ``before_write``.
        self.before_write: Callable[[], None] | None = None
        self._in_before_write = False

    @classmethod
    def reader(cls, path: Path) -> Self:
        """A read-only connection to a store that a writer has already migrated."""
        return cls(path, readonly=True)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a statement waits for another connection's lock before it fails."""
        self.db.execute(f"PRAGMA busy_timeout={round(seconds * 1000)}")

    def write_failed(self, exc: BaseException) -> bool:
        """Note a failed write: True if the store is unavailable (locked, full), not a bug.

        Said in the log when it starts, not at every retry (see ``write_succeeded``).
        """
        if not store_unavailable(exc):
            return False
        if self.unavailable is None:
            log.warning(
                "the store cannot be written (%s); metrics wait in the spools and are "
                "stored once it can", exc,
            )
            self.unavailable_since = time.time()
        self.unavailable = str(exc)
        self._changes_at_failure = self.db.total_changes
        return True

    def write_succeeded(self) -> None:
        """After writes that raised nothing: if rows changed since the store was unavailable,
        it is back (an empty transaction proves nothing on a full disk)."""
        if self.unavailable is not None and self.db.total_changes > self._changes_at_failure:
            log.warning("the store can be written again; storing what the spools hold")
            self.unavailable = None

    def note_damage(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the store is damaged; if so, it is written no more by this
        connection (a write into a damaged file may spread the damage), said once."""
        if not is_damage(exc):
            return False
        if self.damaged is None:
            log.error("the store %s is damaged (%s); it is no longer written: runs train "
                      "on, their points wait in their spools", self.path, exc)
            self.damaged = str(exc)
        return True

    def problem(self) -> str | None:
        """One line for the user while the store cannot be written (damaged, locked by
        another process, its disk full or read-only), else None."""
        if self.damaged is not None:
            return (f"the store {self.path} is damaged ({self.damaged}): the engine no longer "
                    "writes it; runs train on, their points wait in their spools: 'traintop "
                    "engine stop', then 'traintop engine rebuild'")
        if self.unavailable is None or self.unavailable_since is None:
            return None
        since = time.strftime("%H:%M:%S", time.localtime(self.unavailable_since))
        return (f"the engine cannot write its store since {since} ({self.unavailable}): "
                "what is shown is as of then; runs train on, their points wait in their spools")

    def may_write(self) -> bool:
        """False while the store is known to be locked by another process and still is.

        A caller skips its writes until its next turn then, rather than wait on it.
        """
        if self.damaged is not None:
            return False
        if self.unavailable is None:
            return True
        self.set_busy_timeout(RECHECK_WAIT)
        try:
            with self.transaction():
                pass  # an empty transaction writes nothing
        except sqlite3.OperationalError as exc:
            if not store_unavailable(exc):
                raise
            return False
        finally:
            self.set_busy_timeout(BUSY_TIMEOUT)
        return True

    @property
    def version(self) -> int:
        """The schema version of the open store."""
        return schema_version(self.db)

    def migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION, one explicit step at a time."""
        migrate(self.db, self.path)

    def rid(self, run_id: str) -> int:
        """The integer id of a run; KeyError if there is no such run.

        Here rather than with the run rows: points are stored by this id.
        """
        rid = self._rids.get(run_id)
        if rid is None:
            row = self.db.execute("SELECT rid FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            rid = self._rids[run_id] = int(row[0])
        return rid

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` writes that all happen or none do."""
        self._write_held_first()
        return _Transaction(self.db)

    def _write_held_first(self) -> None:
        """Let ``before_write`` store what it holds, once, before any other write.

        Every write method calls this first. A writer that holds writes back to
        store them in one transaction sets ``before_write``: nothing written later
        can then come before them (a state change before the points that led to it).
        """
        if self.before_write is not None and not self._in_before_write:
            self._in_before_write = True
            try:
                self.before_write()
            finally:
                self._in_before_write = False

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run several reads against one state of the store (a reader's view of a request)."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")


class _Transaction:
    """``with store.transaction():`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type:
            # SQLite itself rolls back on some errors (disk full, I/O): only end an open one.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error:
            # A COMMIT that fails (busy, disk full) leaves the transaction open, and
            # every later BEGIN would fail on it: end it, so the caller can retry.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
