"""An asyncio client of the engine daemon, for event-driven programs like the TUI.

Replies are matched to requests by id; events are decoded into the types of
``engine.client.events`` and go to a queue that the owner drains. One reader
task per connection; ``closed`` resolves when the connection ends, so the
owner can reconnect. A malformed event ends the connection like a malformed
frame does, and ``failure`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

from engine.client.client import (
    HELLO_PATIENCE_S,
    START_POLL_S,
    START_TIMEOUT,
    EngineError,
    EngineSilent,
    EngineUnavailable,
    check_safe,
    hello_silence,
    start_daemon,
    start_wait,
)
from engine.client.events import (
    EmaSeed,
    Event,
    RunInfo,
    SeriesView,
    decode_events,
    metric_values,
)
from engine.common import protocol
from engine.common.telemetry import Sample
from engine.common.wire import decoding, wire_dict, wire_list
from engine.rundir.paths import StatePaths, state_home


class AsyncClient:
    """One connection: ``await call(...)`` for requests, ``events`` for the stream."""

    def __init__(self, home: Path | None = None) -> None:
        """A client of the daemon of state directory ``home`` (None: the default one)."""
        self.paths = StatePaths(home if home is not None else state_home())
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.closed: asyncio.Event = asyncio.Event()
        self.failure: str | None = None  # why the connection ended, if the engine misspoke
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, autostart: bool = True) -> AsyncClient:
        """Connect and shake hands, starting the daemon first if allowed and needed."""
        check_safe(self.paths)
        try:
            await self._open()
            return self
        except (FileNotFoundError, ConnectionRefusedError):
            if not autostart:
                raise EngineUnavailable(f"no traintop engine runs for {self.paths.home}") from None
        pid = start_daemon(self.paths)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline: float | None = started + START_TIMEOUT
        while deadline is not None:
            try:
                await self._open()
                return self
            except (FileNotFoundError, ConnectionRefusedError):
                deadline = start_wait(self.paths, pid, started, deadline, loop.time())
                await asyncio.sleep(START_POLL_S)
        raise EngineUnavailable(f"the traintop engine did not start; see {self.paths.daemon_log}")

    async def _open(self) -> None:
        reader, writer = await asyncio.open_unix_connection(str(self.paths.socket))
        writer.write(protocol.encode(protocol.hello()))
        answer = asyncio.create_task(_read_frame(reader))
        started = asyncio.get_running_loop().time()
        while not (await asyncio.wait({answer}, timeout=HELLO_PATIENCE_S))[0]:
            try:
                hello_silence(self.paths, asyncio.get_running_loop().time() - started)
            except EngineSilent:
                answer.cancel()
                writer.close()
                raise
        reply = answer.result()
        if "error" in reply:
            writer.close()
            raise EngineUnavailable(str(reply["error"].get("message", "handshake refused")))
        protocol.check_hello(reply)
        self._reader, self._writer = reader, writer
        self.failure = None
        self.closed.clear()
        self._task = asyncio.create_task(self._read_forever())

    async def _read_forever(self) -> None:
        assert self._reader is not None
        try:
            while True:
                message = await _read_frame(self._reader)
                if "event" in message:
                    for event in decode_events(message):
                        self.events.put_nowait(event)
                    continue
                future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                if future is None or future.done():
                    continue
                if "error" in message:
                    error = message["error"]
                    future.set_exception(
                        EngineError(str(error.get("code")), str(error.get("message")))
                    )
                else:
                    future.set_result(message.get("result"))
        except protocol.ProtocolError as exc:
            self.failure = str(exc)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(EngineUnavailable("lost the engine"))
            self._pending.clear()
            self.closed.set()

    async def call(self, method: str, **params: Any) -> Any:
        """Send a request and wait for its result; EngineError if refused."""
        if self._writer is None or self.closed.is_set():
            raise EngineUnavailable("not connected")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(protocol.encode({"id": request_id, "method": method, "params": params}))
        return await future

    async def all_pages(self, method: str, items: str, **params: Any) -> list[Any]:
        """Every item of a paged reply (``metrics``, ``list_runs``), fetched page by page."""
        found: list[Any] = []
        cursor = None
        while True:
            page = await self.call(method, **params, cursor=cursor)
            found += page[items]
            cursor = page["next"]
            if cursor is None:
                return found

    async def all_runs(self) -> list[RunInfo]:
        """Every run, in creation order, as listed (with its latest and best metric values)."""
        listed = await self.all_pages("list_runs", "runs", best=True)
        return [RunInfo.from_wire(run) for run in listed]

    async def highest_values(self) -> dict[str, dict[str, float]]:
        """Each run's highest value of each metric so far, by run id (a brief listing)."""
        listed = await self.all_pages("list_runs", "runs", brief=True, highest=True)
        with decoding("a run's highest values"):  # (none from a daemon older than 'max:')
            return {str(run["id"]): metric_values(run.get("highest", {}), "a run's highest")
                    for run in listed}

    async def ema_seeds(self, smoothing: float) -> list[EmaSeed]:
        """Every run's EMA state of its loss at ``smoothing`` (a brief listing: no rows)."""
        listed = await self.all_pages("list_runs", "runs", smoothing=smoothing, brief=True)
        return [EmaSeed.from_wire(run) for run in listed]

    async def series(
        self,
        run: str,
        key: str,
        buckets: int,
        axis: str,
        smoothing: float | None,
        window: tuple[float, float] | None = None,
    ) -> SeriesView:
        """One run's metric ``key`` at ``buckets`` buckets along ``axis`` (step or time),
        over ``window`` (lo, hi) of that axis, or over the whole series when None."""
        bounds = {} if window is None else {"lo": window[0], "hi": window[1]}
        reply = await self.call(
            "series", run=run, key=key, buckets=buckets, axis=axis, smoothing=smoothing,
            **bounds,
        )
        return SeriesView.from_wire(reply)

    async def telemetry(self, seconds: float) -> list[Sample]:
        """The telemetry samples of the last ``seconds``, oldest first."""
        reply = await self.call("telemetry", seconds=seconds)
        history = wire_list(wire_dict(reply, "telemetry reply").get("history"), "telemetry history")
        return [Sample.from_wire(sample) for sample in history]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self.closed.set()


async def _read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    header = await reader.readexactly(protocol.HEADER_SIZE)
    body = await reader.readexactly(protocol.frame_length(header))
    return protocol.decode(body)
