"""The engine daemon: one per state directory, serving clients on a unix socket.

``python -m engine.server.daemon`` runs it in the foreground; clients start it
detached (``engine.client.client.start_daemon``). It holds ``engine.pid`` locked
for its whole life, so a second daemon on the same directory exits at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sqlite3
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from engine.common import protocol
from engine.rundir.paths import StatePaths, state_home
from engine.rundir.state_dir import (
    PRIVATE_UMASK,
    UnsafeStateDir,
    check_state_dir,
    ensure_private_dir,
    tidy_tree,
)
from engine.server.service import READS, Engine, RequestError
from engine.server.store import Store, StoreError, store_unavailable, store_upgrade
from engine.server.store_health import check_store, damage_message, is_damage
from engine.server.supervisor import Supervisor
from engine.server.telemetry_feed import TelemetryFeed

log = logging.getLogger("traintop.daemon")

TICK_SECONDS = 0.1
# Threads answering read requests, each with its own read-only store connection.
READER_THREADS = 4
# How often (in SQLite VM steps) a reader checks whether the daemon is stopping.
PROGRESS_STEPS = 10_000
# A subscriber that lets this much pile up unread is dropped rather than grow memory.
MAX_PENDING_BYTES = 16 * 1024 * 1024
# Connections served at once, those still shaking hands included; one more is refused
# with an error frame. Each holds a file descriptor, and the daemon's are few (often
# 1,024) and also needed for the store, spools and shims. A TUI holds two or three.
MAX_CONNECTIONS = 256
# Seconds a new connection has to send its handshake.
HANDSHAKE_TIMEOUT_S = 10.0
# Seconds a connection may go without a request before it is closed, unless it
# subscribed: a TUI that only listens to events may sit quiet for days.
IDLE_TIMEOUT_S = 600.0
TOPICS = ("runs", "metrics", "logs", "telemetry")
# Topics about one run, which a subscription may narrow to some runs.
RUN_TOPICS = ("runs", "metrics", "logs")


class AlreadyRunning(Exception):
    """Another daemon holds the lock of this state directory."""


def acquire_lock(paths: StatePaths) -> IO[str]:
    """Lock ``engine.pid`` and write our pid in it; the lock lives as long as the file object."""
    lock_file = open(paths.lock, "a+", encoding="utf-8")  # noqa: SIM115 - held for life
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise AlreadyRunning(f"a traintop engine already runs for {paths.home}") from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"{os.getpid()}\n")
    lock_file.flush()
    return lock_file


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


@dataclass
class Subscription:
    topics: set[str]
    runs: set[str] | None  # None: every run
    log_offsets: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(eq=False)
class Connection:
    writer: asyncio.StreamWriter
    subscription: Subscription | None = None

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a frame; False (and the connection closed) if the peer is too far behind."""
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


