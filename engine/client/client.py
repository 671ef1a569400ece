"""A blocking client of the engine daemon, used by the CLI and the tests.

``Client.connect()`` starts the daemon on demand: if nothing answers on the
socket it launches ``python -m engine.server.daemon`` in a new session (so it
outlives this terminal) and waits for the socket.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from engine.common import protocol
from engine.common.packed import FLOATS, INTS, unpack
from engine.common.run_env import run_env
from engine.rundir.paths import (
    StatePaths,
    child_env,
    private_opener,
    process_alive,
    state_home,
)
from engine.rundir.state_dir import UnsafeStateDir, check_state_dir, ensure_private_dir

START_TIMEOUT = 15.0
# How often a client looks for a daemon it started: a cold `ls` waits on this.
START_POLL_S = 0.01


class EngineError(Exception):
    """The daemon refused a request; ``message`` is one line for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EngineUnavailable(Exception):
    """No daemon could be reached or started."""


class EngineSilent(EngineUnavailable):
    """A daemon holds the socket but does not answer its hello; ``pid`` is its process,
    None if engine.pid names no engine."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


# The daemon's loop answers a hello at once, so one unanswered this long means the
# daemon is stopped (SIGSTOP, a debugger), stuck, or the machine is swapping hard:
# the client says so, and gives up on a stopped one at once, on any other after
# HELLO_GIVE_UP_S. Runs never wait on the daemon, so they train on meanwhile.
HELLO_PATIENCE_S = 10.0
HELLO_GIVE_UP_S = 60.0


# State dirs whose daemon ``start_early`` launched and no client has waited for yet,
# with the daemon's pid.
_STARTED_EARLY: dict[str, int | None] = {}
# How long a daemon that is still alive, but not answering yet, is waited for in all:
# its start (imports, the store opened) can take a minute on a machine busy training.
STARTING_PATIENCE_S = 120.0


def start_early(paths: StatePaths | None = None) -> None:
    """Launch the daemon now, without waiting for it, if none answers for ``paths``
    (this user's state directory by default).

    Called by the ``traintop`` entry point before the imports of a command that
    will need the engine: the daemon's start (a Python process, the store
    opened) then overlaps them. The command's own connect waits for it rather
    than launching a second one. Only a missing socket is looked at, so a
    running engine gets no extra connection: the socket a killed daemon left,
    and a state directory that is not safely ours, are left to that connect.
    """
    paths = paths or StatePaths(state_home())
    try:
        check_state_dir(paths)
    except UnsafeStateDir:
        return
    if not paths.socket.exists():
        _STARTED_EARLY[str(paths.home)] = start_daemon(paths)


def start_daemon(paths: StatePaths) -> int | None:
    """Launch a detached daemon for ``paths`` (it exits at once if one already runs);
    returns its pid (None: not known).

    A shell in a new session starts the daemon in the background, says its pid and
    exits, so the daemon is nobody's child: it survives this process, and this
    process is never left with a zombie to reap when the daemon stops. A daemon
    ``start_early`` launched is waited for instead, once.
    """
    if str(paths.home) in _STARTED_EARLY:
        return _STARTED_EARLY.pop(str(paths.home))
    ensure_private_dir(paths.home)
    paths.start_error.unlink(missing_ok=True)  # only this start's failure counts
    # Only what runs need: runs started with no environment of their own inherit it.
    env = child_env(run_env(os.environ), TRAINTOP_HOME=str(paths.home))
    with open(paths.daemon_log, "ab", opener=private_opener):
        pass  # made private before the shell appends to it
    launcher = subprocess.Popen(
        ["/bin/sh", "-c", '"$0" -m engine.server.daemon </dev/null >>"$1" 2>&1 & echo $!',
         sys.executable, str(paths.daemon_log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        env=env,
        cwd="/",
    )
    said, _ = launcher.communicate()
    return int(said) if said.strip().isdigit() else None


def check_safe(paths: StatePaths) -> None:
    """EngineUnavailable, in one line, if the state directory is not safely ours.

    Checked before connecting: a socket in a directory another user controls
    may be theirs, and every request (an environment, a command) would go to them.
    """
    try:
        check_state_dir(paths)
    except UnsafeStateDir as exc:
        raise EngineUnavailable(str(exc)) from None


def check_start_error(paths: StatePaths) -> None:
    """Raise EngineUnavailable with the daemon's own reason if it could not start."""
    try:
        reason = paths.start_error.read_text().strip()
    except FileNotFoundError:
        return
    paths.start_error.unlink(missing_ok=True)
    raise EngineUnavailable(f"the traintop engine could not start: {reason}")


