"""A state directory whose every figure is fixed, so the TUI draws the same screen each time.

Live runs and the live telemetry sampler change what is on screen from one
moment to the next. Here the store is filled ahead of the daemon's start, the
way a daemon would have left it: four ended runs (a fork among them) with
fixed ids, names, configs, points and event times, and a minute of telemetry
samples. The daemon then serves them as it serves any store; its own sampler
is told to wait an hour before its first sample (``TRAINTOP_TELEMETRY_INTERVAL``),
so the panels show the stored minute and nothing else.

The GPU figures come from the same ``GpuReader`` the daemon uses, on the fake
NVML that ``TRAINTOP_FAKE_GPUS`` selects (or one that finds no driver); only
the host figures, which psutil reads from this machine, are written out here.
"""

from __future__ import annotations

import math
import random
from typing import Any

from engine.common.sweep import run_names
from engine.common.telemetry import HostSample
from engine.rundir.paths import StatePaths
from engine.rundir.state_dir import DIR_MODE
from engine.server.store import Store
from engine.server.telemetry import GpuReader, Sample, demo_nvml
from engine.server.telemetry.fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeNvml

# 2026-01-01 09:00:00 UTC: every stored event is dated from here (the tests set TZ=UTC).
EPOCH = 1_767_258_000.0
SECONDS_PER_STEP = 0.25
TELEMETRY_SAMPLES = 60
GIB = 1024**3

CHARLM = {
    "steps": 600, "lr": 3e-3, "batch": 32, "block": 64, "layers": 2, "d_model": 96,
    "heads": 4, "dropout": 0.1, "weight_decay": 0.01, "seed": 0,
}
SYNTHETIC = {"steps": 400, "lr": 0.02, "seed": 0, "dim": 16, "batch": 32}

BASE, FORK, WIDE, TINY = "k3p9ra", "m8q2zt", "w5d7hx", "t2n6fe"
FORK_STEP = 200
WIDE_FAILED_AT = 140
TINY_KILLED_AT = 90
STDERR_TAIL = (
    "Traceback (most recent call last):\n"
    '  File "engine/run/worker.py", line 212, in main\n'
    "MemoryError: cannot allocate 6.0 GiB for the attention scores (d_model=256)"
)


def _loss(step: int, lr: float, noise: random.Random) -> float:
    """A plausible, fixed training curve: fast descent, a floor that depends on lr."""
    floor = 1.45 + 40 * abs(lr - 1.5e-3)
    return floor + 2.8 * math.exp(-step / 90) + 0.06 * (noise.random() - 0.5)


def loss_points(start: int, end: int, lr: float, created: float, seed: int) -> list[list[Any]]:
    """Stored points of steps ``start`` to ``end``: a fixed, noisy curve for ``lr``."""
    noise = random.Random(seed)
    return [
        [step, "loss", round(_loss(step, lr, noise), 6), created + 2 + step * SECONDS_PER_STEP]
        for step in range(start, end)
    ]


def store_run(
    store: Store,
    run: dict[str, Any],
    points: list[list[Any]],
    end: tuple[str, str, int | None],
) -> None:
    """Store one run as a daemon would have: created, started, trained, ended."""
    created = run["created"]
    store.create_run({"state": "queued", "released": False, "device": "cpu", "cwd": "/", **run},
                     f"forked from {run['parent_id']}" if run.get("parent_id") else
                     "created by user")
    store.set_state(run["id"], "starting", "started", when=created + 0.5,
                    started=created + 0.5, generation=1)
    first = points[0][0] if points else 0
    store.set_state(run["id"], "running", "worker is training", when=created + 1.5, step=first)
    step = points[-1][0] + 1 if points else first
    store.add_metrics(run["id"], points, spool_offset=0, step=step)
    store.seal_metrics(run["id"])
    state, reason, code = end
    ended = created + 2 + step * SECONDS_PER_STEP
    store.set_state(run["id"], state, reason, when=ended, ended=ended, exit_code=code,
                    exit_reason=reason, stderr_tail=STDERR_TAIL if state == "failed" else None)


