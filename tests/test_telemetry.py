"""Telemetry: NVML layer against the fake, psutil layer and attribution against real processes."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import psutil
import pytest

from engine.server.telemetry import (
    FakeGpu,
    FakeNvml,
    FakeProcess,
    GpuReader,
    HostReader,
    RunUsageReader,
    Sample,
    TelemetrySampler,
    attribute_gpu_memory,
)
from engine.server.telemetry.fake_nvml import (
    GIB,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_LIBRARY_NOT_FOUND,
)

MIB = 1024**2


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid="GPU-a", fan=None, processes=[FakeProcess(111, 3 * GIB)]),
        FakeGpu(name="NVIDIA GeForce RTX 4090", uuid="GPU-b", utilization=12,
                memory_utilization=3, memory_used=2 * GIB, memory_total=24 * GIB,
                temperature=45, power_mw=90_000, power_limit_mw=450_000, sm_clock=2520,
                sm_clock_max=2790, fan=33,
                processes=[FakeProcess(222, None), FakeProcess(222, 512 * MIB, graphics=True)]),
    ]


# --- NVML layer -------------------------------------------------------------------------------


def test_gpu_reader_reports_every_field() -> None:
    reader = GpuReader(FakeNvml(two_gpus()))
    first, second = reader.read()
    assert reader.status is None
    assert (first.index, first.name, first.uuid) == (0, "NVIDIA H100 80GB HBM3", "GPU-a")
    assert (first.utilization_percent, first.memory_utilization_percent) == (87.0, 41.0)
    assert (first.memory_used, first.memory_total) == (30 * GIB, 80 * GIB)
    assert first.temperature_c == 61.0
    assert (first.power_w, first.power_limit_w, first.power_percent) == (350.0, 700.0, 50.0)
    assert (first.sm_clock_mhz, first.sm_clock_max_mhz) == (1755, 1980)
    assert first.fan_percent is None  # datacenter card: NOT_SUPPORTED, not an exception
    assert [(p.pid, p.used_memory) for p in first.processes] == [(111, 3 * GIB)]
    assert second.fan_percent == 33.0
    assert second.power_percent == pytest.approx(20.0)
    # Listed as compute (memory not available) and graphics: one entry, the known figure.
    assert [(p.pid, p.used_memory) for p in second.processes] == [(222, 512 * MIB)]
    json.dumps([gpu.to_dict() for gpu in (first, second)])


def test_unsupported_fields_are_none_and_not_asked_for_again() -> None:
    gpu = FakeGpu(utilization=None, temperature=None, power_mw=None, power_limit_mw=None,
                  sm_clock=None, sm_clock_max=None, fan=None)
    nvml = FakeNvml([gpu])
    reader = GpuReader(nvml)
    for _ in range(3):
        (sample,) = reader.read()
    assert reader.status is None
    for name in ("utilization_percent", "memory_utilization_percent", "temperature_c",
                 "power_w", "power_limit_w", "power_percent", "sm_clock_mhz",
                 "sm_clock_max_mhz", "fan_percent"):
        assert getattr(sample, name) is None, name
    assert sample.memory_used == 30 * GIB
    assert nvml.calls["nvmlDeviceGetFanSpeed"] == 1
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 1


def test_handles_and_slow_fields_are_cached() -> None:
    nvml, clock = FakeNvml(two_gpus()), Clock()
    reader = GpuReader(nvml, slow_refresh_seconds=60.0, clock=clock)
    for _ in range(5):
        assert len(reader.read()) == 2
        clock.now += 1.0
    assert nvml.calls["nvmlInit"] == 1
    assert nvml.calls["nvmlDeviceGetCount"] == 1
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 2
    for slow in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetEnforcedPowerLimit",
                 "nvmlDeviceGetMaxClockInfo"):
        assert nvml.calls[slow] == 2, slow
    assert nvml.calls["nvmlDeviceGetUtilizationRates"] == 10
    assert nvml.calls["nvmlDeviceGetMemoryInfo"] == 10
    nvml.gpus[0].power_limit_mw = 500_000  # nvidia-smi -pl: seen at the next slow refresh
    clock.now += 60.0
    first = reader.read()[0]
    assert nvml.calls["nvmlDeviceGetName"] == 4
    assert first.power_limit_w == 500.0
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 2


@pytest.mark.parametrize(("code", "status"), [
    (NVML_ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver (libnvidia-ml.so.1 not found)"),
    (NVML_ERROR_DRIVER_NOT_LOADED, "no NVIDIA driver loaded"),
])
def test_no_driver_is_a_status_and_no_gpus(
    code: int, status: str, caplog: pytest.LogCaptureFixture
) -> None:
    nvml, clock = FakeNvml(two_gpus(), init_error=code), Clock()
    reader = GpuReader(nvml, retry_seconds=60.0, clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert reader.read() == []
            clock.now += 1.0
    assert reader.status == status
    assert nvml.calls["nvmlInit"] == 1  # not retried every tick
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_machine_without_gpus() -> None:
    reader = GpuReader(FakeNvml([]))
    assert reader.read() == []
    assert reader.status == "no NVIDIA GPU"


def test_lost_gpu_is_reported_once_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml(two_gpus())
    reader = GpuReader(nvml)
    assert len(reader.read()) == 2
    nvml.gpus[1].lost = True
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert [gpu.index for gpu in reader.read()] == [0]
        assert reader.status == "NVML failed: GPU 1: GPU is lost"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        nvml.gpus[1].lost = False  # it came back (e.g. after a reset)
        assert len(reader.read()) == 2
    assert reader.status is None
    assert "recovered" in caplog.records[-1].getMessage()


def test_library_failing_midway_gives_no_gpus_then_reinitialises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml, clock = FakeNvml(two_gpus()), Clock()
    reader = GpuReader(nvml, retry_seconds=30.0, clock=clock)
    assert len(reader.read()) == 2
    nvml.error = NVML_ERROR_DRIVER_NOT_LOADED  # driver unloaded under us
    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            assert reader.read() == []
            clock.now += 1.0
    assert reader.status == "NVML failed: Driver Not Loaded"
    assert len(caplog.records) == 1
    assert nvml.calls["nvmlInit"] == 1  # still inside the retry delay
    nvml.error = None
    clock.now += 30.0
    assert len(reader.read()) == 2
    assert reader.status is None
    assert nvml.calls["nvmlInit"] == 2
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 4  # handles fetched again after re-init


# --- real processes ---------------------------------------------------------------------------

# A parent that starts a child now, and one more child (and an orphaned grandchild) on request.
PARENT = r"""
import subprocess, sys
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
child = subprocess.Popen(SLEEPER)
print(child.pid, flush=True)
for line in sys.stdin:
    if line.strip() == "child":
        late = subprocess.Popen(SLEEPER)
        print(late.pid, flush=True)
    elif line.strip() == "orphan":
        # The middle process exits at once: the grandchild is re-parented but stays in our group.
        middle = ("import subprocess as s, sys; "
                  "print(s.Popen(sys.argv[1:], stdout=s.DEVNULL, stderr=s.DEVNULL).pid)")
        out = subprocess.run([sys.executable, "-c", middle] + SLEEPER,
                             capture_output=True, text=True).stdout
        print(out.strip(), flush=True)