def upgrade_under_way(paths: StatePaths) -> str | None:
    """What a starting daemon is upgrading (it may take minutes once), or None.

    Clients keep waiting for the socket while this says something.
    """
    try:
        pid, _, what = paths.upgrading.read_text().partition(" ")
        os.kill(int(pid), 0)  # a daemon that died mid-way leaves a stale note
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return what.strip()


def wait_deadline(
    paths: StatePaths, deadline: float, now: float, said: set[str] | None = None
) -> float:
    """The start deadline, pushed on while the daemon upgrades the store.

    With ``said``, the upgrade is told once on stderr (a TUI passes None: its
    screen owns the terminal).
    """
    check_start_error(paths)
    what = upgrade_under_way(paths)
    if what is None:
        return deadline
    if said is not None and what not in said:
        said.add(what)
        print(f"traintop: {what}; this happens once", file=sys.stderr)
    return max(deadline, now + START_TIMEOUT)


def start_wait(
    paths: StatePaths, pid: int | None, started: float, deadline: float, now: float,
    said: set[str] | None = None,
) -> float | None:
    """How long to go on waiting for a daemon being started (``wait_deadline``); None:
    give up.

    Past the deadline, a daemon that is still alive is starting slowly (its imports on
    a machine busy training), not failing: it is waited for up to STARTING_PATIENCE_S
    in all, which ``said`` tells once.
    """
    deadline = wait_deadline(paths, deadline, now, said)
    if now < deadline:
        return deadline
    if pid is None or not process_alive(pid) or now - started >= STARTING_PATIENCE_S:
        return None
    if said is not None and "slow" not in said:
        said.add("slow")
        print(f"traintop: the engine (pid {pid}) is slow to start; waiting", file=sys.stderr)
    return now + START_POLL_S


