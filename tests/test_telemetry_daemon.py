"""Telemetry through the real daemon: CLI figures, the event stream, stored history."""

from __future__ import annotations

import time

import pytest

from engine.client.client import EngineError
from tests.conftest import Engine


def _has_gpu() -> bool:
    from engine.server.devices import list_gpus

    return bool(list_gpus())


@pytest.fixture(autouse=True)
def fast_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINTOP_TELEMETRY_INTERVAL", "0.2")


def test_top_attributes_memory_and_threads_to_a_live_run(engine: Engine) -> None:
    started = engine.cli("start", "synthetic", "steps=3000", "sleep=0.01", "--json")
    run_id = started.json()["id"]
    deadline = time.monotonic() + 20
    usage = None
    while time.monotonic() < deadline:
        sample = engine.cli("top", "--json").json()
        usage = sample["runs"].get(run_id)
        if usage and usage["cpu_percent"]:
            break
        time.sleep(0.2)
    assert usage is not None
    assert usage["rss"] > 50 * 2**20  # a worker that imported torch
    assert usage["threads"] >= 1 and usage["processes"] >= 1
    assert usage["cpu_percent"] > 0
    assert len(sample["host"]["cpu_per_core"]) >= 1
    table = engine.cli("top")
    assert run_id in table.out and "RAM" in table.out


@pytest.mark.skipif(_has_gpu(), reason="this machine has a GPU")
def test_gpu_command_says_plainly_when_there_is_no_gpu(engine: Engine) -> None:
    result = engine.cli("gpu")
    assert result.code == 0
    assert result.out.startswith("No GPU found")


def test_gpu_command_shows_power_against_its_limit(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINTOP_FAKE_GPUS", "2")
    result = engine.cli("gpu")
    lines = result.out.splitlines()
    assert [line.split()[:2] for line in lines] == [["GPU", "0"], ["GPU", "1"]]
    assert "power 620/700 W (89%)" in lines[0]
    data = engine.cli("gpu", "--json").json()
    assert [g["power_percent"] for g in data["gpus"]] == pytest.approx([88.6, 52.9], abs=0.1)


def test_samples_stream_to_subscribers_and_history_survives_a_restart(engine: Engine) -> None:
    with engine.client() as client:
        client.subscribe(["telemetry"])
        times = []
        while len(times) < 3:
            event = client.next_event(timeout=5)
            assert event is not None and event["event"] == "telemetry"
            times.append(event["data"]["time"])
    assert times == sorted(times) and len(set(times)) == 3
    time.sleep(2.5)  # enough samples for one to be stored (every 10th)
    history = engine.call("telemetry", seconds=60)["history"]
    assert len(history) >= 10
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "start").code == 0
    stored = engine.call("telemetry", seconds=60)["history"]
    assert stored and stored[0]["time"] <= history[-1]["time"]
    with engine.client() as client, pytest.raises(EngineError, match="seconds"):
        client.call("telemetry", seconds="all")


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="needs an NVIDIA GPU")
def test_a_cuda_run_gets_its_gpu_memory_and_the_gpu_gets_busy(engine: Engine) -> None:
    started = engine.cli("start", "charlm", "--device", "cuda", "steps=100000", "batch=64",
                         "d_model=256", "layers=4", "--json")
    assert started.code == 0, started.err
    run_id = started.json()["id"]
    index = int(started.json()["device"].split(":")[1])
    deadline = time.monotonic() + 120
    seen_memory, peak_util = 0, 0.0
    while time.monotonic() < deadline and (seen_memory == 0 or peak_util < 20):
        sample = engine.cli("top", "--json").json()
        usage = sample["runs"].get(run_id) or {}
        seen_memory = max(seen_memory, int((usage.get("gpu_memory") or {}).get(str(index)) or 0))
        gpu = next(g for g in sample["gpus"] if g["index"] == index)
        peak_util = max(peak_util, gpu["utilization_percent"] or 0.0)
        time.sleep(0.5)
    print(f"GPU {index}: run {run_id} holds {seen_memory / 2**20:.0f} MiB; peak util {peak_util}%")
    assert seen_memory > 100 * 2**20
    assert peak_util >= 20
    assert engine.cli("kill", run_id, "--grace", "2").code == 0