"""

RSS = r"""
n = 200 * 1024 * 1024
data = bytearray(n)
for i in range(0, n, 4096):
    data[i] = 1
print("ready", flush=True)
import time; time.sleep(120)
"""

THREADS = r"""
import threading
stop = threading.Event()
for _ in range(7):
    threading.Thread(target=stop.wait, daemon=True).start()
print("ready", flush=True)
stop.wait(120)
"""

BUSY = r"""
print("ready", flush=True)
while True:
    pass
"""


class Spawned:
    """A python -c process in its own session, killed with its whole group at the end."""

    def __init__(self, code: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.pid = self.pgid = self.proc.pid

    def line(self) -> str:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        return stdout.readline().strip()

    def send(self, text: str) -> str:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(text + "\n")
        stdin.flush()
        return self.line()

    def ref(self, run_id: str) -> tuple[str, int, int]:
        return (run_id, self.pid, self.pgid)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn() -> Iterator[type[Spawned]]:
    started: list[Spawned] = []

    class Tracked(Spawned):
        def __init__(self, code: str) -> None:
            super().__init__(code)
            started.append(self)

    yield Tracked
    for process in started:
        process.kill()


def test_gpu_memory_is_attributed_through_the_process_tree(spawn: type[Spawned]) -> None:
    run = spawn(PARENT)
    child = int(run.line())
    stranger = spawn("import time; print('ready', flush=True); time.sleep(120)  # stranger-42")
    assert stranger.line() == "ready"
    reader = RunUsageReader(rescan_seconds=3600.0)
    reader.read([run.ref("r1")])  # full scan now; later reads follow the children lists
    late = int(run.send("child"))
    orphan = int(run.send("orphan"))
    assert psutil.Process(orphan).ppid() != run.pid
    gpus = GpuReader(FakeNvml([
        FakeGpu(processes=[FakeProcess(child, 5 * GIB), FakeProcess(stranger.pid, 1 * GIB)]),
        FakeGpu(processes=[FakeProcess(late, 2 * GIB), FakeProcess(orphan, 3 * GIB)]),
    ])).read()
    gpu_pids = {p.pid for gpu in gpus for p in gpu.processes}
    usages = reader.read([run.ref("r1")], gpu_pids)
    others = attribute_gpu_memory(gpus, usages, reader)
    usage = usages["r1"]
    assert usage.gpu_memory == {0: 5 * GIB, 1: 5 * GIB}
    assert usage.processes == 4  # parent, child, late child, orphaned grandchild
    assert [(o.gpu_index, o.pid, o.used_memory) for o in others] == [(0, stranger.pid, GIB)]
    assert others[0].user == getpass.getuser()
    assert others[0].command is not None and "stranger-42" in others[0].command
    # A full scan finds the orphan through the process group too, with no GPU to point at it.
    assert RunUsageReader().read([run.ref("r1")])["r1"].processes == 4


def cpu_clock(pid: int) -> Callable[[], float]:
    """A clock on a process's own CPU time: called, the % of a core it got since."""
    process = psutil.Process(pid)
    before, since = sum(process.cpu_times()[:2]), time.monotonic()
    return lambda: 100 * (sum(process.cpu_times()[:2]) - before) / (time.monotonic() - since)


