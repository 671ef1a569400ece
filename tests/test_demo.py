"""traintop demo: the runs it starts, again after they ended, and the fork it asks for."""

from __future__ import annotations

from engine.client.demo import FORK_AFTER_STEPS, fork_request
from engine.client.events import RunInfo
from tests.conftest import Engine


def _run(
    run_id: str, name: str, state: str, step: int = 0, parent: str | None = None
) -> RunInfo:
    return RunInfo(run_id, name, state, "charlm", step, parent_id=parent)


def test_the_fork_comes_once_the_middle_run_is_a_little_way_in() -> None:
    young = [_run("a", "demo-lr3e-3", "running", FORK_AFTER_STEPS - 1)]
    assert fork_request(young) is None
    grown = [_run("a", "demo-lr3e-3", "running", FORK_AFTER_STEPS)]
    assert fork_request(grown) == {
        "run": "a",
        "overrides": ["lr=1e-3"],
        "name": "demo-lr3e-3-fork-lr1e-3",
    }
    forked = [*grown, _run("b", "demo-lr3e-3-fork-lr1e-3", "running", parent="a")]
    assert fork_request(forked) is None
    # A second demo, after the first ended: its own fork, under a free name.
    again = [
        _run("a", "demo-lr3e-3", "killed", 500),
        _run("b", "demo-lr3e-3-fork-lr1e-3", "killed", parent="a"),
        _run("c", "demo-lr3e-3-2", "running", FORK_AFTER_STEPS + 5),
    ]
    assert fork_request(again) == {
        "run": "c",
        "overrides": ["lr=1e-3"],
        "name": "demo-lr3e-3-fork-lr1e-3-2",
    }


def test_demo_starts_three_runs_once_and_again_after_they_ended(engine: Engine) -> None:
    first = engine.cli("demo")
    assert first.code == 0, first.err
    runs = engine.all_runs()
    assert sorted(r["name"] for r in runs) == ["demo-lr1e-2", "demo-lr1e-3", "demo-lr3e-3"]
    assert {r["config"]["lr"] for r in runs} == {1e-3, 3e-3, 1e-2}
    assert engine.cli("demo").code == 0  # already running: nothing new
    assert len(engine.all_runs()) == 3
    for run in runs:
        assert engine.cli("kill", run["id"], "--grace", "1").code == 0
    assert engine.cli("demo").code == 0
    live = [r for r in engine.all_runs() if r["state"] not in ("killed",)]
    assert sorted(r["name"] for r in live) == ["demo-lr1e-2-2", "demo-lr1e-3-2", "demo-lr3e-3-2"]
