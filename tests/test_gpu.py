"""Runs on a real GPU: memory attribution, release, bit-exact fork and resume, device errors.

Skipped where NVML sees no NVIDIA GPU; run by ``.ci/gpu_check.sh`` on a GPU machine.
Every run is small (seconds) and names its device, so the tests hold on any count of GPUs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.client.demo import DEMO_GPU_SHARE, FORK_AFTER_STEPS, FORKED
from engine.rundir.paths import read_json
from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_warm_pool import waiting_worker, worker_of


def _gpu_count() -> int:
    from engine.server.devices import list_gpus

    return len(list_gpus())


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(_gpu_count() == 0, reason="needs an NVIDIA GPU"),
]

# A charlm big enough to hold well over 100 MiB on its GPU, small enough to start fast.
HEAVY = ["steps=100000", "batch=64", "d_model=256", "layers=4", "block=128"]


@pytest.fixture(autouse=True)
def fast_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINTOP_TELEMETRY_INTERVAL", "0.2")


def start(engine: Engine, *args: str) -> dict[str, Any]:
    result = engine.cli("start", *args, "--json")
    assert result.code == 0, result.err
    run: dict[str, Any] = result.json()
    return run


def sample_until(engine: Engine, check: Callable[[dict[str, Any]], Any], what: str) -> Any:
    """Poll ``traintop top --json`` until ``check(sample)`` is truthy; return that value."""
    return wait_until(lambda: check(engine.cli("top", "--json").json()), what, timeout=120)


def held(sample: dict[str, Any], run_id: str, index: int) -> int:
    """Bytes the run holds on GPU ``index`` in a telemetry sample."""
    usage = sample["runs"].get(run_id) or {}
    return int((usage.get("gpu_memory") or {}).get(str(index)) or 0)


def gpu_pids(sample: dict[str, Any], index: int) -> set[int]:
    gpu = next(g for g in sample["gpus"] if g["index"] == index)
    return {int(p["pid"]) for p in gpu["processes"]}


def test_a_cuda_run_is_attributed_its_memory_and_release_frees_it(engine: Engine) -> None:
    run = start(engine, "charlm", "--device", "cuda:0", *HEAVY)
    run_id = run["id"]
    sample_until(engine, lambda s: held(s, run_id, 0) > 100 * 2**20, "the run holds memory")
    pid = int(engine.run(run_id)["pid"])
    assert engine.cli("pause", run_id, "--release").code == 0
    engine.wait(run_id, lambda r: r["state"] == "paused" and r["released"])
    sample_until(engine, lambda s: held(s, run_id, 0) == 0 and pid not in gpu_pids(s, 0),
                 "the released run's memory is free")
    assert engine.cli("resume", run_id).code == 0
    sample_until(engine, lambda s: held(s, run_id, 0) > 100 * 2**20, "the memory is back")
    assert engine.cli("kill", run_id, "--grace", "2").code == 0


def test_two_runs_on_one_gpu_are_attributed_apart(engine: Engine) -> None:
    small = start(engine, "charlm", "--gpu-share", "0.5", *HEAVY[:1], "d_model=64", "layers=1")
    big = start(engine, "charlm", "--gpu-share", "0.5", *HEAVY)
    index = int(engine.wait(big["id"], lambda r: r["device"].startswith("cuda:"))["device"][5:])
    assert engine.run(small["id"])["device"] == f"cuda:{index}"  # both on the one GPU

    def both(sample: dict[str, Any]) -> dict[str, Any] | None:
        ok = all(held(sample, r["id"], index) > 0 for r in (small, big))
        return sample if ok else None

    sample = sample_until(engine, both, "both runs hold memory")
    gpu = next(g for g in sample["gpus"] if g["index"] == index)
    by_pid = {int(p["pid"]): p["used_memory"] for p in gpu["processes"]}
    pids = {r["id"]: int(engine.run(r["id"])["pid"]) for r in (small, big)}
    assert pids[small["id"]] != pids[big["id"]]
    for run in (small, big):  # each is given its own worker's memory, not the GPU's total
        assert held(sample, run["id"], index) == by_pid[pids[run["id"]]]
    for run in (small, big):
        assert engine.cli("kill", run["id"], "--grace", "2").code == 0


def test_fork_and_resume_of_a_cuda_run_reproduce_its_losses_exactly(engine: Engine) -> None:
    # charlm's defaults, as issue 14 saw replayed bit for bit on an H200.
    parent = start(engine, "charlm", "--device", "cuda:0", "steps=400")["id"]
    engine.wait_step(parent, 30)
    child = engine.cli("fork", parent, "--json").json()
    engine.wait_step(child["id"], child["fork_step"] + 20)
    assert engine.cli("pause", child["id"], "--release").code == 0
    engine.wait(child["id"], lambda r: r["state"] == "paused" and r["released"])
    assert engine.cli("resume", child["id"]).code == 0
    for run_id in (parent, child["id"]):
        assert engine.wait_state(run_id, *TERMINAL, timeout=300)["state"] == "finished"
    parent_losses, child_losses = engine.losses(parent), engine.losses(child["id"])
    assert len(parent_losses) == 400 and min(child_losses) == child["fork_step"]
    assert child_losses == {s: v for s, v in parent_losses.items() if s >= child["fork_step"]}
    assert engine.run(child["id"])["generation"] == 2


def test_the_demo_and_its_fork_all_train_at_once_on_one_gpu(engine: Engine) -> None:
    # A run's default is a whole GPU: without its share, one GPU held the demo's
    # other runs in the queue and the demo had nothing to fork.
    assert engine.cli("demo").code == 0
    runs = engine.all_runs()
    assert len(runs) == 3 and all(r["gpus"] == DEMO_GPU_SHARE for r in runs)
    devices = {engine.wait(r["id"], lambda r: r["state"] == "running")["device"] for r in runs}
    assert len(devices) == 1 and devices.pop().startswith("cuda:")  # packed onto one GPU
    parent = next(r for r in runs if r["name"] == FORKED)
    engine.wait_step(parent["id"], FORK_AFTER_STEPS)
    assert engine.cli("demo").code == 0  # now it forks
    fork = next(r for r in engine.all_runs() if r["parent_id"] == parent["id"])
    assert engine.wait(fork["id"], lambda r: r["state"] == "running")["gpus"] == DEMO_GPU_SHARE
    assert all(engine.run(r["id"])["state"] == "running" for r in runs)
    for run in [*runs, fork]:
        assert engine.cli("kill", run["id"], "--grace", "2").code == 0


def test_a_gpu_that_is_not_there_is_refused_by_its_name(engine: Engine) -> None:
    missing = _gpu_count()
    refused = engine.cli("start", "synthetic", "--device", f"cuda:{missing}")
    assert refused.code == 1 and f"cuda:{missing}" in refused.err
    assert "Traceback" not in refused.err
    assert engine.cli("ls", "--json").json() == []
    ok = start(engine, "synthetic", "steps=5", "--device", "cuda:0")
    assert engine.wait_state(ok["id"], *TERMINAL)["state"] == "finished"


def test_the_fork_server_holds_no_gpu_and_serves_a_cuda_run(engine: Engine) -> None:
    first = start(engine, "synthetic", "steps=3", "--device", "cuda:0")
    assert engine.wait_state(first["id"], *TERMINAL)["state"] == "finished"
    pid = waiting_worker(engine)
    time.sleep(1.0)  # a few samples, so a context it held would be listed
    assert pid not in gpu_pids(engine.cli("top", "--json").json(), 0)
    run = start(engine, "charlm", "--device", "cuda:0", *HEAVY)
    assert worker_of(engine, run["id"])["warm"] is True  # forked: CUDA survived the fork
    sample_until(engine, lambda s: held(s, run["id"], 0) > 100 * 2**20, "the warm run holds memory")
    startup = wait_until(lambda: read_json(engine.paths.run_dir(run["id"]).startup), "startup")
    assert startup["warm"] is True and startup["cuda_ready"] >= startup["handover"]
    assert engine.cli("kill", run["id"], "--grace", "2").code == 0


def test_a_step_boundary_flush_of_cuda_losses_never_synchronises() -> None:
    import torch

    from engine.run.run_api import Run

    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), {"run_id": "gpu", "generation": 1, "config": {},
                              "device": "cuda", "control_offset": 0})
        losses = [torch.tensor(float(i), device="cuda") * 0.5 for i in range(300)]
        torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
        try:
            for loss in losses:
                run.log(loss=loss.detach())
                run.step += 1
            run.flush(wait=False)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        run.flush()  # waits: everything is written
        spool = (Path(tmp) / "spool.jsonl").read_text()
        values = [p[2] for line in spool.splitlines() for p in eval_points(line)]
        assert values == [i * 0.5 for i in range(300)]


def eval_points(line: str) -> list[list[Any]]:
    import json

    record = json.loads(line)
    return record["points"] if record["t"] == "metrics" else []  # type: ignore[no-any-return]
