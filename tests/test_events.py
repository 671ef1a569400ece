"""What the daemon sends, decoded once in the client: from a real daemon's frames into
typed objects, and a malformed frame into one clear error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.client.aclient import AsyncClient
from engine.client.events import (
    Event,
    MalformedMessage,
    MetricBatch,
    RunInfo,
    SeriesView,
    decode_event,
)
from engine.common.protocol import ProtocolError
from engine.common.telemetry import GpuSample, Sample
from tests.conftest import Engine
from tests.test_tui import start


async def _first(client: AsyncClient, kind: type[Any], timeout: float = 30.0) -> Any:
    """The first event of type ``kind`` on the client's stream."""

    async def wait() -> Event:
        while True:
            event = await client.events.get()
            if isinstance(event, kind):
                return event

    return await asyncio.wait_for(wait(), timeout)


def test_a_real_daemons_runs_metrics_telemetry_and_views_decode_into_types(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINTOP_TELEMETRY_INTERVAL", "0.2")
    monkeypatch.setenv("TRAINTOP_FAKE_GPUS", "2")
    run_id = start(engine, "synthetic", "steps=400", "sleep=0.01", "lr=0.02", "--name", "typed")

    async def scenario() -> None:
        client = await AsyncClient(engine.paths.home).connect(autostart=False)
        try:
            await client.call("subscribe", topics=["runs", "metrics", "telemetry"])
            batch = await _first(client, MetricBatch)
            assert batch.run == run_id and batch.points[0].key == "loss"
            assert isinstance(batch.points[0].step, int)
            sample = await _first(client, Sample)
            assert [type(gpu) for gpu in sample.gpus] == [GpuSample, GpuSample]
            assert sample.host is not None and sample.host.memory_total > 0

            (run,) = await client.all_runs()
            assert isinstance(run, RunInfo)
            assert (run.id, run.name, run.workload, run.config["lr"]) == (
                run_id, "typed", "synthetic", 0.02)
            # Fields a daemon may not send yet take their defaults.
            assert run.kind == "train" and run.refusals == {}

            view = await client.series(run_id, "loss", 20, "step", 0.6)
            assert isinstance(view, SeriesView) and view.key == "loss" and view.n > 0
            assert view.buckets and all(b.vmin <= b.vmax for b in view.buckets)
            assert all(isinstance(s, Sample) for s in await client.telemetry(60.0))
        finally:
            await client.close()

    asyncio.run(scenario())


RUN = {"id": "a1b2c3", "name": "n", "state": "running", "workload": "synthetic", "step": 3}


def test_unknown_keys_are_ignored_and_missing_or_mistyped_ones_raise_one_error() -> None:
    newer = decode_event({"event": "runs", "data": {**RUN, "shiny_new_field": [1, 2]}})
    assert newer == RunInfo("a1b2c3", "n", "running", "synthetic", 3)
    assert decode_event({"event": "a_topic_from_the_future", "data": {}}) is None

    malformed: list[dict[str, Any]] = [
        {"event": "runs", "data": {k: v for k, v in RUN.items() if k != "name"}},
        {"event": "runs", "data": {**RUN, "step": "3"}},
        {"event": "runs", "data": [RUN]},
        {"event": "metrics", "data": {"run": "a1b2c3", "points": [[1, "loss"]]}},
        {"event": "telemetry", "data": {"time": 1.0, "host": {"cpu_percent": 3.0}}},
        {"event": "telemetry", "data": {"time": 1.0, "host": None, "gpus": [{"name": "x"}]}},
        {"event": "logs", "data": None},
    ]
    for message in malformed:
        with pytest.raises(MalformedMessage, match=r"^malformed .* from the engine: "):
            decode_event(message)
    assert issubclass(MalformedMessage, ProtocolError)  # caught wherever a bad frame is
