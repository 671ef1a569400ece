"""The TUI's state model, fed with daemon-shaped events (no screen, no daemon)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.client.events import EmaSeed, RunInfo, decode_event
from tui.chart_math import DebiasedEma, ema_debiased
from tui.run_tree import build_rows
from tui.state import TuiState
from tui.sweep_groups import SweepGroup, tree_parent
from tui.widgets.run_cells import group_cells


def _run(run_id: str, parent: str | None = None, created: float = 0.0) -> dict[str, Any]:
    return {"id": run_id, "name": f"n-{run_id}", "state": "running", "step": 0,
            "total_steps": 1000, "parent_id": parent, "created": created, "device": "cpu",
            "workload": "synthetic", "last": {}}


def _apply(state: TuiState, message: dict[str, Any]) -> None:
    """Fold in an event as the daemon frames it, decoded as the client decodes it."""
    event = decode_event(message)
    assert event is not None
    state.apply_event(event)


def _set_runs(state: TuiState, runs: list[dict[str, Any]]) -> None:
    state.set_runs([RunInfo.from_wire(run) for run in runs])


def _points(start: int, count: int, key: str = "loss") -> list[list[Any]]:
    return [[s, key, 1.0 / (s + 1), 100.0 + s] for s in range(start, start + count)]


def test_forks_are_listed_under_their_parent_and_family_spans_the_lineage() -> None:
    state = TuiState()
    _set_runs(state, [_run("a", created=1), _run("b", created=2), _run("c", "a", created=3),
                    _run("d", "c", created=4)])
    assert [(r.id, r.depth) for r in build_rows(state.runs, tree_parent(state.runs))] == [
        ("a", 0), ("c", 1), ("d", 2), ("b", 0)]
    assert state.family("c") == ["a", "c", "d"]


def test_the_ema_column_goes_on_from_the_daemons_state_like_the_full_history() -> None:
    everything = _points(0, 3000)
    seed = DebiasedEma(0.9)
    seed.extend([p[2] for p in everything])  # what the daemon's tail_ema hands over
    state = TuiState(smoothing=0.9)
    _set_runs(state, [_run("a")])
    state.set_emas([EmaSeed.from_wire({"id": "a", "ema": [seed.last, seed.num_accum, 2999]})])
    replayed = _points(2990, 20)  # streamed while the listing was answered: 10 overlap
    _apply(state, {"event": "metrics", "data": {"run": "a", "points": replayed}})
    everything += replayed[10:]
    for start in range(3010, 6000, 100):
        batch = _points(start, 100)
        _apply(state, {"event": "metrics", "data": {"run": "a", "points": batch}})
        everything += batch
    exact = ema_debiased([p[2] for p in everything], 0.9)[-1]
    assert state.smoothed_last("a") is not None
    assert abs(state.smoothed_last("a") - exact) < 1e-12  # type: ignore[operator]
    assert state.runs["a"].step == 6010 and state.runs["a"].last["loss"] == 1 / 6010
    assert state.take_points_arrived() == {"a"} and state.take_points_arrived() == set()


def test_a_run_that_appears_later_gets_its_ema_from_its_first_point() -> None:
    state = TuiState(smoothing=0.6)
    _set_runs(state, [])
    _apply(state, {"event": "runs", "data": _run("b")})
    _apply(state, {"event": "metrics", "data": {"run": "b", "points": _points(0, 5)}})
    want = ema_debiased([p[2] for p in _points(0, 5)], 0.6)[-1]
    assert state.smoothed_last("b") == want


def test_steps_per_second_and_eta_come_from_streamed_progress() -> None:
    state = TuiState()
    _set_runs(state, [_run("a")])
    for second in range(5):
        points = [[second * 10 + 9, "loss", 1.0, 1000.0 + second]]
        _apply(state, {"event": "metrics", "data": {"run": "a", "points": points}})
    assert state.steps_per_second("a") == 10.0
    assert state.eta_seconds("a") == (1000 - 50) / 10.0


def test_until_points_stream_a_runs_pace_is_the_one_the_daemon_listed() -> None:
    state = TuiState()
    _set_runs(state, [{**_run("a"), "step": 200, "rate": 25.0},
                      {**_run("b"), "state": "paused", "rate": 25.0}])
    assert state.steps_per_second("a") == 25.0 and state.eta_seconds("a") == 800 / 25.0
    assert state.steps_per_second("b") is None  # paused: no pace, whatever was listed


def test_a_sweeps_eta_queues_its_waiting_runs_on_the_slots_as_they_come_free() -> None:
    state = TuiState()
    queued = {"state": "queued", "total_steps": 1000}
    _set_runs(state, [_run("a"), _run("b"), {**_run("c", created=3), **queued},
                      {**_run("d", created=4), **queued}, {**_run("e"), "state": "paused"},
                      {**_run("f"), "state": "finished"}])
    for second in range(5):  # a: 10 steps a second, at 50; b: 20 a second, at 100
        for run_id, rate in (("a", 10), ("b", 20)):
            points = [[second * rate + rate - 1, "loss", 1.0, 1000.0 + second]]
            _apply(state, {"event": "metrics", "data": {"run": run_id, "points": points}})
    assert (state.eta_seconds("a"), state.eta_seconds("b")) == (95.0, 45.0)
    # c takes b's slot at 45 s, d a's at 95 s, each 1000 steps at the mean rate, 15/s
    assert state.runs_eta("abcdef") == 95.0 + 1000 / 15
    assert state.runs_eta("abef") == 95.0  # the paused and the finished wait for no one
    assert state.runs_eta("cdef") is None  # nothing runs: no rate to go by
    # the sweep's row in the table says it; 'at most' for a rule that stops runs early
    group = SweepGroup("sweep:s", "s", 0.0, tuple("abcdef"))
    assert group_cells(group, state, compact=False)["ETA"].plain == "2m41s"
    asha = {"grace": 100, "metric": "loss", "mode": "min", "reduction": 3}
    for run_id in "abcdef":
        state.runs[run_id] = replace(state.runs[run_id], early_stop=asha)
    assert group_cells(group, state, compact=False)["ETA"].plain == "≤2m41s"
    state.runs["d"] = replace(state.runs["d"], total_steps=None)
    assert state.runs_eta("abcd") is None  # a run of unknown length: no estimate
    assert group_cells(group, state, compact=False)["ETA"].plain == ""


def test_only_runs_whose_cells_moved_are_marked_changed() -> None:
    state = TuiState()
    _set_runs(state, [_run("a"), _run("b"), _run("c")])
    assert state.take_changed() == {"a", "b", "c"} and state.take_changed() == set()
    state.rows_dirty = False  # as the app does once it has rebuilt the rows
    _apply(state, {"event": "metrics", "data": {"run": "a", "points": _points(0, 3)}})
    assert state.take_changed() == {"a"} and not state.rows_dirty

    def sample(memory: dict[str, int]) -> dict[str, Any]:
        return {"event": "telemetry", "data": {"time": 0.0, "host": None, "runs": {
            run_id: {"gpu_memory": {"0": used}} for run_id, used in memory.items()}}}

    _apply(state, sample({"a": 100, "b": 200}))
    assert state.take_changed() == {"a", "b"}
    _apply(state, sample({"a": 100, "b": 300}))  # only b's figure moved
    assert state.take_changed() == {"b"}
    _apply(state, sample({"a": 100}))  # b let go of its memory
    assert state.take_changed() == {"b"} and state.gpu_memory("b") is None
    _apply(state, {"event": "runs", "data": {**_run("c"), "state": "finished"}})
    _apply(state, {"event": "metrics", "data": {"run": "a", "points": _points(3, 1)}})
    assert state.rows_dirty and state.take_restated() == {"c"}  # drawn at once
    assert state.take_changed() == {"a"}  # drawn at the next once-a-second pass


def test_a_name_with_an_escape_sequence_is_kept_harmless() -> None:
    state = TuiState()
    _set_runs(state, [{**_run("a"), "name": "evil\x1b[2J"}])
    _apply(state, {"event": "runs", "data": {**_run("b"), "name": "x\x07y"}})
    assert state.runs["a"].name == "evil\\x1b[2J" and state.runs["b"].name == "x\\x07y"


def test_points_advance_a_run_as_a_fresh_copy_and_find_its_loss_key_again() -> None:
    run = RunInfo(id="abc234", name="a", state="running", workload="script", step=3,
                  last={"acc": 0.5}, best={"acc": 0.5}, highest={"acc": 0.5})
    assert run.loss_key == "loss"  # nothing that looks like a loss yet: the default
    same_keys = run.advanced({"acc": 0.7}, {"acc": 0.5}, {"acc": 0.7}, 4)
    assert same_keys == replace(run, last={"acc": 0.7}, highest={"acc": 0.7}, step=4)
    assert (run.last, run.step) == ({"acc": 0.5}, 3)  # the old one is left as it was
    new_key = same_keys.advanced({"acc": 0.7, "train/loss": 2.0},
                                 {"acc": 0.5, "train/loss": 2.0},
                                 {"acc": 0.7, "train/loss": 2.0}, 5)
    assert new_key.loss_key == "train/loss" and same_keys.loss_key == "loss"
    state = TuiState()
    state.apply_event(run)
    state.apply_event(decode_event({"event": "metrics", "data": {"run": "abc234", "points": [
        [7, "train/loss", 1.5, 1.0], [8, "train/loss", 1.25, 2.0]]}}))
    got = state.runs["abc234"]
    assert (got.step, got.last["train/loss"], got.best["train/loss"]) == (9, 1.25, 1.25)
    assert got.highest == {"acc": 0.5, "train/loss": 1.5}
    assert got.loss_key == "train/loss"
