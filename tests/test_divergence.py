"""Divergence auto-pause: a NaN, inf or spiking loss pauses its run, on a real daemon."""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from engine.common.format import format_number
from engine.rundir.paths import child_env
from engine.server.divergence import WARMUP_POINTS, DivergenceWatch
from tests.conftest import TERMINAL, Engine, wait_until

SLOW = ["steps=120", "sleep=0.01", "seed=3"]

# A wrapped command: a falling loss each 20 ms, then 'loss nan' at step 30, then on.
NAN_SCRIPT = textwrap.dedent(
    """
    import time
    for step in range(100000):
        loss = "nan" if step == 30 else f"{1 / (step + 1):.5f}"
        print(f"step {step} loss {loss}", flush=True)
        time.sleep(0.02)
    """
)

# A wrapped command that prints no plain ``loss``: its training loss is ``train/loss``.
# Its validation loss turns NaN at step 10 (not watched), its training loss at step 30.
QUALIFIED_SCRIPT = textwrap.dedent(
    """
    import time
    for step in range(100000):
        train = "nan" if step == 30 else f"{1 / (step + 1):.5f}"
        val = "nan" if step == 10 else "2.5"
        print(f"step {step}: train loss {train}, val loss {val}", flush=True)
        time.sleep(0.02)
    """
)

# An attached script (traintop.init): its loss turns NaN at step 20.
ATTACHED_SCRIPT = textwrap.dedent(
    """
    import math, time
    import traintop

    run = traintop.init(config={"steps": 100000}, name="attached"WATCH)
    print("RUN", run.id, flush=True)
    for step in run.steps(run.config.steps):
        run.log(loss=math.nan if step == 20 else 1 / (step + 1))
        time.sleep(0.02)
    """
)


def start(engine: Engine, *args: str) -> str:
    result = engine.cli("start", "synthetic", *args, "--json", "--no-wait")
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


def same(a: dict[int, float], b: dict[int, float]) -> bool:
    """Losses equal bit for bit, NaN included (repr: nan == nan)."""
    return repr(sorted(a.items())) == repr(sorted(b.items()))


def test_a_nan_loss_pauses_the_run_which_releases_resumes_and_trains_on(
    engine: Engine,
) -> None:
    reference = start(engine, *SLOW, "nan_at=40", "--no-divergence-pause")
    diverging = start(engine, *SLOW, "nan_at=40")
    run = engine.wait_state(diverging, "paused", *TERMINAL)
    assert run["state"] == "paused" and 40 < run["step"] < 120
    assert run["condition"] == "loss nan at step 40"
    assert run["events"][-1]["reason"] == "paused: loss nan at step 40"
    listed = engine.cli("ls")
    assert "paused (loss nan at step 40)" in listed.out
    shown = engine.cli("show", diverging).out
    assert "paused (loss nan at step 40)" in shown and "paused: loss nan at step 40" in shown
    assert engine.cli("engine", "stop").code == 0  # the reason is stored, not held in memory
    assert engine.run(diverging)["condition"] == "loss nan at step 40"

    # Its checkpoint is there to be had: released, then resumed from it.
    assert engine.cli("pause", diverging, "--release").code == 0
    assert engine.run(diverging)["released"]
    assert engine.cli("resume", diverging).code == 0
    for run_id in (reference, diverging):
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    losses = engine.losses(diverging)
    assert len(losses) == 120 and math.isnan(losses[40])
    assert same(losses, engine.losses(reference))  # the opted-out run went straight on
    assert engine.run(diverging)["condition"] is None


def test_a_run_paused_for_divergence_gives_its_slot_to_a_run_queued_behind_it(
    engine: Engine,
) -> None:
    # One slot. Alone, the diverged run keeps it (and its memory: a resume goes on in
    # place); once a run is queued behind it, it is released and the slot is the other's.
    assert engine.cli("queue", "one", "--parallel", "1").code == 0
    diverging = start(engine, *SLOW, "nan_at=40", "--queue", "one")
    run = engine.wait_state(diverging, "paused", *TERMINAL)
    assert run["state"] == "paused" and run["condition"] == "loss nan at step 40"
    time.sleep(1.5)  # a scheduler pass or more: nobody waits, nothing is released
    assert not engine.run(diverging)["released"]

    waiting = start(engine, *SLOW, "--queue", "one")
    run = wait_until(lambda: (r := engine.run(diverging))["released"] and r, "released", 60)
    reasons = [e["reason"] for e in run["events"]]
    assert ("loss nan at step 40: releasing its memory, as 1 run waits for a slot in queue one"
            in reasons)
    assert reasons[-1] == "paused: loss nan at step 40; memory released"
    assert engine.wait_state(waiting, *TERMINAL)["state"] == "finished"  # it had the slot
    # Resumed, it goes on from its checkpoint as a released run does.
    assert engine.cli("resume", diverging).code == 0
    assert engine.wait_state(diverging, *TERMINAL)["state"] == "finished"
    losses = engine.losses(diverging)
    assert len(losses) == 120 and math.isnan(losses[40])


