"""Small defects of issue 10: each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

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


# -- numbers that overflow --------------------------------------------------------------

HUGE_TOTAL = """\
def train(run):
    for step in run.steps(10**20):
        run.log(loss=1.0)
"""


def test_a_step_total_too_large_to_store_leaves_the_run_training(
    engine: Engine, tmp_path: Path
) -> None:
    """The worker reports the total it was given; one beyond 64 bits used to wedge the run."""
    script = tmp_path / "huge.py"
    script.write_text(HUGE_TOTAL)
    started = engine.cli("start", str(script), "--name", "huge", "--no-wait")
    assert started.code == 0, started
    run = engine.wait_step("huge", 3, timeout=30)
    assert run["state"] == "running" and run["total_steps"] is None
    assert engine.cli("kill", "huge", "--grace", "1").code == 0