class Daemon:
    """The socket server, the event fan-out and the supervision tick."""

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.store = Store(paths.store)
        self.supervisor = Supervisor(paths, self.store, self.publish)
        self.engine = Engine(self.store, self.supervisor, own={
            "subscribe": self._no_subscribe_here,
            "shutdown": self._shutdown,
            "telemetry": self._telemetry,
        })
        self.live_workers: list[tuple[str, int, int]] = []
        self.telemetry = TelemetryFeed(self.store, self.publish, lambda: list(self.live_workers))
        self.connections: set[Connection] = set()
        self.open_connections = 0  # handshaking ones too, unlike ``connections``
        self.stopping = asyncio.Event()
        self.engine.interrupted = self.stopping.is_set
        self.readers = concurrent.futures.ThreadPoolExecutor(
            READER_THREADS, "traintop-reader", initializer=self._open_reader
        )

    def _open_reader(self) -> None:
        self.engine.open_reader()
        # A query still running when the daemon stops is abandoned at once.
        self.engine.db.db.set_progress_handler(
            lambda: int(self.stopping.is_set()), PROGRESS_STEPS
        )

    # -- events -------------------------------------------------------------

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
            conn.send(message)

    def _publish_logs(self) -> None:
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

    def _subscribe(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        topics = params.get("topics", list(TOPICS))
        runs = params.get("runs")
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
        run_ids = None if runs is None else {self.engine.resolve(r)["id"] for r in runs}
        sub = Subscription(set(topics), run_ids)
        if "logs" in sub.topics:
            for run_id in run_ids or []:
                rundir = self.paths.run_dir(run_id)
                for stream, path in (("stdout", rundir.stdout), ("stderr", rundir.stderr)):
                    size = path.stat().st_size if path.exists() else 0
                    sub.log_offsets[(run_id, stream)] = size
        conn.subscription = sub
        return {"topics": sorted(sub.topics), "runs": sorted(run_ids) if run_ids else None}

    def _no_subscribe_here(self, params: dict[str, Any]) -> None:
        raise RequestError("bad_request", "subscribe is only valid on a socket connection")

    def _telemetry(self, params: dict[str, Any]) -> dict[str, Any]:
        """The latest sample and, with ``seconds``, the history before it."""
        seconds = params.get("seconds", 0)
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not (0 <= seconds <= 30 * 24 * 3600)
        ):
            raise RequestError("bad_request", "seconds must be a number from 0 to 30 days")
        return {
            "latest": self.telemetry.latest(),
            "history": self.telemetry.history(float(seconds)) if seconds else [],
            "interval": self.telemetry.interval,
        }

    def _shutdown(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stopping.set()
        return {"stopping": True, "live_runs": len(self.supervisor.live)}

    # -- connections --------------------------------------------------------

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = Connection(writer)
        self.open_connections += 1
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock)
            if uid != os.getuid():
                log.warning("refused a connection from uid %d", uid)
                conn.send(_error(None, "permission_denied", f"uid {uid} may not use this engine"))
                return
            try:
                hello = await asyncio.wait_for(self._read_frame(reader, conn), HANDSHAKE_TIMEOUT_S)
            except TimeoutError:
                conn.send(_error(None, "timeout", f"no handshake in {HANDSHAKE_TIMEOUT_S:g} s"))
                return
            if hello is None:
                return
            # Refused after its hello, which the client sends first and then waits for an
            # answer to: so it reads this error rather than a reset connection.
            if self.open_connections > MAX_CONNECTIONS:
                log.warning("refused a connection: %d are open", MAX_CONNECTIONS)
                conn.send(_error(
                    None, "too_many_connections",
                    f"the engine already serves {MAX_CONNECTIONS} connections; close some "
                    "(idle TUIs or scripts) and try again",
                ))
                return
            try:
                protocol.check_hello(hello)
            except protocol.ProtocolError as exc:
                conn.send(_error(None, "bad_handshake", str(exc)))
                return
            conn.send({**protocol.hello(), "pid": os.getpid()})
            self.connections.add(conn)
            while not self.stopping.is_set():
                idle = None if conn.subscription is not None else IDLE_TIMEOUT_S
                try:
                    message = await asyncio.wait_for(self._read_frame(reader, conn), idle)
                except TimeoutError:
                    conn.send(_error(
                        None, "idle_timeout", f"closed after {IDLE_TIMEOUT_S:g} s without a request"
                    ))
                    return
                if message is None:
                    return
                await self._answer(conn, message)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            self.open_connections -= 1
            self.connections.discard(conn)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_frame(
        self, reader: asyncio.StreamReader, conn: Connection
    ) -> dict[str, Any] | None:
        """The next well-formed frame; None once the connection is over.

        A frame that is not a JSON object gets an error reply and is skipped
        (its length kept the stream in step); an oversized length cannot be
        skipped safely, so it closes the connection.
        """
        while True:
            try:
                header = await reader.readexactly(protocol.HEADER_SIZE)
            except asyncio.IncompleteReadError:
                return None
            try:
                length = protocol.frame_length(header)
            except protocol.ProtocolError as exc:
                conn.send(_error(None, "bad_frame", str(exc)))
                return None
            body = await reader.readexactly(length)
            try:
                return protocol.decode(body)
            except protocol.ProtocolError as exc:
                conn.send(_error(None, "bad_frame", str(exc)))

    async def _answer(self, conn: Connection, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        if not isinstance(request_id, int | str) or isinstance(request_id, bool):
            conn.send(_error(None, "bad_request", "a request needs an integer or string id"))
            return
        method = message.get("method")
        params = message.get("params", {})
        if not isinstance(method, str) or not isinstance(params, dict):
            conn.send(_error(request_id, "bad_request", "a request needs a method and params"))
            return
        try:
            if method == "subscribe":
                result = self._subscribe(conn, params)
            elif method in READS:
                # Reads run on reader threads: the loop goes on ingesting and answering.
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self.readers, self.engine.read, method, params
                )
            else:
                result = self.engine.handle(method, params)
            reply = {"id": request_id, "result": result}
            conn.send(reply)
        except RequestError as exc:
            conn.send(_error(request_id, exc.code, exc.message))
        except protocol.ProtocolError as exc:  # a reply over the frame cap: a bug, said plainly
            log.error("reply to %s too large: %s", method, exc)
            conn.send(_error(request_id, "internal", f"reply too large: {exc}"))
        except Exception as exc:
            if self.stopping.is_set():
                conn.send(_error(request_id, "stopping", "the engine is stopping"))
                return
            if store_unavailable(exc):  # its transaction rolled back: nothing changed
                conn.send(_error(request_id, "store_unavailable", (
                    f"the store cannot be written now ({exc}): another process holds "
                    f"{self.paths.store} locked, or its disk is full; try again"
                )))
                return
            if is_damage(exc):  # damage in pages only now read: name the file, and the way out
                log.error("request %s: %s", method, exc)
                said = damage_message(self.paths.store, str(exc))
                conn.send(_error(request_id, "store_damaged", said))
                return
            log.exception("request %s failed", method)
            conn.send(_error(request_id, "internal", f"internal error: {exc}"))

    # -- life ---------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while not self.stopping.is_set():
            behind = False
            try:
                behind = self.supervisor.tick()
                self._publish_logs()
                self.live_workers = [
                    (live.run_id, live.pid, live.pgid)
                    for live in self.supervisor.live.values()
                    if live.pid is not None and live.pgid is not None
                ]
            except Exception:
                log.exception("tick failed")
            # Behind (a backlog of spools): go on at once, after the loop has had its turn.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0 if behind else TICK_SECONDS)

    async def serve(self) -> None:
        """Serve until ``shutdown`` or SIGTERM/SIGINT; runs are left running.

        The caller has adopted the runs a previous daemon left (``adopt_all``).
        """
        self.paths.socket.unlink(missing_ok=True)
        old_umask = os.umask(0o177)  # the socket is born 0600
        try:
            server = await asyncio.start_unix_server(
                self.handle_connection,
                path=str(self.paths.socket),
                limit=protocol.MAX_FRAME + protocol.HEADER_SIZE,
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.paths.socket, 0o600)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        log.info("engine %d serving on %s", os.getpid(), self.paths.socket)
        ticker = asyncio.create_task(self._tick_forever())
        self.telemetry.start(loop)
        await self.stopping.wait()
        for reader in list(self.engine.readers):
            reader.db.interrupt()
        self.readers.shutdown(wait=False, cancel_futures=True)
        self.telemetry.stop()
        server.close()
        for conn in list(self.connections):
            await _drain_quietly(conn.writer)
            conn.writer.close()
        await ticker
        self.paths.socket.unlink(missing_ok=True)
        self.supervisor.tick()  # store what workers wrote up to the last moment
        self.store.close()
        log.info("engine %d stopped; %d runs left running", os.getpid(), len(self.supervisor.live))


