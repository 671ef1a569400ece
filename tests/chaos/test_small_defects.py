"""Small defects of issue 10: each test failed before its fix."""

from __future__ import annotations

from tests.conftest import Engine
from tests.test_cli_errors import refused

# -- options among overrides -----------------------------------------------------------


def test_options_may_come_before_between_and_after_overrides(engine: Engine) -> None:
    started = engine.cli(
        "start", "synthetic", "--device", "cpu", "steps=3", "--name", "mixed", "lr=0.01", "--json"
    )
    assert started.code == 0, started
    run = started.json()
    assert (run["name"], run["device"]) == ("mixed", "cpu")
    assert (run["config"]["steps"], run["config"]["lr"]) == (3, 0.01)
    engine.wait_state("mixed", "finished")

    forked = engine.cli("fork", "mixed", "--name", "branch", "lr=0.02", "--no-wait", "seed=1")
    assert forked.code == 0, forked
    child = engine.run("branch")
    assert (child["config"]["lr"], child["config"]["seed"]) == (0.02, 1)

    # An unknown option is still refused, wherever it stands, and starts nothing.
    refused(engine, "start", "synthetic", "--device", "cpu", "--bogus", "lr=1", code=2,
            mentions="--bogus")