def assert_cpu_read(reading: float, got: float) -> None:
    """The CPU % read of a spinning process is what it got. On a loaded machine (the suite
    run in parallel) that is well under a core, so no fixed floor would hold."""
    assert got > 5.0 and abs(reading - got) < max(15.0, 0.3 * got), (reading, got)


def test_run_usage_of_real_processes(spawn: type[Spawned]) -> None:
    big, threaded, busy = spawn(RSS), spawn(THREADS), spawn(BUSY)
    for process in (big, threaded, busy):
        assert process.line() == "ready"
    runs = [big.ref("big"), threaded.ref("threads"), busy.ref("busy")]
    reader = RunUsageReader()
    got = cpu_clock(busy.pid)
    reader.read(runs)  # CPU % needs a baseline
    time.sleep(0.5)
    usages = reader.read(runs)
    assert_cpu_read(usages["busy"].cpu_percent, got())
    assert usages["big"].rss >= 200 * MIB
    assert usages["threads"].rss < 200 * MIB
    assert usages["threads"].threads >= 8
    assert usages["threads"].cpu_percent < usages["busy"].cpu_percent
    big.kill()
    assert "big" not in reader.read(runs[1:])
    assert reader.read([big.ref("big")])["big"].processes == 0


@pytest.mark.parametrize("rescan", [0.0, 3600.0], ids=["full scans", "children lists"])
def test_runs_attached_from_one_process_each_show_all_of_it(
    spawn: type[Spawned], rescan: float,
) -> None:
    busy = spawn(BUSY)  # one script that attached three runs
    assert busy.line() == "ready"
    runs = [busy.ref("a"), busy.ref("b"), busy.ref("c")]
    reader = RunUsageReader(rescan_seconds=rescan)
    got = cpu_clock(busy.pid)
    reader.read(runs)
    time.sleep(0.5)
    usages = reader.read(runs)
    assert_cpu_read(usages["a"].cpu_percent, got())
    assert usages["a"] == usages["b"] == usages["c"]


def test_host_reader() -> None:
    reader = HostReader()
    time.sleep(0.2)
    host = reader.read()
    assert len(host.cpu_per_core) == psutil.cpu_count()
    assert all(0.0 <= core <= 100.0 for core in host.cpu_per_core)
    assert 0 < host.memory_used < host.memory_total
    assert 0 <= host.swap_used <= max(host.swap_total, 0)
    for rate in (host.disk_read_bps, host.disk_write_bps, host.net_rx_bps, host.net_tx_bps):
        assert rate is None or rate >= 0.0
    assert len(host.load_average) == 3


# --- sampler ----------------------------------------------------------------------------------


def collect(sampler_args: dict[str, Any], seconds: float) -> tuple[list[Sample], float]:
    """Run a sampler for ``seconds``; return its samples and the wall-clock start time.

    Samples are recorded before any ``on_sample`` given in ``sampler_args`` is called.
    """
    samples: list[Sample] = []
    then = sampler_args.pop("on_sample", None)

    def record(sample: Sample) -> None:
        samples.append(sample)
        if then is not None:
            then(sample)

    args: dict[str, Any] = {"runs": lambda: [], "gpu_reader": GpuReader(FakeNvml(two_gpus()))}
    args.update(sampler_args)
    sampler = TelemetrySampler(on_sample=record, **args)
    started = time.time()
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    return samples, started


