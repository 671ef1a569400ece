"""Telemetry: host, GPU and per-run resource samples, taken on a thread at 1 Hz.

Never imports torch or textual.

What the daemon calls
---------------------
::

    sampler = TelemetrySampler(
        runs=live_workers,            # () -> [(run_id, worker_pid, worker_pgid), ...]
        on_sample=publish,            # (Sample) -> None, called on the sampler thread
        interval=1.0,                 # seconds between ticks
        history_seconds=600.0,        # how much the in-memory ring buffer keeps
        gpu_reader=None,              # None: real NVML; GpuReader(FakeNvml(...)) for demos
    )
    sampler.start()                   # returns at once; first sample one interval later
    sampler.latest()                  # newest Sample or None
    sampler.history(60)               # Samples of the last 60 s, oldest first
    sampler.stop()                    # sets an Event and joins (bounded by a timeout)

``runs`` and ``on_sample`` run on the sampler thread, not the event loop:
``runs`` must return a snapshot (a new list) and be safe to call from another
thread; ``on_sample`` should hand over with ``loop.call_soon_threadsafe``. An
exception in either, or in any reader, is logged (once per distinct message)
and the next tick goes on. Ticks sit on a fixed monotonic grid; a slow tick
(a hung NVML call) delays only itself, and the ticks it overran are skipped.

``Sample.to_dict()`` (what to store and publish as the "telemetry" topic)
------------------------------------------------------------------------
JSON-able; ``Sample.from_wire`` reverses it. ``None`` means N/A. Bytes for
memory, bytes/s for rates, percent of one core for run CPU (may exceed 100)::

    {"time": 1718000000.0,                      # wall clock, seconds since epoch
     "host": {"cpu_percent": 12.5, "cpu_per_core": [..], "load_average": [1.0, 0.8, 0.5],
              "memory_used": .., "memory_total": .., "swap_used": .., "swap_total": ..,
              "disk_read_bps": .., "disk_write_bps": .., "net_rx_bps": .., "net_tx_bps": ..},
     "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-..",
               "utilization_percent": 87.0, "memory_utilization_percent": 41.0,
               "memory_used": .., "memory_total": .., "temperature_c": 61.0,
               "power_w": 350.0, "power_limit_w": 700.0, "power_percent": 50.0,
               "sm_clock_mhz": 1755, "sm_clock_max_mhz": 1980, "fan_percent": null,
               "processes": [{"pid": 4242, "used_memory": ..}]}],
     "runs": {"a1b2": {"cpu_percent": 180.0, "rss": .., "threads": 41, "processes": 5,
                       "gpu_memory": {"0": ..}}},        # GPU index as a string key
     "others": [{"gpu_index": 0, "pid": 999, "used_memory": .., "user": "bob",
                 "command": "python other.py"}],
     "gpu_status": null}   # or "no NVIDIA driver (...)", "no NVIDIA GPU", "NVML failed: ..."

``host`` is null only if reading the host failed. ``gpus`` is empty (and
``gpu_status`` says why) without a driver or GPU; a GPU that fails mid-way is
left out while the others are still reported.

Building blocks, usable alone: ``GpuReader(nvml=None).read()`` and ``.status``
(NVML initialised once, handles kept, slow fields re-read every 60 s, init
retried every 60 s after a failure), ``HostReader().read()``,
``RunUsageReader().read(runs, gpu_pids)`` (process trees: children lists each
tick, a full /proc scan every 10 s, GPU pids traced up their parents), and
``FakeNvml`` / ``FakeGpu`` / ``FakeProcess`` / ``demo_nvml`` standing in for
``pynvml`` on machines without a GPU (``GpuReader(demo_nvml())`` for demos).
Cost: ``bench/telemetry_cost.py``.
"""

from engine.common.telemetry import (
    GpuProcess,
    GpuSample,
    HostSample,
    OtherGpuProcess,
    RunUsage,
    Sample,
)
from engine.server.telemetry.fake_nvml import FakeGpu, FakeNvml, FakeProcess, demo_nvml
from engine.server.telemetry.host import HostReader
from engine.server.telemetry.nvml import GpuReader
from engine.server.telemetry.run_usage import RunRef, RunUsageReader
from engine.server.telemetry.sampler import TelemetrySampler, attribute_gpu_memory

__all__ = [
    "FakeGpu",
    "FakeNvml",
    "FakeProcess",
    "GpuProcess",
    "GpuReader",
    "GpuSample",
    "HostReader",
    "HostSample",
    "OtherGpuProcess",
    "RunRef",
    "RunUsage",
    "RunUsageReader",
    "Sample",
    "TelemetrySampler",
    "attribute_gpu_memory",
    "demo_nvml",
]
