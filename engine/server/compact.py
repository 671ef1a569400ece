"""``traintop engine compact``: give the disk back the pages a store no longer uses.

A store made by this version gives the pages of removed runs' points back to the
disk by itself, while the engine runs (``reclaim_free``). One made before keeps
its file's size: those pages wait on its free list for new points. VACUUM writes
the store anew without them, and with the page map that lets the engine give such
room back by itself from then on. It needs the store to itself, so the engine must
be stopped (runs go on meanwhile, their points wait in their spools), and free
disk about the size of the store while it works.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from engine.common.format import format_bytes
from engine.rundir.disk_space import free_bytes
from engine.rundir.paths import StatePaths, database_bytes
from engine.server.daemon import MaintenanceError, hold_stopped_store


class CompactError(MaintenanceError):
    """Why the store was left as it was, in one line."""


@dataclass
class Compacted:
    before: int  # bytes of the store and its WAL
    after: int


def compact_store(paths: StatePaths) -> Compacted:
    """VACUUM ``paths.store``; the engine must not be running. Changes nothing on failure."""
    lock = hold_stopped_store(paths)
    try:
        if not paths.store.exists():
            raise CompactError(f"there is no store at {paths.store}")
        before = database_bytes(paths.store)
        db = sqlite3.connect(paths.store, isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect with the VACUUM
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:  # VACUUM rolls back whole: nothing lost
            raise CompactError(
                f"could not compact {paths.store} ({exc}); it needs about "
                f"{format_bytes(before)} free, and {format_bytes(free_bytes(paths.home))} is"
            ) from None
        finally:
            db.close()
        return Compacted(before, database_bytes(paths.store))
    finally:
        lock.close()
