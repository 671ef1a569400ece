"""What the daemon does for each request: validate, then act through the supervisor.

``Engine`` dispatches a request by its method name to a handler: the read
requests (``read_requests``), the requests that change runs (``run_requests``),
both built on ``run_lookup``, and those the daemon adds for itself (``subscribe``,
``telemetry``, ``shutdown``). Parameters are checked by ``requests``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.common.config import ConfigError
from engine.common.runs import ActionError
from engine.run.workloads.registry import WorkloadError
from engine.server.annotations import AnnotationRequests
from engine.server.devices import DeviceError
from engine.server.read_requests import ReadRequests
from engine.server.requests import RequestError
from engine.server.run_requests import RunRequests
from engine.server.store import Store
from engine.server.supervisor import Supervisor

# Requests that only read: answered on reader threads, never on the event loop.
READS = frozenset(
    {"ping", "status", "list_runs", "get_run", "metrics", "series", "read_log", "workloads",
     "queues"}
)

# A request handler: the request's params in, the reply's result out.
Handler = Callable[[dict[str, Any]], Any]

__all__ = ["READS", "Engine", "Handler", "RequestError"]


class Engine(ReadRequests, RunRequests, AnnotationRequests):
    """The request handlers, independent of the socket that carries them."""

    def __init__(
        self, store: Store, supervisor: Supervisor, own: Mapping[str, Handler] | None = None
    ) -> None:
        """``own``: the handlers of requests the caller answers itself (the daemon's)."""
        super().__init__(store, supervisor)
        self.handlers: dict[str, Handler] = {
            "ping": self.ping,
            "status": self.status,
            "list_runs": self.list_runs,
            "get_run": self.get_run,
            "start": self.start,
            "run_command": self.run_command,
            "pause": self.pause,
            "resume": self.resume,
            "fork": self.fork,
            "fork_variants": self.fork_variants,
            "kill": self.kill,
            "remove": self.remove,
            "annotate": self.annotate,
            "metrics": self.metrics,
            "series": self.series,
            "read_log": self.read_log,
            "workloads": self.workloads,
            "attach": self.attach,
            "queues": self.queues,
            "queue_set": self.queue_set,
            "move": self.move,
            "search_more": self.search_more,
        }
        supervisor.fork_run = self.fork  # a PBT round forks as a user's fork does
        supervisor.start_run = self.start  # a search's next trial starts as a user's does
        clash = set(own or {}) & set(self.handlers)
        if clash:  # a programming error: one method, one handler
            raise ValueError(f"requests already handled by the engine: {sorted(clash)}")
        self.handlers.update(own or {})
        self.own = frozenset(own or {})  # (shutdown: answered even with a damaged store)

    def read(self, method: str, params: dict[str, Any]) -> Any:
        """Answer a read-only request (on a reader thread) from one snapshot of the store."""
        with self.db.snapshot():
            return self.handle(method, params)

    def handle(self, method: str, params: dict[str, Any]) -> Any:
        """Run one request; raises RequestError for anything the caller got wrong."""
        handler = self.handlers.get(method)
        if handler is None:
            raise RequestError("unknown_method", f"unknown method {method!r}")
        if self.store.damaged is not None and method not in READS | self.own:
            # A write could spread the damage.
            raise RequestError("store_damaged", self.store.problem() or self.store.damaged)
        try:
            return handler(params)
        except ActionError as exc:
            raise RequestError("invalid_state", str(exc)) from None
        except (ConfigError, WorkloadError, DeviceError) as exc:
            raise RequestError("bad_config", str(exc)) from None
