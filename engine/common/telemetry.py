"""The telemetry data model, one for both sides: the daemon fills these dataclasses and
publishes ``to_dict()``; a client decodes them back with ``from_wire``.

A field NVML or the OS cannot give is ``None`` (shown as N/A), never a guess.
Memory is in bytes, rates in bytes per second, CPU in percent of one core.
Frozen: the daemon's readers gather every figure first, then make the sample.
(``RunUsage.gpu_memory`` is a dict the sampler still fills in before publishing.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.common.wire import decoding, wire_dict, wire_fields, wire_list


@dataclass(frozen=True)
class GpuProcess:
    """A process NVML lists on one GPU; ``used_memory`` is None where NVML withholds it."""

    pid: int
    used_memory: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> GpuProcess:
        """Inverse of ``to_dict``; MalformedMessage if a field is missing or mistyped."""
        return cls(**wire_fields(cls, data, "GPU process"))


@dataclass(frozen=True)
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
    def from_wire(cls, data: Any) -> GpuSample:
        """Inverse of ``to_dict``; MalformedMessage if a field is missing or mistyped."""
        values = wire_fields(cls, data, "GPU sample")
        processes = wire_list(values.get("processes", []), "GPU sample's processes")
        values["processes"] = [GpuProcess.from_wire(p) for p in processes]
        return cls(**values)


@dataclass(frozen=True)
class HostSample:
    """Host-wide figures; a rate is None where the OS keeps no such counter (some containers)."""

    cpu_percent: float
    cpu_per_core: list[float]
    load_average: tuple[float, float, float] | None  # None where the OS keeps none
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
        data["load_average"] = None if self.load_average is None else list(self.load_average)
        return data

    @classmethod
    def from_wire(cls, data: Any) -> HostSample:
        """Inverse of ``to_dict``; MalformedMessage if a field is missing or mistyped."""
        values = wire_fields(cls, data, "host sample")
        with decoding("host sample"):
            if values["load_average"] is not None:
                one, five, fifteen = (float(x) for x in values["load_average"])
                values["load_average"] = (one, five, fifteen)
            values["cpu_per_core"] = [float(x) for x in values["cpu_per_core"]]
        return cls(**values)


@dataclass(frozen=True)
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
        """JSON-able form; GPU indexes become string keys, as JSON requires.

        Spelled out rather than ``asdict``: made for every live run every second.
        """
        return {
            "cpu_percent": self.cpu_percent,
            "rss": self.rss,
            "threads": self.threads,
            "processes": self.processes,
            "gpu_memory": {str(index): used for index, used in self.gpu_memory.items()},
        }

    @classmethod
    def from_wire(cls, data: Any) -> RunUsage:
        """Inverse of ``to_dict``; MalformedMessage if a field is missing or mistyped."""
        values = wire_fields(cls, data, "run usage")
        held = wire_dict(values.get("gpu_memory", {}), "run usage's GPU memory")
        with decoding("run usage"):
            values["gpu_memory"] = {int(k): int(v) for k, v in held.items()}
        return cls(**values)


@dataclass(frozen=True)
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
    def from_wire(cls, data: Any) -> OtherGpuProcess:
        """Inverse of ``to_dict``; MalformedMessage if a field is missing or mistyped."""
        return cls(**wire_fields(cls, data, "other GPU process"))


@dataclass(frozen=True)
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
    # Set by the daemon on what it publishes (never stored): its store cannot be written.
    store_problem: str | None = None

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
    def from_wire(cls, data: Any) -> Sample:
        """Inverse of ``to_dict``; MalformedMessage if a field is missing or mistyped."""
        values = wire_fields(cls, data, "telemetry sample")
        host = values["host"]
        runs = wire_dict(values.get("runs", {}), "telemetry sample's runs")
        return cls(
            time=values["time"],
            host=None if host is None else HostSample.from_wire(host),
            gpus=[GpuSample.from_wire(g) for g in wire_list(values.get("gpus", []), "GPUs")],
            runs={str(k): RunUsage.from_wire(v) for k, v in runs.items()},
            others=[
                OtherGpuProcess.from_wire(o)
                for o in wire_list(values.get("others", []), "other GPU processes")
            ],
            gpu_status=values.get("gpu_status"),
            store_problem=values.get("store_problem"),
        )
