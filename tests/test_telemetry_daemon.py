"""Telemetry through the real daemon: CLI figures, the event stream, stored history."""

from __future__ import annotations

import time

import pytest

from engine.client import EngineError
from tests.conftest import Engine


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