def test_a_resume_that_comes_as_the_run_gives_its_slot_away_still_resumes_it(
    engine: Engine,
) -> None:
    # 'resume --sweep' (or two names) as the helper's user typed it: the first run resumed
    # queues behind the diverged one, which is released for it; the resume of that one then
    # comes while it checkpoints and exits. It must not be lost (left paused*, exit 0).
    assert engine.cli("queue", "one", "--parallel", "1").code == 0
    first = start(engine, *SLOW, "--queue", "one")
    engine.wait_step(first, 5)
    assert engine.cli("pause", first, "--release", "--timeout", "30").code == 0
    diverging = start(engine, *SLOW, "nan_at=20", "--queue", "one")
    assert engine.wait_state(diverging, "paused", *TERMINAL)["state"] == "paused"
    resumed = engine.cli("resume", first, diverging)
    assert resumed.code == 0, resumed
    # Released, it queues again behind the first; it finishes once the slot is free.
    for run_id in (first, diverging):
        assert engine.wait_state(run_id, *TERMINAL, timeout=90)["state"] == "finished"
    assert len(engine.losses(diverging)) == 120


def test_a_spike_above_the_factor_pauses_and_a_resume_does_not_trip_on_it_again(
    engine: Engine,
) -> None:
    run_id = start(engine, *SLOW, "spike_at=50")
    run = engine.wait_state(run_id, "paused", *TERMINAL)
    assert run["state"] == "paused"
    condition = run["condition"]
    assert condition.startswith("loss ") and " at step 50 is " in condition
    assert "x its EMA" in condition
    assert run["events"][-1]["reason"] == f"paused: {condition}"
    assert engine.cli("resume", run_id).code == 0
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and run["step"] == 120
    reasons = [e["reason"] for e in run["events"]]
    assert sum(r.startswith("paused") for r in reasons) == 1


def test_a_nan_in_the_last_steps_is_said_on_the_finished_run(engine: Engine) -> None:
    """The pause cannot land after the last step: the run finishes, and says why its
    last values are not to be trusted rather than read as a clean finish."""
    run_id = start(engine, "steps=60", "nan_at=58")
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and run["condition"] == "loss nan at step 58", run
    line = next(x for x in engine.cli("ls").out.splitlines() if x.startswith(run_id))
    assert "finished (loss nan at step 58)" in line


def test_a_factor_the_spike_stays_under_lets_the_run_finish(engine: Engine) -> None:
    run_id = start(engine, "steps=80", "spike_at=50", "--divergence-factor", "5000")
    assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"


def test_a_wrapped_command_printing_loss_nan_is_stopped(engine: Engine, tmp_path: Path) -> None:
    script = tmp_path / "nan_train.py"
    script.write_text(NAN_SCRIPT)
    result = engine.cli("run", "--json", "--no-wait", "--", sys.executable, str(script))
    assert result.code == 0, result.err
    run_id = result.json()["id"]
    run = engine.wait_state(run_id, "paused", *TERMINAL)
    assert run["state"] == "paused" and run["condition"] == "loss nan at step 30"
    assert run["events"][-1]["reason"] == "paused: loss nan at step 30"
    deadline = time.monotonic() + 10  # SIGSTOP holds once it is next scheduled
    while psutil.Process(run["pid"]).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, "the command was not stopped"
        time.sleep(0.02)
    assert engine.cli("resume", run_id).code == 0
    engine.wait_step(run_id, 50)
    assert engine.run(run_id)["state"] == "running"  # nothing new to trip on


def test_a_script_printing_train_and_val_loss_is_watched_on_its_training_loss(
    engine: Engine, tmp_path: Path
) -> None:
    script = tmp_path / "qualified.py"
    script.write_text(QUALIFIED_SCRIPT)
    result = engine.cli("run", "--json", "--no-wait", "--", sys.executable, str(script))
    assert result.code == 0, result.err
    run_id = result.json()["id"]
    run = engine.wait_state(run_id, "paused", *TERMINAL)
    assert run["condition"] == "train/loss nan at step 30"  # the val NaN at 10 did not trip
    # SIGSTOP holds once the command is next scheduled, and lines it printed before may
    # still be on their way: compare the two listings once the run has stopped moving.
    wait_until(lambda: psutil.Process(run["pid"]).status() == psutil.STATUS_STOPPED,
               "the command is stopped")
    seen: list[int] = []

    def still() -> bool:
        seen.append(engine.run(run_id)["step"])
        time.sleep(0.3)
        return len(seen) > 1 and seen[-1] == seen[-2]

    wait_until(still, "the run's step stays put")
    (row,) = [r for r in engine.cli("ls", "--json").json() if r["id"] == run_id]
    assert "loss" not in row["last"] and row["last"]["val/loss"] == 2.5
    # ls's LOSS column is the training loss, not empty and not the validation loss
    (line,) = [ln for ln in engine.cli("ls").out.splitlines() if ln.startswith(run_id)]
    assert format_number(row["last"]["train/loss"]) in line.split() and "2.5" not in line