def fill_runs(store: Store) -> None:
    """Four ended runs: a base charlm, its fork at step 200, a failed one, a killed one."""
    store_run(store, {"id": BASE, "name": "base", "workload": "charlm", "config": CHARLM,
                      "total_steps": 600, "created": EPOCH},
              loss_points(0, 600, 3e-3, EPOCH, seed=1), ("finished", "finished", 0))
    fork_config = {**CHARLM, "lr": 1e-3}
    forked = EPOCH + 2 + FORK_STEP * SECONDS_PER_STEP
    store_run(store, {"id": FORK, "name": "base-lr1e-3", "workload": "charlm",
                      "config": fork_config, "total_steps": 600, "created": forked,
                      "parent_id": BASE, "fork_step": FORK_STEP},
              loss_points(FORK_STEP, 600, 1e-3, EPOCH, seed=2), ("finished", "finished", 0))
    wide_config = {**CHARLM, "lr": 3e-2, "d_model": 256}
    store_run(store, {"id": WIDE, "name": "wide-d256", "workload": "charlm",
                      "config": wide_config, "total_steps": 600, "created": EPOCH + 300},
              loss_points(0, WIDE_FAILED_AT, 3e-2, EPOCH + 300, seed=3),
              ("failed", "exited with code 1", 1))
    store_run(store, {"id": TINY, "name": "tiny", "workload": "synthetic", "config": SYNTHETIC,
                      "total_steps": 400, "created": EPOCH + 600},
              loss_points(0, TINY_KILLED_AT, 2e-2, EPOCH + 600, seed=4),
              ("killed", "killed by user", -15))


def _host(tick: int) -> HostSample:
    """A 16-core host under a steady training load, with a slow wobble."""
    wave = math.sin(tick / 6)
    cores = [round(55 + 35 * math.sin(tick / 5 + core), 1) for core in range(16)]
    return HostSample(
        cpu_percent=round(sum(cores) / len(cores), 1),
        cpu_per_core=cores,
        load_average=(6.12, 5.87, 5.02),
        memory_used=int((41 + 2 * wave) * GIB),
        memory_total=128 * GIB,
        swap_used=0,
        swap_total=8 * GIB,
        disk_read_bps=12.5e6,
        disk_write_bps=3.1e6 + 1e6 * wave,
        net_rx_bps=850e3,
        net_tx_bps=120e3,
    )


def fill_telemetry(store: Store, now: float, fake_gpus: int) -> None:
    """A minute of samples up to ``now``, one a second: what the panels draw.

    ``fake_gpus`` > 0 reads that many simulated H100s, as ``TRAINTOP_FAKE_GPUS``
    does; 0 is a machine without an NVIDIA driver.
    """
    nvml = demo_nvml(fake_gpus) if fake_gpus else FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    reader = GpuReader(nvml)
    base_utilization = [gpu.utilization or 0 for gpu in nvml.gpus]
    try:
        for tick in range(TELEMETRY_SAMPLES):
            for gpu, base in zip(nvml.gpus, base_utilization, strict=True):
                gpu.utilization = max(0, min(100, base + round(8 * math.sin(tick / 4))))
            when = now - TELEMETRY_SAMPLES + tick
            gpus = reader.read()
            sample = Sample(time=when, host=_host(tick), gpus=gpus, gpu_status=reader.status)
            store.add_telemetry(when, sample.to_dict())
    finally:
        reader.close()


def fill_state_dir(paths: StatePaths, now: float, fake_gpus: int) -> None:
    """Create the state directory with its store and run directories, no daemon yet."""
    paths.home.mkdir(mode=DIR_MODE, parents=True)
    paths.runs.mkdir(mode=DIR_MODE)
    for run_id in (BASE, FORK, WIDE, TINY):
        paths.run_dir(run_id).path.mkdir(mode=DIR_MODE)
    store = Store(paths.store)
    try:
        fill_runs(store)
        fill_telemetry(store, now, fake_gpus)
    finally:
        store.close()


