"""What every request handler shares: the store, the supervisor, and finding runs.

``Engine`` (``service``) is made of this, the read requests (``read_requests``)
and the requests that change runs (``run_requests``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.common.format import format_bytes
from engine.common.runs import RunState, checkpoints_removed_said
from engine.rundir.disk_space import free_bytes, is_full
from engine.rundir.paths import RunDir
from engine.server.backends import backend_for, kind_fields
from engine.server.backends.base import Refusable
from engine.server.devices import list_gpus
from engine.server.requests import RequestError
from engine.server.retries import restart_point
from engine.server.store import Store
from engine.server.supervisor import Supervisor
from engine.server.views import EmaCache


class RunLookup:
    """The state request handlers share, and the lookups they all make."""

    def __init__(self, store: Store, supervisor: Supervisor) -> None:
        self.store = store
        self.supervisor = supervisor
        self.started = time.time()
        self.after_unclean_stop = False  # the last engine was killed or crashed (its socket left)
        self._local = threading.local()
        self.readers: list[Store] = []
        self.ema_cache = EmaCache()
        # Set by the daemon: true once it is stopping, so long reads give up.
        self.interrupted: Callable[[], bool] = lambda: False
        self.gpus = list_gpus()

    def open_reader(self) -> None:
        """Give the calling thread a read-only store (a reader thread's initializer)."""
        reader = Store.reader(self.store.path)
        self._local.store = reader
        self.readers.append(reader)

    @property
    def db(self) -> Store:
        """The calling thread's store: its reader on a reader thread, else the writer."""
        store: Store | None = getattr(self._local, "store", None)
        return store if store is not None else self.store

    # -- lookups ------------------------------------------------------------

    def resolve(self, ref: Any) -> dict[str, Any]:
        """The run named ``ref``, or whose id starts with it; one clear error otherwise."""
        if not isinstance(ref, str) or not ref:
            raise RequestError("bad_request", "a run id or name is required")
        matches = self.db.match_runs(ref)
        if not matches:
            size = self.db.sweep_size(ref)
            near = self.db.names_near(ref) if not size else []
            hint = f"; {ref!r} is a sweep of {size} run{'s' if size != 1 else ''}: 'traintop " \
                f"ls --sweep {ref} -q' gives their ids" if size else ""
            if near:
                *first, last = [f"{name!r} ({run_id})" for name, run_id in near]
                hint = f"; did you mean {', '.join(first) + ' or ' if first else ''}{last}?"
            raise RequestError("not_found", f"no run matches {ref!r}{hint}")
        if len(matches) > 1:
            ids = ", ".join(m["id"] for m in matches[:5])
            raise RequestError("ambiguous", f"{ref!r} is ambiguous: it matches {ids}")
        return matches[0]

    def run_dir(self, run: dict[str, Any], action: str) -> RunDir:
        """The run's directory, or one clear error if it was deleted: control, checkpoints
        and logs all live there, so ``action`` (``pause``, ...) cannot be done without it."""
        rundir = self.supervisor.paths.run_dir(run["id"])
        if not rundir.path.is_dir():
            raise RequestError(
                "missing_dir",
                f"cannot {action} run {run['id']}: its directory {rundir.path} is missing "
                "(deleted?)",
            )
        return rundir

    def checkpoint(self, run: dict[str, Any], action: str) -> str:
        """The run's last checkpoint file, which ``action`` starts from; one clear error
        if it has none or the file is gone."""
        self.run_dir(run, action)
        path = run["checkpoint"]
        if not path:
            raise RequestError(
                "invalid_state", f"run {run['id']} has no checkpoint (its workload tracks nothing)"
            )
        if not Path(path).is_file():
            gone = (checkpoints_removed_said(run["id"]) if run["checkpoints_removed"]
                    else f"its checkpoint {path} is missing")
            raise RequestError("missing_dir", f"cannot {action} run {run['id']}: {gone}")
        return str(path)

    def summary(self, run: dict[str, Any]) -> dict[str, Any]:
        """A run as listed: its row, kind and refusals, the latest value of each metric,
        its condition, and, running, its steps a second of late (``LiveRun.rate``)."""
        live = self.supervisor.live.get(run["id"])  # (a listing's reader thread: one get)
        return {
            **run,
            **kind_fields(run),
            "last": self.db.last_values(run["id"]),
            "condition": self.supervisor.condition(run),
            "rate": live.rate if live is not None and run["state"] == RunState.RUNNING
            else None,
        }

    def resume_point(self, run: dict[str, Any]) -> tuple[int, Path] | None:
        """Where a failed run can go on from: its last complete checkpoint and its step
        (a fork that wrote none: the one it started from)."""
        if run["state"] != RunState.FAILED or backend_for(run).refusal("restart", run["id"]):
            return None
        return restart_point(self.supervisor.paths, run)

    def need_resume_point(self, run: dict[str, Any]) -> tuple[int, Path]:
        """Where a failed run goes on from; one clear error if it cannot."""
        self.refuse_if_unable(run, "restart")
        point = self.resume_point(run)
        if point is None:
            why = f": {checkpoints_removed_said(run['id'])}" if run["checkpoints_removed"] else ""
            raise RequestError("invalid_state",
                               f"run {run['id']} failed with no complete checkpoint to go on "
                               f"from{why}")
        return point

    def check_room(self) -> None:
        """Refuse to make anything on a full disk: a run there could not even be set up."""
        home = self.supervisor.paths.home
        if is_full(home):
            raise RequestError(
                "disk_full",
                f"the state directory's disk is full ({format_bytes(free_bytes(home))} free at "
                f"{home}); free some space and try again",
            )


    def refuse_if_unable(self, run: dict[str, Any], action: Refusable) -> None:
        """One clear error if the run's kind cannot do ``action`` (fork, release, restart)."""
        refusal = backend_for(run).refusal(action, run["id"])
        if refusal is not None:
            raise RequestError("invalid_state", refusal)

