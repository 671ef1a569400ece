"""The daemon's side of telemetry: run the sampler, publish, store, serve history.

The sampler thread hands each sample to the event loop; there it is
published on the ``telemetry`` topic, and every ``store_every``-th sample is
written to the store (a day at 1 Hz would otherwise be ~100 MB of samples).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from engine.server.store import Store
from engine.server.telemetry import GpuReader, Sample, TelemetrySampler, demo_nvml
from engine.server.telemetry.fake_nvml import FileFakeNvml

RunsProvider = Callable[[], list[tuple[str, int, int]]]

DEFAULT_INTERVAL = 1.0
STORE_EVERY = 10
RETENTION_SECONDS = 7 * 24 * 3600
PRUNE_EVERY_SECONDS = 3600


def interval_from_env() -> float:
    """``TRAINTOP_TELEMETRY_INTERVAL`` seconds (default 1), clamped to something sane."""
    try:
        value = float(os.environ.get("TRAINTOP_TELEMETRY_INTERVAL", DEFAULT_INTERVAL))
    except ValueError:
        value = DEFAULT_INTERVAL
    return min(max(value, 0.05), 3600.0)


def gpu_reader_from_env() -> GpuReader | None:
    """``TRAINTOP_FAKE_GPUS=N`` shows N simulated GPUs (demos on GPU-less machines);
    ``TRAINTOP_FAKE_GPUS=FILE.json``, GPUs that file describes (tests of placement)."""
    fake = os.environ.get("TRAINTOP_FAKE_GPUS", "")
    if fake.isdigit() and int(fake) > 0:
        return GpuReader(demo_nvml(int(fake)))
    if fake.endswith(".json"):
        return GpuReader(FileFakeNvml(fake))
    return None


class TelemetryFeed:
    """Owns the sampler for the daemon's lifetime."""

    def __init__(
        self,
        store: Store,
        publish: Callable[[str, dict[str, Any]], None],
        runs: RunsProvider,
        interval: float | None = None,
        store_every: int = STORE_EVERY,
    ) -> None:
        self.store = store
        self.publish = publish
        self.interval = interval_from_env() if interval is None else interval
        self.store_every = store_every
        self._runs = runs
        self._count = 0
        self._last_prune = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peaks: dict[str, int] = {}  # the GPU memory peak stored for each run seen
        self.sampler = TelemetrySampler(
            runs, self._from_thread, interval=self.interval, gpu_reader=gpu_reader_from_env()
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()

    def _from_thread(self, sample: Sample) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_sample, sample)

    def _on_sample(self, sample: Sample) -> None:
        data = sample.to_dict()
        problem = self.store.problem()
        self.publish("telemetry", {**data, "store_problem": problem} if problem else data)
        self._note_peaks(sample)
        self._count += 1
        store_now = self._count % self.store_every == 1 or self.store_every == 1
        prune_now = sample.time - self._last_prune > PRUNE_EVERY_SECONDS
        if not (store_now or prune_now):
            return
        if not self.store.may_write():  # locked: not waited on here (the loop would stall)
            return
        try:
            if store_now:
                self.store.add_telemetry(sample.time, data)
            if prune_now:
                self._last_prune = sample.time
                self.store.prune_telemetry(sample.time - RETENTION_SECONDS)
        except sqlite3.OperationalError as exc:
            # Locked or full: this sample is not stored (it was published; the
            # next ones may be). Anything else is a bug, and goes up.
            if not self.store.write_failed(exc):
                raise
            return
        self.store.write_succeeded()

    def _note_peaks(self, sample: Sample) -> None:
        """Store each run's GPU memory when it passes the peak stored (placement uses it)."""
        for run_id, usage in sample.runs.items():
            held = sum(usage.gpu_memory.values())
            if not held:
                continue
            if run_id not in self._peaks:
                run = self.store.get_run(run_id)
                self._peaks[run_id] = int(run["gpu_peak"] or 0) if run else 0
            if held > self._peaks[run_id] and self.store.may_write():
                try:
                    self.store.update_run(run_id, gpu_peak=held)
                except sqlite3.OperationalError as exc:
                    if not self.store.write_failed(exc):
                        raise
                    continue
                self._peaks[run_id] = held

    def gpu_view(self) -> tuple[dict[int, tuple[int | None, int | None]], dict[str, int]]:
        """Memory per GPU and the GPU bytes each run holds, from the latest sample."""
        sample = self.sampler.latest()
        if sample is None:
            return {}, {}
        totals = {g.index: (g.memory_total, g.memory_used) for g in sample.gpus}
        held = {run_id: sum(u.gpu_memory.values()) for run_id, u in sample.runs.items()}
        return totals, held

    def latest(self) -> dict[str, Any] | None:
        sample = self.sampler.latest()
        return sample.to_dict() if sample is not None else None

    def history(self, seconds: float) -> list[dict[str, Any]]:
        """Samples of the last ``seconds``: the ring buffer, preceded by stored ones."""
        recent = [s.to_dict() for s in self.sampler.history(seconds)]
        since = time.time() - seconds
        until = recent[0]["time"] if recent else None
        return self.store.telemetry(since, until) + recent
