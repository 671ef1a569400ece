"""The telemetry thread: one ``Sample`` per tick, kept in a ring buffer and handed to a callback."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from engine.common.telemetry import GpuSample, OtherGpuProcess, RunUsage, Sample
from engine.server.telemetry.host import HostReader
from engine.server.telemetry.nvml import GpuReader
from engine.server.telemetry.run_usage import RunRef, RunUsageReader

log = logging.getLogger(__name__)
T = TypeVar("T")


class TelemetrySampler:
    """Samples host, GPUs and runs every ``interval`` seconds on its own thread.

    ``runs`` is called on the sampler thread each tick and returns (run id,
    worker pid, worker process group) for every live worker. ``on_sample`` is
    called on the sampler thread with each new sample. Ticks sit on a fixed
    grid: a slow tick delays only itself, and ticks it overran are skipped,
    never made up in a burst. The sampler owns ``gpu_reader`` (default: the
    real NVML) and closes it on stop.
    """

    def __init__(
        self,
        runs: Callable[[], list[RunRef]],
        on_sample: Callable[[Sample], None],
        interval: float = 1.0,
        history_seconds: float = 600.0,
        gpu_reader: GpuReader | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._runs = runs
        self._on_sample = on_sample
        self.interval = interval
        self._gpu = gpu_reader if gpu_reader is not None else GpuReader()
        self._history: collections.deque[Sample] = collections.deque(
            maxlen=max(1, math.ceil(history_seconds / interval)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: dict[str, str] = {}

    def start(self) -> None:
        """Start the sampler thread; returns at once. The first sample comes one interval later."""
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish and wait for it (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def latest(self) -> Sample | None:
        """The newest sample, or None before the first."""
        with self._lock:
            return self._history[-1] if self._history else None

    def history(self, seconds: float | None = None) -> list[Sample]:
        """Samples of the last ``seconds`` (all that are kept when None), oldest first."""
        with self._lock:
            samples = list(self._history)
        if seconds is None or not samples:
            return samples
        since = samples[-1].time - seconds
        return [sample for sample in samples if sample.time >= since]

    def _loop(self) -> None:
        host = self._guard("host reader", HostReader)
        runs = RunUsageReader()
        next_tick = time.monotonic() + self.interval
        try:
            while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
                sample = self._take(host, runs)
                with self._lock:
                    self._history.append(sample)
                self._guard("on_sample callback", partial(self._on_sample, sample))
                next_tick += self.interval
                now = time.monotonic()
                if now > next_tick:  # overran: skip to the next grid point still ahead
                    next_tick += math.ceil((now - next_tick) / self.interval) * self.interval
        finally:
            self._gpu.close()

    def _take(self, host: HostReader | None, runs: RunUsageReader) -> Sample:
        when = time.time()
        read_host = None if host is None else self._guard("host reader", host.read)
        gpus = self._guard("GPU reader", self._gpu.read) or []
        refs = self._guard("runs callable", self._runs) or []
        gpu_pids = {process.pid for gpu in gpus for process in gpu.processes}
        usages = self._guard("run reader", partial(runs.read, refs, gpu_pids)) or {}
        others = attribute_gpu_memory(gpus, usages, runs)
        return Sample(when, read_host, gpus, usages, others, self._gpu.status)

    def _guard(self, what: str, call: Callable[[], T]) -> T | None:
        """``call()``, or None after logging its exception (once per distinct message)."""
        try:
            result = call()
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            if self._errors.get(what) != message:
                self._errors[what] = message
                log.exception("telemetry: %s failed", what)
            return None
        self._errors.pop(what, None)
        return result


def attribute_gpu_memory(
    gpus: list[GpuSample], usages: dict[str, RunUsage], runs: RunUsageReader
) -> list[OtherGpuProcess]:
    """Add each GPU process's memory to its run's ``gpu_memory``; return the rest as others."""
    others: list[OtherGpuProcess] = []
    for gpu in gpus:
        for process in gpu.processes:
            run_id = runs.run_of(process.pid)
            usage = usages.get(run_id) if run_id is not None else None
            if usage is not None:
                held = usage.gpu_memory.get(gpu.index, 0)
                usage.gpu_memory[gpu.index] = held + (process.used_memory or 0)
            else:
                user, command = runs.describe(process.pid)
                others.append(OtherGpuProcess(gpu.index, process.pid, process.used_memory,
                                              user, command))
    return others
