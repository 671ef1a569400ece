"""Which compute devices this machine has, for choosing and checking ``--device``."""

from __future__ import annotations

import contextlib
import re
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


def check_device(requested: str | None, gpus: list[GpuInfo]) -> str:
    """Check ``requested`` (None, cpu, cuda, cuda:N) against this machine: cpu, cuda or cuda:N.

    None means a GPU when the machine has one, else the CPU. A bare ``cuda`` is
    left for the scheduler to place on whichever GPU has room when the run's
    turn comes (``engine.server.placement``).
    """
    if requested is None or requested == "":
        return "cuda" if gpus else "cpu"
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
        return "cuda"
    if int(index) >= len(gpus):
        # Named as asked (cuda:N), whichever way the machine's GPUs are counted.
        last = len(gpus) - 1
        have = "cuda:0" if last == 0 else f"cuda:0 to cuda:{last}"
        raise DeviceError(f"no GPU cuda:{int(index)} on this machine: it has {have}")
    return f"cuda:{int(index)}"