async def _drain_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 1.0)


def _error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "error": {"code": code, "message": message}}


def _refuse(paths: StatePaths, reason: str) -> int:
    """Say why the daemon cannot start, on stderr and in engine.error for its client."""
    print(f"traintop engine: {reason}", file=sys.stderr)
    paths.start_error.write_text(f"{reason}\n")
    return 1


def run_daemon(paths: StatePaths) -> int:
    """Run a daemon for ``paths`` in this process; 0 also when one already runs."""
    # Every file the daemon, its shims and its workers make is private to the user.
    os.umask(PRIVATE_UMASK)
    try:
        check_state_dir(paths)  # a tree another user controls: write nothing in it
    except UnsafeStateDir as exc:
        print(f"traintop engine: {exc}", file=sys.stderr)
        return 1
    ensure_private_dir(paths.home)
    ensure_private_dir(paths.runs)
    try:
        lock = acquire_lock(paths)
    except AlreadyRunning as exc:
        print(exc, file=sys.stderr)
        return 0
    # Walked by the daemon that will serve only, not by one that finds another running.
    try:
        tidied = tidy_tree(paths)
    except UnsafeStateDir as exc:
        lock.close()
        return _refuse(paths, str(exc))
    if tidied.modes_fixed:
        log.info("made %d files and directories private (0600/0700)", tidied.modes_fixed)
    for path in tidied.temporaries_removed:
        log.info("removed %s, left by a writer that is gone", path)
    try:
        check_store(paths)
        upgrade = store_upgrade(paths.store)
        if upgrade:
            log.info("%s", upgrade)
            paths.upgrading.write_text(f"{os.getpid()} {upgrade}\n")
        try:
            daemon = Daemon(paths)
            daemon.supervisor.adopt_all()
        finally:
            paths.upgrading.unlink(missing_ok=True)
    except StoreError as exc:
        lock.close()
        return _refuse(paths, str(exc))
    except sqlite3.DatabaseError as exc:  # damage the quick checks did not see
        lock.close()
        return _refuse(paths, damage_message(paths.store, str(exc)))
    paths.start_error.unlink(missing_ok=True)
    try:
        asyncio.run(daemon.serve())
    finally:
        lock.close()
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_daemon(StatePaths(state_home()))


if __name__ == "__main__":
    sys.exit(main())
