"""The examples under examples/ run end to end through the real daemon."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TERMINAL, Engine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_function_example_trains_and_forks_exactly(engine: Engine) -> None:
    started = engine.cli("start", f"{EXAMPLES / 'function_train.py'}:train", "steps=300",
                         "--json")
    assert started.code == 0, started.err
    run_id = started.json()["id"]
    engine.wait_step(run_id, 50)
    fork = engine.cli("fork", run_id, "--json")
    assert fork.code == 0, fork.err
    child = fork.json()
    for ref in (run_id, child["id"]):
        assert engine.wait_state(ref, *TERMINAL)["state"] == "finished"
    losses = engine.losses(run_id)
    assert losses[299] < losses[0] * 0.8  # it learns
    accuracy = engine.losses(run_id, "accuracy")
    assert accuracy[299] > 0.6
    child_losses = engine.losses(child["id"])
    assert child_losses == {s: v for s, v in losses.items() if s >= child["fork_step"]}
    logs = engine.cli("logs", run_id)
    assert "step 200 loss" in logs.out
