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
import sqlite3
import sys
from collections.abc import Iterable
from typing import IO, Any

from engine.common import protocol
from engine.rundir.paths import StatePaths, state_home, temporary_for
from engine.rundir.state_dir import (
    PRIVATE_UMASK,
    UnsafeStateDir,
    check_state_dir,
    ensure_private_dir,
    tidy_tree,
)
from engine.server.fanout import Fanout
from engine.server.service import Engine, RequestError
from engine.server.socket_server import ConnectionServer
from engine.server.store import Store, StoreError, store_upgrade
from engine.server.store_health import check_store, damage_message
from engine.server.supervisor import Supervisor
from engine.server.telemetry_feed import TelemetryFeed

log = logging.getLogger("traintop.daemon")

TICK_SECONDS = 0.1
# Threads answering read requests, each with its own read-only store connection.
READER_THREADS = 4
# How often (in SQLite VM steps) a reader checks whether the daemon is stopping.
PROGRESS_STEPS = 10_000


class AlreadyRunning(Exception):
    """Another daemon holds the lock of this state directory."""


class MaintenanceError(Exception):
    """Why work on the store that needs the engine stopped (``engine rebuild``,
    ``engine compact``) did not happen, in one line for the user."""


def hold_stopped_store(paths: StatePaths) -> IO[str]:
    """The daemon's lock, for work on the store while no engine runs: the state
    directory checked first, then MaintenanceError if an engine holds the store."""
    check_state_dir(paths)
    try:
        return acquire_lock(paths)
    except AlreadyRunning:
        raise MaintenanceError(
            f"a traintop engine is running for {paths.home}; stop it first "
            "('traintop engine stop'): it holds the store"
        ) from None


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


class Daemon:
    """The store, the supervisor and the request handlers, served on the socket.

    Connections are served by ``socket_server``, events fanned out by ``fanout``;
    the daemon ties them together and ticks the supervisor.
    """

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.store = Store(paths.store)
        self.fanout = Fanout(paths)
        self.supervisor = Supervisor(paths, self.store, self.publish)
        self.engine = Engine(self.store, self.supervisor, own={
            "subscribe": self._no_subscribe_here,
            "shutdown": self._shutdown,
            "telemetry": self._telemetry,
        })
        self.live_workers: list[tuple[str, int, int]] = []
        self.telemetry = TelemetryFeed(self.store, self.publish, lambda: list(self.live_workers))
        self.supervisor.scheduler.gpu_view = self._gpu_view
        self.stopping = asyncio.Event()
        self.engine.interrupted = self.stopping.is_set
        self.readers = concurrent.futures.ThreadPoolExecutor(
            READER_THREADS, "traintop-reader", initializer=self._open_reader
        )
        self.server = ConnectionServer(
            self.engine, self.fanout, self.readers, self.stopping, paths.store
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
        self.fanout.publish(topic, data)

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

    def _gpu_view(self) -> tuple[dict[int, tuple[int | None, int | None]], dict[str, int]]:
        """What the scheduler places runs by: the latest telemetry sample, else NVML at start."""
        totals, held = self.telemetry.gpu_view()
        if not totals:
            totals = {g.index: (g.memory_total, g.memory_used) for g in self.engine.gpus}
        return totals, held

    def _shutdown(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stopping.set()
        return {"stopping": True, "live_runs": len(self.supervisor.live)}

    # -- life ---------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while not self.stopping.is_set():
            behind = False
            try:
                behind = self.supervisor.tick()
                self.fanout.release()  # the tick's metrics, one frame to each batch subscriber
                self.fanout.publish_logs()
                self.live_workers = [
                    (live.run_id, live.pid, live.pgid)
                    for live in self.supervisor.live.values()
                    if live.pid is not None and live.pgid is not None
                ]
            except Exception as exc:
                if not self.store.note_damage(exc):  # (damage: said once, writes stop)
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
                self.server.handle_connection,
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
        self.fanout.release()
        for conn in list(self.fanout.connections):
            await _drain_quietly(conn.writer)
            conn.writer.close()
        await ticker
        self.paths.socket.unlink(missing_ok=True)
        self.supervisor.tick()  # store what workers wrote up to the last moment
        self.supervisor.warm.close()
        self.store.close()
        log.info("engine %d stopped; %d runs left running", os.getpid(), len(self.supervisor.live))


async def _drain_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 1.0)


def _refuse(paths: StatePaths, reason: str) -> int:
    """Say why the daemon cannot start, on stderr and in engine.error for its client."""
    print(f"traintop engine: {reason}", file=sys.stderr)
    # Renamed into place: a client polling for it never reads it half written (empty).
    temporary = temporary_for(paths.start_error)
    temporary.write_text(f"{reason}\n")
    os.replace(temporary, paths.start_error)
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
    # A clean stop takes its socket away: one left says the last engine was killed or
    # crashed (its runs went on; this one adopts them), worth a line in engine status.
    unclean = paths.socket.exists()
    if unclean:
        log.warning("the last engine did not stop cleanly (killed or crashed): its socket "
                    "was left behind; the runs it followed are adopted")
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
            daemon.engine.after_unclean_stop = unclean
            daemon.supervisor.adopt_all()
            daemon.supervisor.resume_searches()
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
