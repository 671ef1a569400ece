"""Keeps the TUI connected to the daemon and feeds what it says into the state.

Two connections: the main one carries requests and the run, metric and
telemetry events; a second one follows the logs of the selected run (a
subscription narrowed to one run would narrow the main stream too). Lost
connections are retried with a capped backoff; the app shows a banner
meanwhile and never waits on the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from engine.client.aclient import AsyncClient
from engine.client.client import EngineError, EngineUnavailable, silence_text
from engine.client.events import EmaSeed, LogText, ProtocolError, RunDescription, SeriesView
from tui.state import TuiState

T = TypeVar("T")

TELEMETRY_HISTORY_S = 600.0
QUIET_S = 10.0  # see EngineLink._pump
LOG_TAIL_BYTES = 32 * 1024


class EngineLink:
    """The main connection, reconnecting forever until ``stop``."""

    def __init__(
        self,
        home: Path | None,
        state: TuiState,
        on_status: Callable[[str | None], None],
        on_connected: Callable[[], None],
        autostart: bool = True,
        on_runs: Callable[[], None] = lambda: None,
    ) -> None:
        self.home = home  # the state directory; None: the default one
        self.state = state
        self.on_status = on_status
        self.on_connected = on_connected
        self.on_runs = on_runs  # the runs are listed: draw them now, not at the next tick
        self.autostart = autostart
        self.client: AsyncClient | None = None
        self._stopping = False

    async def run(self) -> None:
        backoff = 0.25
        while not self._stopping:
            client = AsyncClient(self.home)
            try:
                await client.connect(autostart=self.autostart)
                # batch: each tick's metrics in one frame, not one frame a run
                await client.call("subscribe", topics=["runs", "metrics", "telemetry"],
                                  batch=True)
                self.client = client
                self.state.connected = True
                self.on_connected()
                # The table first, drawn at once; the EMA column (a little work per run),
                # each metric's highest value (for a 'max:acc>0.9' filter) and the
                # telemetry history right after.
                self.state.set_runs(await client.all_runs())
                self.on_runs()
                self.state.set_emas(await self._listed())
                self.state.set_highest(await self._aside(AsyncClient.highest_values))
                self.state.set_telemetry(await client.telemetry(TELEMETRY_HISTORY_S))
                self.on_status(None)
                backoff = 0.25
                await self._pump(client)
                why = f" ({client.failure})" if client.failure else ""
                status = f"lost the engine{why}; reconnecting…"
            except (EngineUnavailable, EngineError, ProtocolError, OSError) as exc:
                status = f"engine unreachable: {exc}; retrying"
            finally:
                self.client = None
                self.state.connected = False
                await client.close()
            if not self._stopping:
                self.on_status(status)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _pump(self, client: AsyncClient) -> None:
        """Apply the engine's events until the connection ends. An engine that sends
        nothing for QUIET_S (telemetry alone comes every second) is pinged; one that
        does not answer that either is said to be silent, with the time of what the
        screen shows, until it speaks again."""
        closed = asyncio.create_task(client.closed.wait())
        ping: asyncio.Task[Any] | None = None
        heard = time.time()
        silent = False
        try:
            while True:
                getter = asyncio.create_task(client.events.get())
                done, _ = await asyncio.wait({getter, closed}, timeout=QUIET_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if closed in done:
                        return
                    if ping is None or ping.done():
                        ping = asyncio.create_task(client.call("ping"))
                        ping.add_done_callback(_ignore_outcome)
                    elif not silent:
                        silent = True
                        self.on_status(silence_text(client.paths, heard))
                    continue
                heard = time.time()
                if silent:
                    silent = False
                    self.on_status(None)
                self.state.apply_event(getter.result())
                while not client.events.empty():
                    self.state.apply_event(client.events.get_nowait())
        finally:
            closed.cancel()

    async def _listed(self) -> list[EmaSeed]:
        """Every run's EMA state of its loss at the state's smoothing."""
        smoothing = self.state.smoothing
        return await self._aside(lambda client: client.ema_seeds(smoothing))

    async def _aside(self, ask: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """``ask`` on a connection of its own: the daemon answers one connection's requests
        in order, and a listing (a little work per run) must not hold up the chart's."""
        client = AsyncClient(self.home)
        try:
            await client.connect(autostart=False)
            return await ask(client)
        finally:
            await client.close()

    async def reseed_emas(self) -> None:
        """The EMA column again, after the smoothing changed (one listing, no points)."""
        if self.client is not None:
            self.state.set_emas(await self._listed())

    async def call(self, method: str, **params: Any) -> Any:
        """A request on the main connection; EngineUnavailable while disconnected."""
        if self.client is None:
            raise EngineUnavailable("not connected to the engine")
        return await self.client.call(method, **params)

    async def series(
        self,
        run: str,
        key: str,
        buckets: int,
        axis: str,
        smoothing: float | None,
        window: tuple[float, float] | None = None,
    ) -> SeriesView:
        """One run's view of metric ``key`` for the chart (see ``AsyncClient.series``)."""
        if self.client is None:
            raise EngineUnavailable("not connected to the engine")
        return await self.client.series(run, key, buckets, axis, smoothing, window)

    async def describe(self, run_id: str) -> RunDescription:
        """Everything the daemon says about one run (its detail screen)."""
        return RunDescription.from_wire(await self.call("get_run", run=run_id, size=True))

    async def stop(self) -> None:
        self._stopping = True
        if self.client is not None:
            await self.client.close()


def _ignore_outcome(task: asyncio.Task[Any]) -> None:
    """A ping's reply or failure is of no interest: losing the engine is seen elsewhere."""
    if not task.cancelled():
        task.exception()


class LogFollower:
    """Follows one run's stdout and stderr on a connection of its own."""

    def __init__(self, home: Path | None, on_text: Callable[[str, str, bool], None]) -> None:
        self.home = home
        self.on_text = on_text  # (stream, text, reset)
        self.run_id: str | None = None
        self._task: asyncio.Task[None] | None = None

    def follow(self, run_id: str | None) -> None:
        if run_id == self.run_id:
            return
        self.run_id = run_id
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.create_task(self._follow(run_id)) if run_id else None

    async def _follow(self, run_id: str) -> None:
        client = AsyncClient(self.home)
        try:
            await client.connect(autostart=False)
            await client.call("subscribe", topics=["logs"], runs=[run_id])
            tail = await client.call("read_log", run=run_id, stream="both",
                                     offset=-LOG_TAIL_BYTES)
            self.on_text("stdout", "", True)
            for stream, text in tail["segments"]:  # both streams, in the order written
                self.on_text(stream, text, False)
            while True:
                event = await client.events.get()
                if isinstance(event, LogText) and event.run == run_id:
                    self.on_text(event.stream, event.text, False)
        except (EngineUnavailable, EngineError, ProtocolError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
