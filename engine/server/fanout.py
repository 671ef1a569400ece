"""Events fanned out to the clients that subscribed to them.

A client subscribes on its connection to some topics, optionally narrowed to
some runs; ``publish`` sends each event to the connections that asked for it,
and ``publish_logs`` sends the new output of the runs whose logs were asked for.
A subscriber that stops reading is dropped rather than let its backlog grow.

A subscriber that asks for ``batch`` gets the ``metrics`` events of one tick in
one ``metrics_batch`` frame (``{"batches": [<metrics data>, ...]}``, at most
``protocol.EVENT_POINTS`` points) instead of one frame a run: with hundreds of
live runs, that is ten frames a second, not hundreds. Its frames keep their
order: anything else sent to it goes after the metrics held before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.common import protocol
from engine.rundir.paths import StatePaths
from engine.server.service import RequestError

log = logging.getLogger("traintop.daemon")

# A subscriber that lets this much pile up unread is dropped rather than grow memory.
MAX_PENDING_BYTES = 16 * 1024 * 1024
TOPICS = ("runs", "metrics", "logs", "telemetry")
# Topics about one run, which a subscription may narrow to some runs.
RUN_TOPICS = ("runs", "metrics", "logs")


@dataclass
class Subscription:
    """What one connection subscribed to, and how far it has read each log it follows."""

    topics: set[str]
    runs: set[str] | None  # None: every run
    log_offsets: dict[tuple[str, str], int] = field(default_factory=dict)
    batch: bool = False  # metrics events of a tick in one frame


@dataclass(eq=False)
class Connection:
    """One client's connection: where its frames go, and its subscription if it has one."""

    writer: asyncio.StreamWriter
    subscription: Subscription | None = None
    held: list[dict[str, Any]] = field(default_factory=list)  # metrics data, for one frame
    held_points: int = 0

    def hold(self, metrics: dict[str, Any]) -> None:
        """Keep a ``metrics`` event's data for the next ``metrics_batch`` frame."""
        if self.held_points + len(metrics["points"]) > protocol.EVENT_POINTS:
            self.release()
        self.held.append(metrics)
        self.held_points += len(metrics["points"])

    def release(self) -> None:
        """Send the metrics held so far, in one frame."""
        if self.held:
            batches, self.held, self.held_points = self.held, [], 0
            self._write({"event": "metrics_batch", "data": {"batches": batches}})

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a frame after any metrics held; False (and the connection closed) if the
        peer is too far behind."""
        self.release()
        return self._write(message)

    def _write(self, message: dict[str, Any]) -> bool:
        if self.writer.is_closing():
            return False
        if self.writer.transport.get_write_buffer_size() > MAX_PENDING_BYTES:
            log.warning("dropping a subscriber that stopped reading")
            self.writer.transport.abort()  # close() would keep the backlog until it drains
            return False
        try:
            frame = protocol.encode(message)
        except protocol.ProtocolError as exc:  # never expected: events are bounded at the source
            log.error("dropped an event over the frame cap: %s", exc)
            return False
        self.writer.write(frame)
        return True


class Fanout:
    """The open connections of the daemon's clients, and the events each one gets."""

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.connections: set[Connection] = set()

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Send an event to every subscriber of ``topic`` (and of that run)."""
        run_id = data.get("run") if topic != "runs" else data.get("id")
        message = {"event": topic, "data": data}
        for conn in list(self.connections):
            sub = conn.subscription
            if sub is None or topic not in sub.topics:
                continue
            if sub.runs is not None and topic in RUN_TOPICS and run_id not in sub.runs:
                continue
            if sub.batch and topic == "metrics":
                conn.hold(data)
            else:
                conn.send(message)

    def release(self) -> None:
        """Send every connection the metrics it holds (the end of a tick)."""
        for conn in list(self.connections):
            conn.release()

    def publish_logs(self) -> None:
        """Send new stdout/stderr text to the subscribers of logs."""
        for conn in list(self.connections):
            sub = conn.subscription
            if sub is None or "logs" not in sub.topics:
                continue
            for (run_id, stream), offset in list(sub.log_offsets.items()):
                rundir = self.paths.run_dir(run_id)
                path = rundir.stdout if stream == "stdout" else rundir.stderr
                try:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        data = f.read(256 * 1024)
                except FileNotFoundError:
                    continue
                if data:
                    sub.log_offsets[(run_id, stream)] = offset + len(data)
                    text = data.decode("utf-8", "replace")
                    conn.send(
                        {"event": "logs", "data": {"run": run_id, "stream": stream, "text": text}}
                    )

    def subscribe(
        self,
        conn: Connection,
        params: dict[str, Any],
        resolve: Callable[[str], dict[str, Any]],
    ) -> dict[str, Any]:
        """Answer a ``subscribe`` request: ``resolve`` turns each run named into its row."""
        topics = params.get("topics", list(TOPICS))
        runs = params.get("runs")
        batch = params.get("batch", False)
        if not isinstance(batch, bool):
            raise RequestError("bad_request", "batch must be true or false")
        if (
            not isinstance(topics, list)
            or not topics
            or not all(isinstance(t, str) and t in TOPICS for t in topics)
        ):
            raise RequestError("bad_request", f"topics must be a list drawn from {TOPICS}")
        if runs is not None and (
            not isinstance(runs, list) or not all(isinstance(r, str) for r in runs)
        ):
            raise RequestError("bad_request", "runs must be a list of run ids")
        run_ids = None if runs is None else {resolve(r)["id"] for r in runs}
        sub = Subscription(set(topics), run_ids, batch=batch)
        if "logs" in sub.topics:
            for run_id in run_ids or []:
                rundir = self.paths.run_dir(run_id)
                for stream, path in (("stdout", rundir.stdout), ("stderr", rundir.stderr)):
                    size = path.stat().st_size if path.exists() else 0
                    sub.log_offsets[(run_id, stream)] = size
        conn.subscription = sub
        return {"topics": sorted(sub.topics), "runs": sorted(run_ids) if run_ids else None}