def test_sampler_ticks_at_its_interval_and_round_trips(spawn: type[Spawned]) -> None:
    run = spawn(PARENT)
    child = int(run.line())
    gpus = two_gpus()
    gpus[0].processes.append(FakeProcess(child, 7 * GIB))
    samples, _ = collect({"runs": lambda: [run.ref("r1")], "interval": 0.1,
                          "gpu_reader": GpuReader(FakeNvml(gpus))}, 1.05)
    assert 6 <= len(samples) <= 11
    times = [s.time for s in samples]
    assert times == sorted(times)
    last = samples[-1]
    assert last.host is not None and last.gpu_status is None and len(last.gpus) == 2
    assert last.runs["r1"].gpu_memory == {0: 7 * GIB}
    assert {o.pid for o in last.others} == {111, 222}  # no such processes: others
    assert Sample.from_wire(json.loads(json.dumps(last.to_dict()))) == last


def test_sampler_without_a_driver_still_samples_host_and_runs() -> None:
    reader = GpuReader(FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    pid = os.getpid()
    samples, _ = collect({"runs": lambda: [("self", pid, 0)], "interval": 0.05,
                          "gpu_reader": reader}, 0.3)
    assert samples
    assert all(s.gpus == [] and s.gpu_status is not None for s in samples)
    assert samples[-1].host is not None and samples[-1].runs["self"].processes >= 1


def test_history_is_trimmed() -> None:
    samples: list[Sample] = []
    sampler = TelemetrySampler(lambda: [], samples.append, interval=0.05, history_seconds=0.2,
                               gpu_reader=GpuReader(FakeNvml([])))
    sampler.start()
    time.sleep(0.6)
    sampler.stop()
    kept = sampler.history()
    assert len(samples) > 6
    assert kept == samples[-4:]
    assert sampler.latest() is samples[-1]
    assert sampler.history(0.06) == [s for s in kept if s.time >= kept[-1].time - 0.06]


def test_a_raising_callback_does_not_stop_the_sampler(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[Sample] = []

    def explode(sample: Sample) -> None:
        calls.append(sample)
        raise RuntimeError("subscriber gone")

    failing_runs = iter(range(1000))

    def runs() -> list[tuple[str, int, int]]:
        if next(failing_runs) == 1:
            raise KeyError("dict changed size")
        return []

    with caplog.at_level(logging.ERROR):
        collect({"runs": runs, "on_sample": explode, "interval": 0.05}, 0.4)
    assert len(calls) >= 4
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count("telemetry: on_sample callback failed") == 1  # once, not every tick
    assert logged.count("telemetry: runs callable failed") == 1


def test_stop_returns_quickly() -> None:
    sampler = TelemetrySampler(lambda: [], lambda s: None, interval=30.0,
                               gpu_reader=GpuReader(FakeNvml([])))
    sampler.start()
    time.sleep(0.1)
    began = time.monotonic()
    sampler.stop()
    assert time.monotonic() - began < 2.0
    assert not any(t.name == "telemetry" and t.is_alive() for t in threading.enumerate())


def test_a_slow_tick_skips_missed_ticks_instead_of_bunching() -> None:
    interval = 0.1
    nvml = FakeNvml(two_gpus(), delays={"nvmlDeviceGetUtilizationRates": 0.3})  # 0.6 s a read

    def speed_up(sample: Sample) -> None:
        nvml.delays.clear()  # only the first tick is slow

    samples, started = collect({"on_sample": speed_up, "interval": interval,
                                "gpu_reader": GpuReader(nvml)}, 1.5)
    slots = [round((s.time - started) / interval) for s in samples]
    assert len(slots) == len(set(slots)), slots  # at most one sample per grid slot
    assert slots[1] - slots[0] >= 5, slots  # the ticks the slow one overran were dropped
    assert len(samples) <= 1.5 / interval


def test_telemetry_imports_neither_torch_nor_textual() -> None:
    code = ("import sys, engine.server.telemetry; "
            "print([m for m in ('torch', 'textual') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- real GPUs --------------------------------------------------------------------------------


def _real_gpu_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


@pytest.mark.gpu
@pytest.mark.skipif(_real_gpu_count() == 0, reason="no NVIDIA GPU visible to NVML")
def test_real_gpus() -> None:
    reader = GpuReader()
    gpus = reader.read()
    assert reader.status is None
    assert [gpu.index for gpu in gpus] == list(range(_real_gpu_count()))
    for gpu in gpus:
        assert gpu.name and gpu.uuid and gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.memory_total and gpu.memory_used is not None
        assert 0 <= gpu.memory_used <= gpu.memory_total
        assert gpu.utilization_percent is not None and gpu.temperature_c is not None
        assert gpu.power_w is not None and gpu.power_limit_w and gpu.power_percent is not None
        assert gpu.sm_clock_mhz is not None
        json.dumps(gpu.to_dict())
    assert [gpu.uuid for gpu in reader.read()] == [gpu.uuid for gpu in gpus]
    reader.close()
