"""The SQLite store: runs, their events and metrics.

One writer (the daemon) in WAL mode, so readers never block it. ``Store`` is
the one class callers use; its parts live by responsibility:

- ``store_schema``: the migrations and the schema version;
- ``store_connection``: opening, transactions, a store that cannot be written now;
- ``store_runs``: run rows and their events;
- ``store_metrics``: metric points and telemetry samples.
"""

from __future__ import annotations

from engine.server.store_connection import BUSY_TIMEOUT, RECHECK_WAIT, store_unavailable
from engine.server.store_metrics import MetricRows
from engine.server.store_schema import (
    MIGRATIONS,
    RUN_FIELDS,
    SCHEMA_VERSION,
    StoreError,
    store_upgrade,
)

__all__ = [
    "BUSY_TIMEOUT",
    "MIGRATIONS",
    "RECHECK_WAIT",
    "RUN_FIELDS",
    "SCHEMA_VERSION",
    "Store",
    "StoreError",
    "store_unavailable",
    "store_upgrade",
]


class Store(MetricRows):
    """All reads and writes of ``store.sqlite``.

    The daemon holds one writer; ``Store.reader`` opens read-only connections
    for threads that answer queries, which WAL lets run beside the writer.
    """
