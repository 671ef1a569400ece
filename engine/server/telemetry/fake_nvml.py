"""A stand-in for the ``pynvml`` module, for tests and demos on machines without a GPU.

``FakeNvml`` has the functions ``GpuReader`` calls, with pynvml's names,
arguments and units (milliwatts, MHz, bytes), and fails the way NVML does: it
raises pynvml's own ``NVMLError`` subclasses with NVML's error codes. A field
set to None on a ``FakeGpu`` is one that GPU does not support (e.g. the fan of
a datacenter card); ``lost`` makes every call on that GPU fail with
GPU_IS_LOST; ``init_error`` and ``error`` make the library itself fail. Every
call is counted in ``calls``; ``delays`` slows chosen functions down.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

# pynvml's own error classes and codes, so code under test sees what it would on a GPU.
NVMLError = pynvml.NVMLError
NVML_SUCCESS = pynvml.NVML_SUCCESS
NVML_ERROR_UNINITIALIZED = pynvml.NVML_ERROR_UNINITIALIZED
NVML_ERROR_INVALID_ARGUMENT = pynvml.NVML_ERROR_INVALID_ARGUMENT
NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
NVML_ERROR_NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION
NVML_ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
NVML_ERROR_LIBRARY_NOT_FOUND = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
NVML_ERROR_FUNCTION_NOT_FOUND = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
NVML_ERROR_GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
NVML_ERROR_LIB_RM_VERSION_MISMATCH = pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH
NVML_ERROR_NO_DATA = pynvml.NVML_ERROR_NO_DATA
NVML_ERROR_UNKNOWN = pynvml.NVML_ERROR_UNKNOWN
NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM

GIB = 1024**3


@dataclass
class FakeProcess:
    """A process on a fake GPU; ``used_memory`` None is NVML's "not available"."""

    pid: int
    used_memory: int | None
    graphics: bool = False


@dataclass
class FakeGpu:
    """One fake GPU. A None figure raises NOT_SUPPORTED when read. Power in mW."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    utilization: int | None = 87
    memory_utilization: int | None = 41
    memory_used: int | None = 30 * GIB
    memory_total: int = 80 * GIB
    temperature: int | None = 61
    power_mw: int | None = 350_000
    power_limit_mw: int | None = 700_000
    sm_clock: int | None = 1755
    sm_clock_max: int | None = 1980
    fan: int | None = None  # datacenter cards have no fan NVML can read
    processes: list[FakeProcess] = field(default_factory=list)
    lost: bool = False


@dataclass(frozen=True)
class FakeHandle:
    """What ``nvmlDeviceGetHandleByIndex`` returns: opaque to callers."""

    index: int


class FakeNvml:
    """A module-like object with the slice of pynvml's API that telemetry uses."""

    NVMLError = NVMLError
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = NVML_ERROR_LIB_RM_VERSION_MISMATCH
    NVML_ERROR_NO_DATA = NVML_ERROR_NO_DATA
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = NVML_CLOCK_SM

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        init_error: int | None = None,
        delays: dict[str, float] | None = None,
    ) -> None:
        self.gpus = list(gpus) if gpus is not None else []
        self.init_error = init_error  # e.g. LIBRARY_NOT_FOUND: no driver installed
        self.error: int | None = None  # set mid-way: every call fails with this code
        self.delays = dict(delays or {})
        self.calls: Counter[str] = Counter()
        self.initialized = 0

    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        delay = self.delays.get(name)
        if delay:
            time.sleep(delay)
        if self.error is not None:
            raise NVMLError(self.error)
        if self.initialized <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, name: str, handle: FakeHandle) -> FakeGpu:
        self._enter(name)
        if not isinstance(handle, FakeHandle) or handle.index >= len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return gpu

    @staticmethod
    def _supported(value: Any) -> Any:
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(index)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        self._supported(gpu.utilization)
        return SimpleNamespace(gpu=gpu.utilization, memory=gpu.memory_utilization or 0)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> Any:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        used = self._supported(gpu.memory_used)
        return SimpleNamespace(total=gpu.memory_total, used=used, free=gpu.memory_total - used)

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        value: int = self._supported(gpu.temperature)
        return value

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        value: int = self._supported(self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw)
        return value

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        gpu = self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle)
        value: int = self._supported(gpu.power_limit_mw)
        return value

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, type: int) -> int:
        gpu = self._gpu("nvmlDeviceGetClockInfo", handle)
        if type != NVML_CLOCK_SM:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        value: int = self._supported(gpu.sm_clock)
        return value

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeHandle, type: int) -> int:
        gpu = self._gpu("nvmlDeviceGetMaxClockInfo", handle)
        if type != NVML_CLOCK_SM:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        value: int = self._supported(gpu.sm_clock_max)
        return value

    def nvmlDeviceGetFanSpeed(self, handle: FakeHandle) -> int:
        value: int = self._supported(self._gpu("nvmlDeviceGetFanSpeed", handle).fan)
        return value

    def _processes(self, name: str, handle: FakeHandle, graphics: bool) -> list[SimpleNamespace]:
        gpu = self._gpu(name, handle)
        return [
            SimpleNamespace(pid=p.pid, usedGpuMemory=p.used_memory,
                            gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            for p in gpu.processes
            if p.graphics == graphics
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes("nvmlDeviceGetComputeRunningProcesses", handle, graphics=False)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses", handle, graphics=True)


def demo_nvml(gpu_count: int = 2) -> FakeNvml:
    """A fake machine of H100s with plausible figures, for demos and screenshots."""
    gpus = [
        FakeGpu(uuid=f"GPU-fa4e0000-0000-0000-0000-{index:012d}",
                utilization=90 - 30 * index, power_mw=620_000 - 250_000 * index)
        for index in range(gpu_count)
    ]
    return FakeNvml(gpus)


class FileFakeNvml(FakeNvml):
    """Fake GPUs that a JSON file describes, read again whenever it changes.

    For tests of placement on a machine without GPUs: the file is a list of GPUs,
    each ``{"total": bytes, "used": bytes, "processes": [{"pid": N, "memory": bytes}]}``.
    The number of GPUs is the file's when NVML is first read; a file that cannot
    be read (half written) leaves the last figures in place.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._load()

    def _enter(self, name: str) -> None:
        self._load()
        super()._enter(name)

    def _load(self) -> None:
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size) == self._seen:
                return
            with open(self.path, encoding="utf-8") as f:
                described = json.load(f)
            gpus = [
                FakeGpu(
                    uuid=f"GPU-f11e0000-0000-0000-0000-{index:012d}",
                    memory_total=int(gpu["total"]),
                    memory_used=int(gpu["used"]),
                    processes=[
                        FakeProcess(int(p["pid"]), int(p["memory"]))
                        for p in gpu.get("processes", [])
                    ],
                )
                for index, gpu in enumerate(described)
            ]
        except (OSError, ValueError, TypeError, KeyError):
            return
        self._seen = (stat.st_mtime_ns, stat.st_size)
        if self.gpus:  # the count is fixed once read; only the figures change
            gpus = gpus[: len(self.gpus)]
        self.gpus = gpus
