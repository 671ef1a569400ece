"""GPU telemetry through NVML: one ``GpuReader`` per daemon, read once per tick.

NVML is initialised once and device handles are kept. Figures that hardly
change (name, uuid, power limit, top SM clock) are re-read every
``slow_refresh_seconds``; a figure a GPU does not support is remembered and
never asked for again. Nothing here raises on a missing driver or a failing
GPU: ``read`` returns what it could and ``status`` says what went wrong.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.common.telemetry import GpuProcess, GpuSample

log = logging.getLogger(__name__)

# Errors that mean "this figure is not available here", not "the GPU is in trouble".
_NOT_AVAILABLE = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION",
                  "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_NO_DATA")
# Errors after which the library must be shut down and initialised again.
_LIBRARY_GONE = ("NVML_ERROR_UNINITIALIZED", "NVML_ERROR_DRIVER_NOT_LOADED",
                 "NVML_ERROR_LIB_RM_VERSION_MISMATCH", "NVML_ERROR_LIBRARY_NOT_FOUND")


@dataclass
class _Device:
    index: int
    handle: Any
    slow: dict[str, Any] = field(default_factory=dict)
    slow_due: float = 0.0
    unsupported: set[str] = field(default_factory=set)


class GpuReader:
    """Reads every GPU NVML sees. ``nvml`` is the ``pynvml`` module or a stand-in for it.

    ``read`` and ``close`` belong to one thread (the sampler's); ``status`` may
    be read from any.
    """

    def __init__(
        self,
        nvml: Any | None = None,
        slow_refresh_seconds: float = 60.0,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml: Any = nvml
        self._slow_refresh = slow_refresh_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._devices: list[_Device] | None = None
        self._retry_at = 0.0
        self._status: str | None = None
        self._codes: dict[str, int] = {}

    @property
    def status(self) -> str | None:
        """None while every GPU reads fine; else one line on why GPUs are missing."""
        return self._status

    def read(self) -> list[GpuSample]:
        """One sample per GPU that could be read; never raises for NVML's sake."""
        now = self._clock()
        devices = self._devices if self._devices is not None else self._init(now)
        if devices is None:
            return []
        samples: list[GpuSample] = []
        failures: list[str] = []
        for device in devices:
            try:
                samples.append(self._read_device(device, now))
            except Exception as error:
                if self._code_in(error, _LIBRARY_GONE):
                    self._lose_library(now, f"NVML failed: {_describe(error)}")
                    return []
                failures.append(f"GPU {device.index}: {_describe(error)}")
        if failures:
            self._set_status("NVML failed: " + "; ".join(failures))
        elif not devices:
            self._set_status("no NVIDIA GPU")
        else:
            self._set_status(None)
        return samples

    def close(self) -> None:
        """Shut NVML down if this reader initialised it."""
        if self._devices is not None and self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
        self._devices = None

    def _init(self, now: float) -> list[_Device] | None:
        if now < self._retry_at:
            return None
        self._retry_at = now + self._retry
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self._set_status("nvidia-ml-py is not installed")
                return None
            self._nvml = pynvml
        nvml = self._nvml
        self._codes = {name: getattr(nvml, name) for name in _NOT_AVAILABLE + _LIBRARY_GONE
                       if hasattr(nvml, name)}
        try:
            nvml.nvmlInit()
        except Exception as error:
            if self._code_in(error, ("NVML_ERROR_LIBRARY_NOT_FOUND",)):
                self._set_status("no NVIDIA driver (libnvidia-ml.so.1 not found)")
            elif self._code_in(error, ("NVML_ERROR_DRIVER_NOT_LOADED",)):
                self._set_status("no NVIDIA driver loaded")
            else:
                self._set_status(f"NVML failed: {_describe(error)}")
            return None
        try:
            count = nvml.nvmlDeviceGetCount()
            devices = [_Device(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        except Exception as error:
            self._lose_library(now, f"NVML failed: {_describe(error)}")
            return None
        self._devices = devices
        return devices

    def _lose_library(self, now: float, status: str) -> None:
        """Forget every handle and try initialising again after ``retry_seconds``."""
        self.close()
        self._retry_at = now + self._retry
        self._set_status(status)

    def _set_status(self, status: str | None) -> None:
        # A warning when a problem starts or changes, not once per tick while it lasts.
        if status != self._status:
            if status is not None:
                log.warning("GPU telemetry: %s", status)
            elif self._status is not None:
                log.info("GPU telemetry recovered")
        self._status = status

    def _code_in(self, error: BaseException, names: tuple[str, ...]) -> bool:
        value = getattr(error, "value", None)
        return value is not None and any(self._codes.get(name) == value for name in names)

    def _get(self, device: _Device, key: str, call: Callable[..., Any], *args: Any) -> Any:
        """``call(handle, *args)``, or None where the GPU lacks the figure."""
        if key in device.unsupported:
            return None
        try:
            return call(device.handle, *args)
        except Exception as error:
            if not self._code_in(error, _NOT_AVAILABLE):
                raise
            if self._code_in(error, ("NVML_ERROR_NOT_SUPPORTED",
                                     "NVML_ERROR_FUNCTION_NOT_FOUND")):
                device.unsupported.add(key)
            return None

    def _read_slow(self, device: _Device, now: float) -> dict[str, Any]:
        if now < device.slow_due:
            return device.slow
        nvml = self._nvml
        limit = self._get(device, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit)
        device.slow = {
            "name": _text(self._get(device, "name", nvml.nvmlDeviceGetName)),
            "uuid": _text(self._get(device, "uuid", nvml.nvmlDeviceGetUUID)),
            "power_limit_w": None if limit is None else limit / 1000.0,
            "sm_clock_max_mhz": self._get(device, "sm_clock_max", nvml.nvmlDeviceGetMaxClockInfo,
                                          nvml.NVML_CLOCK_SM),
        }
        device.slow_due = now + self._slow_refresh
        return device.slow

    def _read_device(self, device: _Device, now: float) -> GpuSample:
        nvml = self._nvml
        slow = self._read_slow(device, now)
        # Gathered first: a sample is frozen once made.
        figures: dict[str, Any] = dict(slow)
        rates = self._get(device, "utilization", nvml.nvmlDeviceGetUtilizationRates)
        if rates is not None:
            figures["utilization_percent"] = float(rates.gpu)
            figures["memory_utilization_percent"] = float(rates.memory)
        memory = self._get(device, "memory", nvml.nvmlDeviceGetMemoryInfo)
        if memory is not None:
            figures["memory_used"], figures["memory_total"] = int(memory.used), int(memory.total)
        temperature = self._get(device, "temperature", nvml.nvmlDeviceGetTemperature,
                                nvml.NVML_TEMPERATURE_GPU)
        figures["temperature_c"] = None if temperature is None else float(temperature)
        power = self._get(device, "power", nvml.nvmlDeviceGetPowerUsage)
        power_w = figures["power_w"] = None if power is None else power / 1000.0
        if power_w is not None and slow["power_limit_w"]:
            figures["power_percent"] = round(100.0 * power_w / slow["power_limit_w"], 1)
        figures["sm_clock_mhz"] = self._get(device, "sm_clock", nvml.nvmlDeviceGetClockInfo,
                                            nvml.NVML_CLOCK_SM)
        fan = self._get(device, "fan", nvml.nvmlDeviceGetFanSpeed)
        figures["fan_percent"] = None if fan is None else float(fan)
        return GpuSample(index=device.index, processes=self._read_processes(device), **figures)

    def _read_processes(self, device: _Device) -> list[GpuProcess]:
        """Compute and graphics processes, one entry per pid."""
        nvml = self._nvml
        used: dict[int, int | None] = {}
        for key, call in (("compute", nvml.nvmlDeviceGetComputeRunningProcesses),
                          ("graphics", nvml.nvmlDeviceGetGraphicsRunningProcesses)):
            for info in self._get(device, key, call) or ():
                memory = info.usedGpuMemory
                memory = None if memory is None else int(memory)
                previous = used.get(info.pid)
                used[int(info.pid)] = memory if previous is None else max(previous, memory or 0)
        return [GpuProcess(pid, memory) for pid, memory in sorted(used.items())]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
