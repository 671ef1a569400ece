"""The daemon's side of each client connection: checks, handshake, requests.

A connection is served only for this user (its peer uid, ``SO_PEERCRED``),
after a version handshake, and while fewer than ``MAX_CONNECTIONS`` are open.
Its requests are answered in order: reads on the reader threads, so the event
loop goes on ingesting, and everything else on the loop. Every failure a
client can cause is an error frame; the connection goes on where it can.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

from engine.common import protocol
from engine.server.fanout import Connection, Fanout
from engine.server.service import READS, Engine, RequestError
from engine.server.store import store_unavailable
from engine.server.store_health import damage_message, is_damage

log = logging.getLogger("traintop.daemon")

# Connections served at once, those still shaking hands included; one more is refused
# with an error frame. Each holds a file descriptor, and the daemon's are few (often
# 1,024) and also needed for the store, spools and shims. A TUI holds two or three.
MAX_CONNECTIONS = 256
# Seconds a new connection has to send its handshake.
HANDSHAKE_TIMEOUT_S = 10.0
# Seconds a connection may go without a request before it is closed, unless it
# subscribed: a TUI that only listens to events may sit quiet for days.
IDLE_TIMEOUT_S = 600.0


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)



def _error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    """An error frame answering ``request_id`` (None: no request of its own)."""
    return {"id": request_id, "error": {"code": code, "message": message}}


class ConnectionServer:
    """Serves each client connection until it ends or the daemon stops."""

    def __init__(
        self,
        engine: Engine,
        fanout: Fanout,
        readers: concurrent.futures.Executor,
        stopping: asyncio.Event,
        store_path: Path,
    ) -> None:
        self.engine = engine
        self.fanout = fanout
        self.readers = readers
        self.stopping = stopping
        self.store_path = store_path
        self.open_connections = 0  # handshaking ones too, unlike ``fanout.connections``

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one connection (``asyncio.start_unix_server``'s callback) to its end."""
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
            self.fanout.connections.add(conn)
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
            self.fanout.connections.discard(conn)
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
                result = self.fanout.subscribe(conn, params, self.engine.resolve)
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
                    f"{self.store_path} locked, or its disk is full; try again"
                )))
                return
            if is_damage(exc):  # damage in pages only now read: name the file, and the way out
                log.error("request %s: %s", method, exc)
                self.engine.store.note_damage(exc)  # written no more, said everywhere
                said = self.engine.store.problem() or damage_message(self.store_path, str(exc))
                conn.send(_error(request_id, "store_damaged", said))
                return
            log.exception("request %s failed", method)
            conn.send(_error(request_id, "internal", f"internal error: {exc}"))
