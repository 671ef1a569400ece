"""What does telemetry cost?  Run: ``.venv/bin/python bench/telemetry_cost.py``.

Starts 8 dummy runs (real processes, each with a child, as a worker with a
data-loader worker would be), runs the real ``TelemetrySampler`` over them and
measures the CPU time of the sampler thread (``time.thread_time`` read inside
it, from the sample callback) per tick. The default is the real 1 Hz for 30 s;
at a shorter ``--interval`` the cost per tick is scaled to 1 Hz, which
under-counts the full process scan done every 10 s of wall time. As a
cross-check, the whole process's CPU time per second with the sampler running
is compared with the same process idle (up to 10 s, just before, same run).

``--fake-gpus N`` adds N fake GPUs (the Python side of the GPU layer, not the
driver's); without it the real NVML is used where there is one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.server.telemetry import (  # noqa: E402
    FakeGpu,
    FakeNvml,
    FakeProcess,
    GpuReader,
    Sample,
    TelemetrySampler,
)

RUNS = 8
BUDGET_PERCENT = 1.0
# A worker that starts one child (its "data loader") and waits; both report their pids.
WORKER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(3600)\n"
)


def start_runs() -> list[tuple[subprocess.Popen[str], int]]:
    """(worker, child pid) for RUNS dummy runs, each in its own process group."""
    runs = []
    for _ in range(RUNS):
        worker = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE,
                                  text=True, start_new_session=True)
        assert worker.stdout is not None
        runs.append((worker, int(worker.stdout.readline())))
    return runs


def main() -> int:
    """Print the measurements; always exits 0 (the target is reported, not asserted)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to sample")
    parser.add_argument("--fake-gpus", type=int, default=0, help="use N fake GPUs, not NVML")
    args = parser.parse_args()

    runs = start_runs()
    try:
        refs = [(f"run{i}", worker.pid, worker.pid) for i, (worker, _) in enumerate(runs)]
        if args.fake_gpus:
            # Every run's child holds memory on some GPU, plus one stranger per GPU.
            gpus = [FakeGpu(uuid=f"GPU-{i}", processes=[FakeProcess(1, 1 << 30)])
                    for i in range(args.fake_gpus)]
            for i, (_, child) in enumerate(runs):
                gpus[i % args.fake_gpus].processes.append(FakeProcess(child, 4 << 30))
            reader = GpuReader(FakeNvml(gpus))
        else:
            reader = GpuReader()

        ticks: list[float] = []  # sampler-thread CPU seconds at each tick
        last: list[Sample] = []

        def on_sample(sample: Sample) -> None:
            ticks.append(time.thread_time())
            last[:] = [sample]

        sampler = TelemetrySampler(lambda: refs, on_sample, interval=args.interval,
                                   gpu_reader=reader)
        time.sleep(0.5)  # let the dummy runs settle
        idle_cpu, idle_wall = time.process_time(), time.monotonic()
        time.sleep(min(args.seconds, 10.0))
        idle_rate = (time.process_time() - idle_cpu) / (time.monotonic() - idle_wall)

        busy_cpu, busy_wall = time.process_time(), time.monotonic()
        sampler.start()
        time.sleep(args.seconds)
        sampler.stop()
        busy_rate = (time.process_time() - busy_cpu) / (time.monotonic() - busy_wall)
    finally:
        for worker, _ in runs:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    per_tick = (ticks[-1] - ticks[0]) / (len(ticks) - 1)
    at_1hz = 100.0 * per_tick  # one tick per second: CPU seconds per second, in percent
    sample = last[0]
    print(f"machine: {os.cpu_count()} cores, {len(os.listdir('/proc'))} /proc entries; "
          f"threads alive: {threading.active_count()}")
    print(f"sampled {RUNS} runs ({sum(u.processes for u in sample.runs.values())} processes), "
          f"{len(sample.gpus)} GPUs (status: {sample.gpu_status}), {len(ticks)} ticks "
          f"at {args.interval} s")
    print(f"sampler thread CPU per tick: {per_tick * 1e3:.3f} ms")
    print(f"cost at 1 Hz: {at_1hz:.3f}% of one core "
          f"({'under' if at_1hz < BUDGET_PERCENT else 'OVER'} the {BUDGET_PERCENT}% budget; "
          f"{at_1hz / BUDGET_PERCENT:.2f}x of budget)")
    scale = 1.0 / args.interval
    extra = (busy_rate - idle_rate) / scale * 100.0
    print(f"process CPU: idle baseline {idle_rate * 100:.3f}% of a core, with sampler at "
          f"{scale:g} Hz {busy_rate * 100:.3f}% ({busy_rate / max(idle_rate, 1e-9):.1f}x the "
          f"baseline); difference scaled to 1 Hz: {extra:.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
