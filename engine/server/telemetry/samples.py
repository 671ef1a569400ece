"""The telemetry data model: plain dataclasses with a JSON-able ``to_dict`` and ``from_dict``.

A field NVML or the OS cannot give is ``None`` (shown as N/A), never a guess.
Memory is in bytes, rates in bytes per second, CPU in percent of one core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class GpuProcess:
    """A process NVML lists on one GPU; ``used_memory`` is None where NVML withholds it."""

    pid: int
    used_memory: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuProcess:
        """Inverse of ``to_dict``."""
        return cls(pid=data["pid"], used_memory=data["used_memory"])


@dataclass
class GpuSample:
    """One GPU at one instant. Every figure but index is None where the GPU lacks it."""

    index: int
    name: str | None = None
    uuid: str | None = None
    utilization_percent: float | None = None  # SM busy
    memory_utilization_percent: float | None = None  # memory controller (bandwidth) busy
    memory_used: int | None = None
    memory_total: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    # Power against its limit says more than utilization: a GPU can be 100%
    # "utilized" by one tiny kernel at a time while drawing a third of its power.
    power_percent: float | None = None
    sm_clock_mhz: int | None = None
    sm_clock_max_mhz: int | None = None
    fan_percent: float | None = None
    processes: list[GpuProcess] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``processes`` becomes a list of dicts."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuSample:
        """Inverse of ``to_dict``."""
        values = dict(data)
        values["processes"] = [GpuProcess.from_dict(p) for p in data.get("processes", [])]
        return cls(**values)


@dataclass
class HostSample:
    """Host-wide figures; a rate is None where the OS keeps no such counter (some containers)."""

    cpu_percent: float
    cpu_per_core: list[float]
    load_average: tuple[float, float, float]
    memory_used: int
    memory_total: int
    swap_used: int
    swap_total: int
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``load_average`` becomes a list."""
        data = asdict(self)
        data["load_average"] = list(self.load_average)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostSample:
        """Inverse of ``to_dict``."""
        values = dict(data)
        one, five, fifteen = data["load_average"]
        values["load_average"] = (one, five, fifteen)
        return cls(**values)


@dataclass
class RunUsage:
    """One run's resources, summed over its process tree (worker and all descendants).

    ``gpu_memory`` maps GPU index to the bytes the run's processes hold there.
    """

    cpu_percent: float = 0.0
    rss: int = 0
    threads: int = 0
    processes: int = 0
    gpu_memory: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; GPU indexes become string keys, as JSON requires."""
        data = asdict(self)
        data["gpu_memory"] = {str(index): used for index, used in self.gpu_memory.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunUsage:
        """Inverse of ``to_dict``."""
        values = dict(data)
        values["gpu_memory"] = {int(k): v for k, v in data.get("gpu_memory", {}).items()}
        return cls(**values)


@dataclass
class OtherGpuProcess:
    """GPU memory held by a process that belongs to no run."""

    gpu_index: int
    pid: int
    used_memory: int | None
    user: str | None
    command: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OtherGpuProcess:
        """Inverse of ``to_dict``."""
        return cls(**data)


@dataclass
class Sample:
    """Everything telemetry saw at one tick.

    ``time`` is wall-clock seconds since the epoch. ``host`` is None only when
    reading the host failed. ``gpu_status`` is None while GPUs read fine, else
    one line saying why ``gpus`` is empty or short ("no NVIDIA driver", ...).
    """

    time: float
    host: HostSample | None
    gpus: list[GpuSample] = field(default_factory=list)
    runs: dict[str, RunUsage] = field(default_factory=dict)
    others: list[OtherGpuProcess] = field(default_factory=list)
    gpu_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, the shape stored and published as the "telemetry" topic."""
        return {
            "time": self.time,
            "host": None if self.host is None else self.host.to_dict(),
            "gpus": [gpu.to_dict() for gpu in self.gpus],
            "runs": {run_id: usage.to_dict() for run_id, usage in self.runs.items()},
            "others": [other.to_dict() for other in self.others],
            "gpu_status": self.gpu_status,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """Inverse of ``to_dict``."""
        host = data.get("host")
        return cls(
            time=data["time"],
            host=None if host is None else HostSample.from_dict(host),
            gpus=[GpuSample.from_dict(g) for g in data.get("gpus", [])],
            runs={k: RunUsage.from_dict(v) for k, v in data.get("runs", {}).items()},
            others=[OtherGpuProcess.from_dict(o) for o in data.get("others", [])],
            gpu_status=data.get("gpu_status"),
        )
