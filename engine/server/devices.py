"""Which compute devices this machine has, for choosing and checking ``--device``."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection
from dataclasses import dataclass

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


class DeviceError(ValueError):
    """A device the user asked for that this machine does not have."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    memory_used: int
    memory_total: int


def list_gpus() -> list[GpuInfo]:
    """The NVIDIA GPUs NVML sees; empty without a driver, a GPU or nvidia-ml-py."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            memory = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
            gpus.append(GpuInfo(index, int(memory.used), int(memory.total)))
        return gpus
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def choose_device(requested: str | None, gpus: list[GpuInfo], busy: Collection[int] = ()) -> str:
    """Resolve ``requested`` (None, cpu, cuda, cuda:N) to a concrete device string.

    With no request, or a bare ``cuda``, the GPU with no traintop run on it
    and the least memory in use is chosen; with no GPU, None means cpu.
    """
    if requested is None or requested == "":
        if not gpus:
            return "cpu"
        requested = "cuda"
    match = _DEVICE.match(requested.strip().lower())
    if not match:
        raise DeviceError(f"unknown device {requested!r} (use cpu, cuda or cuda:N)")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        if index is not None:
            raise DeviceError(f"unknown device {requested!r} (use cpu, cuda or cuda:N)")
        return "cpu"
    if not gpus:
        raise DeviceError(f"device {requested} asked for, but no NVIDIA GPU is visible here")
    if index is None:
        best = min(gpus, key=lambda g: (g.index in busy, g.memory_used, g.index))
        return f"cuda:{best.index}"
    if int(index) >= len(gpus):
        raise DeviceError(f"no GPU {index}: this machine has {len(gpus)}")
    return f"cuda:{int(index)}"