def engine_pid(paths: StatePaths) -> int | None:
    """The pid engine.pid names, if that process is a traintop engine (a stale file's
    pid may belong to anything by now)."""
    import psutil

    try:
        pid = int(paths.lock.read_text().split()[0])
        return pid if "engine.server.daemon" in psutil.Process(pid).cmdline() else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def hello_silence(paths: StatePaths, waited: float, said: set[str] | None = None) -> None:
    """The engine has not answered a hello for ``waited`` seconds: EngineSilent if it is
    time to give up, else the wait is told once (on stderr, with ``said``)."""
    import psutil

    pid = engine_pid(paths)
    who = f"engine {pid}" if pid is not None else f"the engine on {paths.socket}"
    try:
        stopped = pid is not None and psutil.Process(pid).status() in (
            psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        stopped = False
    end = "runs keep training; 'traintop engine stop' ends it"
    if stopped:
        raise EngineSilent(f"{who} is stopped (SIGSTOP or a debugger: 'kill -CONT {pid}' "
                           f"wakes it) and does not answer; {end}", pid)
    if waited >= HELLO_GIVE_UP_S:
        raise EngineSilent(f"{who} has not answered for {waited:.0f} s (stuck? see "
                           f"{paths.daemon_log}); {end}", pid)
    if said is not None and "silent" not in said:
        said.add("silent")
        print(f"traintop: {who} has not answered for {waited:.0f} s; waiting",
              file=sys.stderr)


def silence_text(paths: StatePaths, heard: float) -> str:
    """A status line for an engine that has answered nothing since ``heard``."""
    pid = engine_pid(paths)
    who = f"engine {pid}" if pid is not None else "the engine"
    return (f"{who} has not answered for {time.time() - heard:.0f} s (stopped or stuck?); "
            f"the screen shows {time.strftime('%H:%M:%S', time.localtime(heard))}")


class Client:
    """One connection to the daemon: requests, and optionally an event stream."""

    def __init__(self, paths: StatePaths | None = None) -> None:
        self.paths = paths or StatePaths(state_home())
        self.sock: socket.socket | None = None
        self.server_pid: int | None = None
        self._ids = itertools.count(1)
        self._buffer = b""
        self._events: deque[dict[str, Any]] = deque()
        # Why the engine cannot write its store, as the last listing said (None: it can).
        self.store_problem: str | None = None

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
        check_safe(self.paths)
        try:
            self._connect_once()
            return self
        except (FileNotFoundError, ConnectionRefusedError):
            if not autostart:
                raise EngineUnavailable(f"no traintop engine runs for {self.paths.home}") from None
        pid = start_daemon(self.paths)
        started = time.monotonic()
        deadline: float | None = started + timeout
        said: set[str] = set()
        while deadline is not None:
            try:
                self._connect_once()
                return self
            except (FileNotFoundError, ConnectionRefusedError):
                deadline = start_wait(self.paths, pid, started, deadline, time.monotonic(), said)
                time.sleep(START_POLL_S)
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
        reply = self._hello_reply()
        if "error" in reply:
            self.close()
            raise EngineUnavailable(reply["error"].get("message", "handshake refused"))
        protocol.check_hello(reply)
        self.server_pid = reply.get("pid")

    def _hello_reply(self) -> dict[str, Any]:
        """The daemon's answer to our hello; EngineSilent if it does not come."""
        started, said = time.monotonic(), set[str]()
        while True:
            try:
                return self._recv(HELLO_PATIENCE_S)
            except TimeoutError:
                try:
                    hello_silence(self.paths, time.monotonic() - started, said)
                except EngineSilent:
                    self.close()
                    raise

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

    def pages(self, method: str, items: str, **params: Any) -> Iterator[list[Any]]:
        """The pages of a paged reply (``metrics``, ``list_runs``), each as it arrives."""
        cursor = None
        while True:
            page = self.call(method, **params, cursor=cursor)
            self.store_problem = page.get("store_problem")
            yield page[items]
            cursor = page["next"]
            if cursor is None:
                return

    def all_pages(self, method: str, items: str, **params: Any) -> list[Any]:
        """Every item of a paged reply."""
        return [item for page in self.pages(method, items, **params) for item in page]

    def all_metrics(self, run: str, key: str | None = None) -> list[list[Any]]:
        """Every point of a run (or of one key)."""
        return self.all_pages("metrics", "points", run=run, key=key)

    def series_blocks(self, run: str, key: str | None = None) -> Iterator[dict[str, Any]]:
        """A run's points as ``{key, start, steps, values, times_us}`` blocks of lists,
        key by key (times in integer microseconds). Asked for packed; a daemon that
        sends lists (one from before packing) is read as well."""
        for page in self.pages("metrics", "series", run=run, key=key, columns=True,
                               packed=True):
            for block in page:
                yield unpacked(block) if "n" in block else block

    def all_runs(
        self, best: bool = False, sizes: bool = False, highest: bool = False
    ) -> list[dict[str, Any]]:
        """Every run, in creation order, as listed (with its latest metric values; with
        ``best`` each metric's lowest value too, with ``highest`` its highest, with
        ``sizes`` its directory's bytes)."""
        return self.all_pages("list_runs", "runs", best=best, sizes=sizes, highest=highest)

    def subscribe(self, topics: list[str], runs: list[str] | None = None,
                  batch: bool = False) -> Any:
        """Events from now on (``next_event``); ``batch``: a tick's metrics in one frame."""
        return self.call("subscribe", topics=topics, runs=runs, batch=batch)

    def next_event(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event of a subscription, or None after ``timeout`` seconds."""
        if self._events:
            return self._events.popleft()
        try:
            message = self._recv(timeout)
        except TimeoutError:
            return None
        return message if "event" in message else None


def unpacked(block: dict[str, Any]) -> dict[str, Any]:
    """A packed block of columns (``engine.common.packed``) as lists; a malformed one
    ends the talk with the engine in one line, as a broken frame does."""
    try:
        count = block["n"]
        if type(count) is not int or count < 0:
            raise ValueError("its length is not a count")
        return {**block, "steps": unpack(block["steps"], INTS, count),
                "values": unpack(block["values"], FLOATS, count),
                "times_us": unpack(block["times_us"], INTS, count)}
    except (KeyError, ValueError) as exc:
        raise EngineUnavailable(f"malformed series from the engine: {exc}") from None