@contextlib.contextmanager
def attached_script(tmp_path: Path, watch: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """ATTACHED_SCRIPT run from a shell (``watch``: more arguments of its init), and its run id."""
    script = tmp_path / "train.py"
    script.write_text(ATTACHED_SCRIPT.replace("WATCH", watch))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("RUN "), line
        yield proc, line.split()[1]
    finally:
        proc.kill()
        proc.wait()


def test_an_attached_script_whose_loss_turns_nan_pauses_at_its_next_step(
    engine: Engine, tmp_path: Path
) -> None:
    with attached_script(tmp_path, "") as (proc, run_id):
        run = engine.wait_state(run_id, "paused", *TERMINAL)
        assert run["state"] == "paused" and run["condition"] == "loss nan at step 20"
        assert run["events"][-1]["reason"] == "paused: loss nan at step 20"
        assert proc.poll() is None  # paused in place, its memory kept


def test_an_attached_script_can_opt_out_of_the_watch(engine: Engine, tmp_path: Path) -> None:
    with attached_script(tmp_path, ", divergence=False") as (_, run_id):
        run = engine.wait_step(run_id, 40)
        assert run["state"] == "running" and run["divergence_factor"] is None


def test_a_fork_inherits_the_setting_unless_it_overrides_it(engine: Engine) -> None:
    parent = start(engine, "steps=100000", "sleep=0.01", "--no-divergence-pause")
    engine.wait_step(parent, 5)
    assert engine.run(parent)["divergence_factor"] is None
    inherited = engine.cli("fork", parent, "--json", "--no-wait").json()
    assert inherited["divergence_factor"] is None
    changed = engine.cli("fork", parent, "--divergence-factor", "4", "--json", "--no-wait")
    assert changed.code == 0, changed.err
    assert changed.json()["divergence_factor"] == 4.0
    assert "no pause for a NaN or spiking loss" in engine.cli("show", parent).out
    assert "above 4x its EMA" in engine.cli("show", changed.json()["id"]).out
    default = start(engine, "steps=10")
    assert engine.run(default)["divergence_factor"] == 10.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--divergence-factor", "1"], "must be a number above 1, not 1.0"),
        (["--divergence-factor", "nan"], "must be a number above 1, not nan"),
        (["--divergence-factor", "-3"], "must be a number above 1"),
        (["--divergence-factor", "ten"], "invalid float value: 'ten'"),
        (["--divergence-factor", "5", "--no-divergence-pause"], "contradict each other"),
    ],
)
def test_a_bad_divergence_setting_is_one_line_and_creates_nothing(
    engine: Engine, argv: list[str], message: str
) -> None:
    result = engine.cli("start", "synthetic", *argv)
    assert result.code != 0
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err
    if engine.daemon_pid() is not None:
        assert engine.all_runs() == []


def test_the_watch_judges_only_clearly_positive_losses_after_warm_up() -> None:
    def points(values: list[float]) -> list[tuple[int, str, float, float]]:
        return [(i, "loss", v, 1.0) for i, v in enumerate(values)]

    early = DivergenceWatch(10.0)  # a spike in the warm-up is not judged; NaN is
    assert early.check(points([1.0, 50.0])) is None
    assert early.check([(2, "loss", math.inf, 1.0)]) == "loss inf at step 2"
    assert early.check([(3, "loss", math.nan, 1.0)]) is None  # tripped once, then quiet
    negative = DivergenceWatch(10.0)  # a log-likelihood: ratios mean nothing
    assert negative.check(points([-1.0] * WARMUP_POINTS + [5.0, 500.0])) is None
    tiny = DivergenceWatch(10.0)  # next to zero any noise is a huge ratio
    assert tiny.check(points([1e-9] * WARMUP_POINTS + [1e-5])) is None
    assert DivergenceWatch(None).check(points([math.nan])) is None  # opted out
    healthy = DivergenceWatch(10.0)
    reason = healthy.check(points([1.0] * WARMUP_POINTS + [2.0, 9.0, 20.0]))
    assert reason is not None and reason.startswith("loss 20 at step 22 is ")
    healthy.reset()
    assert healthy.check(points([1.0])) is None


def test_the_watch_follows_the_training_loss_and_moves_to_plain_loss_when_it_appears() -> None:
    watch = DivergenceWatch(10.0)
    assert watch.check([(0, "val/loss", math.nan, 1.0), (0, "train/loss", 1.0, 1.0)]) is None
    assert watch.key == "train/loss"
    assert watch.check([(1, "loss", 2.0, 1.0)]) is None  # plain loss outranks it: watch that
    assert watch.key == "loss"
    assert watch.check([(2, "train/loss", math.nan, 1.0)]) is None
    assert watch.check([(3, "loss", math.inf, 1.0)]) == "loss inf at step 3"


def test_a_sweep_passes_the_setting_to_every_run(engine: Engine) -> None:
    result = engine.cli("sweep", "synthetic", "steps=5", "lr=0.01,0.02", "--divergence-factor", "3")
    assert result.code == 0, result.err
    runs = engine.all_runs()
    assert len(runs) == 2 and {r["divergence_factor"] for r in runs} == {3.0}
