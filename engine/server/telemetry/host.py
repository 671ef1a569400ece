"""Host-wide figures through psutil: CPU per core, load, RAM, swap, disk and network rates."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import psutil

from engine.common.telemetry import HostSample


class HostReader:
    """Reads the host once per tick; rates come from the difference to the previous read.

    CPU percentages are computed from ``psutil.cpu_times`` deltas kept here,
    not ``psutil.cpu_percent``, whose baseline is global to the process and
    would be reset by any other caller.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cpu_times = psutil.cpu_times(percpu=True)
        self._io: tuple[float, Any, Any] = (clock(), _disk(), _net())

    def read(self) -> HostSample:
        """One host sample; disk and network rates are None where the OS gives no counters."""
        cpu_times = psutil.cpu_times(percpu=True)
        pairs = zip(self._cpu_times, cpu_times, strict=False)
        per_core = [round(_busy_percent(old, new), 1) for old, new in pairs]
        self._cpu_times = cpu_times
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        one, five, fifteen = os.getloadavg()
        now, disk, net = self._clock(), _disk(), _net()
        then, old_disk, old_net = self._io
        elapsed = now - then
        rates: dict[str, float | None] = {}
        if elapsed > 0 and disk is not None and old_disk is not None:
            rates["disk_read_bps"] = _rate(disk.read_bytes - old_disk.read_bytes, elapsed)
            rates["disk_write_bps"] = _rate(disk.write_bytes - old_disk.write_bytes, elapsed)
        if elapsed > 0 and net is not None and old_net is not None:
            rates["net_rx_bps"] = _rate(net.bytes_recv - old_net.bytes_recv, elapsed)
            rates["net_tx_bps"] = _rate(net.bytes_sent - old_net.bytes_sent, elapsed)
        self._io = (now, disk, net)
        return HostSample(
            cpu_percent=round(sum(per_core) / len(per_core), 1) if per_core else 0.0,
            cpu_per_core=per_core,
            load_average=(round(one, 2), round(five, 2), round(fifteen, 2)),
            # total - available is what programs can no longer get: it leaves page cache out.
            memory_used=int(memory.total - memory.available),
            memory_total=int(memory.total),
            swap_used=int(swap.used),
            swap_total=int(swap.total),
            **rates,
        )


def _busy_percent(old: Any, new: Any) -> float:
    """Percent of the interval between two ``cpu_times`` a core spent not idle."""
    def idle_and_total(times: Any) -> tuple[float, float]:
        total = sum(times)
        # Linux counts guest time inside user and nice as well; do not count it twice.
        total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        return times.idle + getattr(times, "iowait", 0.0), total

    old_idle, old_total = idle_and_total(old)
    new_idle, new_total = idle_and_total(new)
    elapsed = new_total - old_total
    if elapsed <= 0:
        return 0.0
    busy = elapsed - (new_idle - old_idle)
    return max(0.0, min(100.0, 100.0 * busy / elapsed))


def _rate(delta: int, elapsed: float) -> float:
    """Bytes per second, whole; a counter that went backwards (wrapped, reset) reads 0."""
    return float(round(max(0, delta) / elapsed))


def _disk() -> Any:
    try:
        return psutil.disk_io_counters()
    except (OSError, RuntimeError):
        return None


def _net() -> Any:
    try:
        return psutil.net_io_counters()
    except (OSError, RuntimeError):
        return None
