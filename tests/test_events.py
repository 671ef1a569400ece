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
    decode_events,
)
from engine.common.protocol import ProtocolError
from engine.common.telemetry import GpuSample, Sample
from tests.conftest import TERMINAL, Engine
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


def test_a_batch_subscriber_gets_a_ticks_metrics_in_one_frame_in_order_and_misses_nothing(
    engine: Engine,
) -> None:
    steps = 800  # 8 s each, started together from a paused queue: they train side by side
    engine.call("queue_set", name="side", paused=True)
    with engine.client() as batched, engine.client() as plain:
        batched.subscribe(["runs", "metrics"], batch=True)
        plain.subscribe(["runs", "metrics"])
        ids = [start(engine, "synthetic", f"steps={steps}", "sleep=0.01", "--queue", "side")
               for _ in range(3)]
        engine.call("queue_set", name="side", paused=False)
        # A pause: the run's last points and its new state come in the same tick.
        engine.wait_step(ids[-1], 50)
        for run_id in ids:
            assert engine.cli("pause", run_id).code == 0
        for run_id in ids:
            engine.wait_state(run_id, "paused")
            assert engine.cli("resume", run_id).code == 0

        def listen(client: Any) -> list[dict[str, Any]]:
            frames: list[dict[str, Any]] = []
            ended: set[str] = set()
            while ended != set(ids):
                frame = client.next_event(timeout=30)
                assert frame is not None, f"runs {set(ids) - ended} never ended"
                frames.append(frame)
                if frame["event"] == "runs" and frame["data"]["state"] in TERMINAL:
                    ended.add(frame["data"]["id"])
            return frames

        got_batched, got_plain = listen(batched), listen(plain)
    assert {f["event"] for f in got_batched} == {"runs", "metrics_batch"}
    assert {f["event"] for f in got_plain} == {"runs", "metrics"}
    # Fewer frames: a frame carries the points of every run stored in that tick.
    per_frame = [{b["run"] for b in f["data"]["batches"]}
                 for f in got_batched if f["event"] == "metrics_batch"]
    assert max(len(runs) for runs in per_frame) > 1
    assert len(per_frame) < sum(f["event"] == "metrics" for f in got_plain)

    def steps_before_the_end(frames: list[dict[str, Any]]) -> dict[str, list[int]]:
        """Each run's steps, as received before the event that said it ended; and when
        a run is said to be paused at step S, its steps below S have all come."""
        seen: dict[str, list[int]] = {run_id: [] for run_id in ids}
        ended: set[str] = set()
        for frame in frames:
            for event in decode_events(frame):
                if isinstance(event, MetricBatch) and event.run not in ended:
                    seen[event.run] += [p.step for p in event.points if p.key == "loss"]
                elif isinstance(event, RunInfo) and event.state == "paused":
                    assert seen[event.id] == list(range(event.step)), "a pause came early"
                elif isinstance(event, RunInfo) and event.state in TERMINAL:
                    ended.add(event.id)
        return seen

    # Every point, in order, and all of them before the state that follows them, on both.
    expected = {run_id: list(range(steps)) for run_id in ids}
    assert steps_before_the_end(got_batched) == expected
    assert steps_before_the_end(got_plain) == expected


def test_a_malformed_metrics_batch_is_one_clear_error() -> None:
    good = {"run": "a1b2c3", "points": [[1, "loss", 0.5, 1.0]]}
    frame = {"event": "metrics_batch", "data": {"batches": [good, {**good, "run": "d4e5f6"}]}}
    assert [b.run for b in decode_events(frame)] == ["a1b2c3", "d4e5f6"]  # type: ignore[union-attr]
    for data in (None, {"batches": None}, {"batches": [{"run": "a1b2c3"}]}):
        with pytest.raises(MalformedMessage, match=r"^malformed .* from the engine: "):
            decode_events({"event": "metrics_batch", "data": data})