# An 8-run sweep of charlm: lr x batch, named as 'traintop sweep' names them.
SWEEP_IDS = ("s2a4b6", "s3c5d7", "s4e6f8", "s5g7h9", "s6j8k2", "s7m9n3", "s8p2q4", "s9r3t5")
SWEEP_LRS = ("3e-4", "1e-3", "3e-3", "1e-2")
SWEEP_BATCHES = ("32", "64")
SWEEP_STEPS = 300


def fill_sweep(store: Store) -> None:
    """Eight ended runs of one sweep (lr x batch), started one after the other."""
    overrides = [[f"lr={lr}", f"batch={batch}"] for lr in SWEEP_LRS for batch in SWEEP_BATCHES]
    names = run_names("charlm", overrides, lambda name: False)
    for n, (run_id, name, pair) in enumerate(zip(SWEEP_IDS, names, overrides, strict=True)):
        lr, batch = float(pair[0][3:]), int(pair[1][6:])
        created = EPOCH + 10 * n
        end = ("killed", "killed by user", -15) if n == 7 else ("finished", "finished", 0)
        steps = SWEEP_STEPS // 2 if n == 7 else SWEEP_STEPS
        # batch 64 sees more data a step: a slightly lower floor, so the batches differ.
        points = [[s, k, v - 0.05 * (batch == 64), t]
                  for s, k, v, t in loss_points(0, steps, lr, created, seed=10 + n)]
        store_run(store, {"id": run_id, "name": name, "workload": "charlm", "sweep": "charlm",
                          "config": {**CHARLM, "steps": SWEEP_STEPS, "lr": lr, "batch": batch},
                          "total_steps": SWEEP_STEPS, "created": created}, points, end)


def fill_sweep_state_dir(paths: StatePaths, now: float, fake_gpus: int) -> None:
    """The state directory of the sweep's eight runs and the telemetry minute."""
    paths.home.mkdir(mode=DIR_MODE, parents=True)
    paths.runs.mkdir(mode=DIR_MODE)
    for run_id in SWEEP_IDS:
        paths.run_dir(run_id).path.mkdir(mode=DIR_MODE)
    store = Store(paths.store)
    try:
        fill_sweep(store)
        fill_telemetry(store, now, fake_gpus)
    finally:
        store.close()


# A base run and two forks of it four steps apart: their markers' labels must not collide.
CLOSE_FORKS = (("df2n7y", 100, 1e-3), ("7jfa7f", 104, 6e-3))


def fill_close_forks_state_dir(paths: StatePaths, now: float, fake_gpus: int) -> None:
    """The base run, forked at steps 100 and 104 with other learning rates."""
    paths.home.mkdir(mode=DIR_MODE, parents=True)
    paths.runs.mkdir(mode=DIR_MODE)
    for run_id in (BASE, *(fork for fork, _, _ in CLOSE_FORKS)):
        paths.run_dir(run_id).path.mkdir(mode=DIR_MODE)
    store = Store(paths.store)
    try:
        store_run(store, {"id": BASE, "name": "base", "workload": "charlm", "config": CHARLM,
                          "total_steps": 600, "created": EPOCH},
                  loss_points(0, 600, 3e-3, EPOCH, seed=1), ("finished", "finished", 0))
        for n, (fork, step, lr) in enumerate(CLOSE_FORKS):
            created = EPOCH + 2 + step * SECONDS_PER_STEP
            store_run(store, {"id": fork, "name": f"base-lr{lr:g}", "workload": "charlm",
                              "config": {**CHARLM, "lr": lr}, "total_steps": 600,
                              "created": created, "parent_id": BASE, "fork_step": step},
                      loss_points(step, 600, lr, EPOCH, seed=5 + n), ("finished", "finished", 0))
        fill_telemetry(store, now, fake_gpus)
    finally:
        store.close()
