"""A blocking client of the engine daemon, used by the CLI and the tests.

``Client.connect()`` starts the daemon on demand: if nothing answers on the
socket it launches ``python -m engine.daemon`` in a new session (so it
outlives this terminal) and waits for the socket.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import time
from collections import deque
from typing import Any

from engine import protocol
from engine.paths import StatePaths, child_env, ensure_private_dir, state_home

START_TIMEOUT = 15.0


class EngineError(Exception):
    """The daemon refused a request; ``message`` is one line for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EngineUnavailable(Exception):
    """No daemon could be reached or started."""


def start_daemon(paths: StatePaths) -> None:
    """Launch a detached daemon for ``paths`` (it exits at once if one already runs).

    A shell in a new session starts the daemon in the background and exits,
    so the daemon is nobody's child: it survives this process, and this
    process is never left with a zombie to reap when the daemon stops.
    """
    ensure_private_dir(paths.home)
    paths.start_error.unlink(missing_ok=True)  # only this start's failure counts
    env = child_env(TRAINTOP_HOME=str(paths.home))
    with open(paths.daemon_log, "ab") as log_file:
        launcher = subprocess.Popen(
            ["/bin/sh", "-c", '"$0" -m engine.daemon </dev/null &', sys.executable],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd="/",
        )
    launcher.wait()


def check_start_error(paths: StatePaths) -> None:
    """Raise EngineUnavailable with the daemon's own reason if it could not start."""
    try:
        reason = paths.start_error.read_text().strip()
    except FileNotFoundError:
        return
    paths.start_error.unlink(missing_ok=True)
    raise EngineUnavailable(f"the traintop engine could not start: {reason}")


class Client:
    """One connection to the daemon: requests, and optionally an event stream."""

    def __init__(self, paths: StatePaths | None = None) -> None:
        self.paths = paths or StatePaths(state_home())
        self.sock: socket.socket | None = None
        self.server_pid: int | None = None
        self._ids = itertools.count(1)
        self._buffer = b""
        self._events: deque[dict[str, Any]] = deque()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def connect(self, autostart: bool = True, timeout: float = START_TIMEOUT) -> Client:
        """Connect (starting the daemon if needed and allowed) and shake hands."""
        try:
            self._connect_once()
            return self
        except (FileNotFoundError, ConnectionRefusedError):
            if not autostart:
                raise EngineUnavailable(f"no traintop engine runs for {self.paths.home}") from None
        start_daemon(self.paths)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._connect_once()
                return self
            except (FileNotFoundError, ConnectionRefusedError):
                check_start_error(self.paths)
                time.sleep(0.05)
        raise EngineUnavailable(f"the traintop engine did not start; see {self.paths.daemon_log}")

    def _connect_once(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.paths.socket))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self._buffer = b""
        self._send(protocol.hello())
        reply = self._recv()
        if "error" in reply:
            self.close()
            raise EngineUnavailable(reply["error"].get("message", "handshake refused"))
        protocol.check_hello(reply)
        self.server_pid = reply.get("pid")

    def _send(self, message: dict[str, Any]) -> None:
        if self.sock is None:
            raise EngineUnavailable("not connected")
        self.sock.sendall(protocol.encode(message))

    def _recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame; TimeoutError if none within ``timeout``."""
        if self.sock is None:
            raise EngineUnavailable("not connected")
        self.sock.settimeout(timeout)
        while True:
            if len(self._buffer) >= protocol.HEADER_SIZE:
                length = protocol.frame_length(self._buffer[: protocol.HEADER_SIZE])
                end = protocol.HEADER_SIZE + length
                if len(self._buffer) >= end:
                    body, self._buffer = (
                        self._buffer[protocol.HEADER_SIZE : end],
                        self._buffer[end:],
                    )
                    return protocol.decode(body)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                raise
            except OSError as exc:
                raise EngineUnavailable(f"lost the engine: {exc}") from None
            if not chunk:
                raise EngineUnavailable("the engine closed the connection")
            self._buffer += chunk

    def call(self, method: str, **params: Any) -> Any:
        """Send one request and return its result; EngineError if refused."""
        request_id = next(self._ids)
        self._send({"id": request_id, "method": method, "params": params})
        while True:
            message = self._recv()
            if "event" in message:
                self._events.append(message)
                continue
            if message.get("id") not in (request_id, None):
                continue
            if "error" in message:
                error = message["error"]
                raise EngineError(str(error.get("code")), str(error.get("message")))
            return message.get("result")

    def all_metrics(self, run: str, key: str | None = None) -> list[list[Any]]:
        """Every point of a run (or of one key), fetched page by page."""
        points: list[list[Any]] = []
        after = None
        while True:
            page = self.call("metrics", run=run, key=key, after=after)
            if not page:
                return points
            points += page
            after = [page[-1][1], page[-1][0]]

    def subscribe(self, topics: list[str], runs: list[str] | None = None) -> Any:
        return self.call("subscribe", topics=topics, runs=runs)

    def next_event(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event of a subscription, or None after ``timeout`` seconds."""
        if self._events:
            return self._events.popleft()
        try:
            message = self._recv(timeout)
        except TimeoutError:
            return None
        return message if "event" in message else None
