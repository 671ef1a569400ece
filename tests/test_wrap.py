"""Wrap mode end to end: ``traintop run -- CMD`` through a real daemon and real processes."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from engine.common.runs import exit_text
from engine.rundir.paths import read_json
from tests.conftest import TERMINAL, Engine

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wrap_train.py"

# Records what it was started with, then prints a loss line every 20 ms until
# told otherwise. argv: REPORT_FILE MODE
PROBE = textwrap.dedent(
    """
    import json, os, signal, sys, time

    report, mode = sys.argv[1], sys.argv[2]
    with open(report, "w") as f:
        json.dump({
            "cwd": os.getcwd(),
            "probe": os.environ.get("WRAP_PROBE"),
            "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
            "stdin": sys.stdin.read(),
            "sigint_default": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        }, f)
    if mode == "exit3":
        print("loss 1.5")
        sys.exit(3)
    if mode == "stubborn":
        def on_term(signum, frame):
            open(report + ".term", "w").write("term")
            sys.exit(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, on_term)
    step = 0
    try:
        while True:
            print(f"step {step} loss {1 / (step + 1):.5f}")
            step += 1
            time.sleep(0.02)
    except KeyboardInterrupt:
        open(report + ".int", "w").write(str(step))
        print("interrupted: cleaning up")
        sys.exit(1)
    """
)


def wrap(engine: Engine, *argv: str) -> str:
    # WRAP_PROBE is not one a run gets unasked (engine.common.run_env): the probe names it.
    result = engine.cli("run", "--json", "--no-wait", "--env", "WRAP_PROBE", "--", *argv)
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WRAP_PROBE", "from the user's shell")
    return script


def test_the_example_runs_wrapped_with_its_metrics_and_output(engine: Engine) -> None:
    run_id = wrap(engine, sys.executable, str(EXAMPLE), "--steps", "100")
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and run["exit_code"] == 0, run
    assert run["workload"] == "exec" and run["name"] == "wrap_train-1"
    losses = engine.losses(run_id)
    assert sorted(losses) == list(range(0, 100, 10))
    assert losses[90] < losses[0]
    assert engine.losses(run_id, "lr") == {s: 0.01 for s in range(0, 100, 10)}
    assert "step 90 loss" in engine.cli("logs", run_id).out
    assert run["step"] == 90  # the last step the script printed


def test_command_keeps_cwd_environment_and_default_sigint_and_gets_no_stdin(
    engine: Engine, probe: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    run_id = wrap(engine, sys.executable, str(probe), str(report), "exit3")
    run = engine.wait_state(run_id, *TERMINAL)
    assert json.loads(report.read_text()) == {
        "cwd": str(tmp_path),
        "probe": "from the user's shell",
        "unbuffered": "1",
        "stdin": "",
        "sigint_default": True,
    }
    assert run["state"] == "failed" and run["exit_code"] == 3
    assert run["exit_reason"] == "exited with code 3"
    assert engine.losses(run_id) == {0: 1.5}


def test_a_failing_command_is_reported_like_a_failing_run(engine: Engine, probe: Path) -> None:
    result = engine.cli("run", "--", sys.executable, str(probe), "r.json", "exit3")
    assert result.code == 1
    assert "failed: exited with code 3 (see" in result.err  # the code said once
    (run,) = engine.all_runs()
    shown = engine.cli("show", run["id"]).out
    assert "exit      exited with code 3\n" in shown


def test_how_a_run_ended_is_said_one_way_with_the_code_or_signal_once() -> None:
    assert exit_text("finished", 0) == "finished"
    assert exit_text("exited with code 3", 3) == "exited with code 3"
    assert exit_text("killed by user with SIGINT", 1) == "killed by user with SIGINT; exit code 1"
    assert exit_text("killed by user with SIGINT", -2) == "killed by user with SIGINT"
    assert exit_text("killed by user with SIGTERM", -9) == (
        "killed by user with SIGTERM; ended by SIGKILL")
    assert exit_text("killed by signal SIGKILL", -9) == "killed by signal SIGKILL"
    assert exit_text("killed by user", None) == "killed by user"
    assert exit_text("CUDA out of memory", 1) == "CUDA out of memory; exit code 1"
    assert exit_text(None, None) is None


def test_pause_stops_the_process_and_kill_sends_sigint_first(
    engine: Engine, probe: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    run_id = wrap(engine, sys.executable, str(probe), str(report), "loop")
    engine.wait_step(run_id, 10)
    assert engine.cli("pause", run_id).code == 0
    run = engine.run(run_id)
    assert run["state"] == "paused"
    # SIGSTOP takes hold when the process is next scheduled: on a loaded machine,
    # a moment after the reply.
    deadline = time.monotonic() + 10
    while psutil.Process(run["pid"]).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, "the command was not stopped"
        time.sleep(0.02)
    stdout = engine.paths.run_dir(run_id).stdout
    time.sleep(0.3)  # what was already in the pipe is written out
    held = stdout.stat().st_size
    time.sleep(0.6)
    assert stdout.stat().st_size == held  # no new output while stopped
    assert engine.run(run_id)["state"] == "paused"

    assert engine.cli("resume", run_id).code == 0
    assert engine.run(run_id)["state"] == "running"
    step = engine.run(run_id)["step"]
    engine.wait_step(run_id, step + 10)
    assert stdout.stat().st_size > held

    assert engine.cli("pause", run_id).code == 0  # a kill also ends a stopped command
    result = engine.cli("kill", run_id, "--grace", "20")
    assert result.code == 0, result.err
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "killed" and run["exit_reason"] == "killed by user with SIGINT"
    assert Path(f"{report}.int").exists()  # it caught KeyboardInterrupt and cleaned up
    assert "interrupted: cleaning up" in engine.cli("logs", run_id).out
    assert read_json(Path(run["dir"]) / "exit.json")["returncode"] == 1
    reasons = [e["reason"] for e in run["events"]]
    assert "paused by user (SIGSTOP)" in reasons and "resumed by user (SIGCONT)" in reasons


def test_kill_goes_on_to_sigterm_when_sigint_is_ignored(
    engine: Engine, probe: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    run_id = wrap(engine, sys.executable, str(probe), str(report), "stubborn")
    engine.wait_step(run_id, 5)
    started = time.monotonic()
    assert engine.cli("kill", run_id, "--grace", "1").code == 0
    run = engine.wait_state(run_id, *TERMINAL)
    assert time.monotonic() - started >= 1.0  # SIGINT first, SIGTERM only after the grace
    assert run["state"] == "killed"
    assert Path(f"{report}.term").exists()
    assert read_json(Path(run["dir"]) / "exit.json")["returncode"] == 0


def test_fork_and_release_are_refused_with_the_reason_and_change_nothing(
    engine: Engine, probe: Path, tmp_path: Path
) -> None:
    run_id = wrap(engine, sys.executable, str(probe), str(tmp_path / "r.json"), "loop")
    engine.wait_step(run_id, 3)
    before = engine.run(run_id)
    fork = engine.cli("fork", run_id)
    assert fork.code == 1
    assert fork.err.strip() == (
        f"traintop: run {run_id} wraps a command: traintop cannot checkpoint it, so it "
        "cannot be forked (use a train(run) function or traintop.init)"
    )
    release = engine.cli("pause", run_id, "--release")
    assert release.code == 1 and len(release.err.strip().splitlines()) == 1
    assert "cannot be paused with its memory released" in release.err
    after = engine.run(run_id)
    assert after["state"] == "running" and after["events"] == before["events"]
    assert [r["id"] for r in engine.all_runs()] == [run_id]
    assert psutil.Process(after["pid"]).status() != psutil.STATUS_STOPPED


def test_bad_commands_are_one_line_and_store_nothing(engine: Engine) -> None:
    missing = engine.cli("run", "--", "no-such-command-here", "x")
    assert missing.code == 1
    assert missing.err == "traintop: command not found: no-such-command-here\n"
    pattern = engine.cli("run", "--loss-pattern", "loss=(", "--", sys.executable, "-c", "0")
    assert pattern.code == 1 and "not a valid regex" in pattern.err
    empty = engine.cli("run")
    assert empty.code == 2 and "no command given" in empty.err
    assert engine.all_runs() == []


def test_a_wrapped_run_outlives_a_daemon_restart_and_loses_no_line(
    engine: Engine, probe: Path, tmp_path: Path
) -> None:
    run_id = wrap(engine, sys.executable, str(probe), str(tmp_path / "r.json"), "loop")
    engine.wait_step(run_id, 5)
    assert engine.cli("engine", "stop").code == 0
    time.sleep(1.0)  # it goes on printing; the shim goes on writing the spool
    assert engine.cli("engine", "start").code == 0
    step = engine.wait_step(run_id, 25)["step"]  # what it printed meanwhile is read
    engine.wait_step(run_id, step + 5)
    assert engine.cli("pause", run_id).code == 0
    assert psutil.Process(engine.run(run_id)["pid"]).status() == psutil.STATUS_STOPPED
    shown = engine.cli("show", run_id).out
    assert f"command   {sys.executable} {probe}" in shown
    assert engine.cli("kill", run_id, "--grace", "20").code == 0
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "killed" and Path(f"{tmp_path / 'r.json'}.int").exists()
    losses = engine.losses(run_id)
    assert sorted(losses) == list(range(len(losses)))  # every printed step, once
    assert len(losses) >= step + 5


def test_run_rows_say_their_kind_and_what_it_cannot_do(
    engine: Engine, probe: Path, tmp_path: Path
) -> None:
    with engine.client() as events:
        events.subscribe(["runs"])
        wrapped = wrap(engine, sys.executable, str(probe), str(tmp_path / "r.json"), "loop")
        engine.wait_step(wrapped, 3)
        train = engine.cli("start", "synthetic", "steps=5", "--json").json()["id"]
        engine.wait_state(train, *TERMINAL)
        announced: dict[str, dict[str, object]] = {}
        while len(announced) < 2:  # each run's first 'runs' event
            event = events.next_event(timeout=30)
            assert event is not None, "no 'runs' event for a run"
            announced.setdefault(event["data"]["id"], event["data"])
    fork_refusal = engine.cli("fork", wrapped).err.removeprefix("traintop: ").strip()
    listed = {run["id"]: run for run in engine.all_runs()}
    for row in (engine.run(wrapped), listed[wrapped], announced[wrapped]):
        assert row["kind"] == "wrapped"
        assert row["refusals"]["fork"] == fork_refusal
        assert "cannot be paused with its memory released" in row["refusals"]["release"]
    for row in (engine.run(train), listed[train], announced[train]):
        assert row["kind"] == "train" and row["refusals"] == {}


NAMED = textwrap.dedent(
    """
    import sys
    print("batch_size = 64")
    print("n_layer = 4")
    print("UserWarning: dropout=0.2", file=sys.stderr)
    print("loss 9 at 3", file=sys.stderr)
    for it in (0, 10, 20):
        print(f"iter {it}: loss {2 - it / 100}, mfu 7.5%")
    print("step 20: train loss 1.5, val loss 1.75")
    """
)


def test_a_wrapped_run_records_named_series_at_the_scripts_steps(
    engine: Engine, tmp_path: Path
) -> None:
    script = tmp_path / "named.py"
    script.write_text(NAMED)
    result = engine.cli(
        "run", "--json", "--metric", r"mfu=mfu (\S+)%", "--metric",
        r"stderr_loss=loss (\S+) at", "--", sys.executable, str(script),
    )  # fmt: skip
    assert result.code == 0, result.err
    run_id = result.json()["id"]
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished", run
    assert engine.losses(run_id) == {0: 2.0, 10: 1.9, 20: 1.8}
    assert engine.losses(run_id, "train/loss") == {20: 1.5}
    assert engine.losses(run_id, "val/loss") == {20: 1.75}
    assert engine.losses(run_id, "mfu") == {0: 7.5, 10: 7.5, 20: 7.5}
    # Its step depends on when the stderr line came between the stdout ones.
    assert list(engine.losses(run_id, "stderr_loss").values()) == [9.0]
    with engine.client() as client:
        keys = {point[1] for point in client.all_metrics(run_id)}
    # No config echo, no warning, no loss from stderr but the pattern's.
    assert keys == {"loss", "train/loss", "val/loss", "mfu", "stderr_loss"}


# Saves where it is at step 40 (as a training script saves its checkpoint), and the first
# time it runs fails at step 59; run again, it goes on from its save: steps 41 to 79.
RESUMING = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    saved = Path("saved.json")
    again = saved.exists()
    start = json.loads(saved.read_text())["step"] + 1 if again else 0
    if again:  # a line with no step before its first step: it must not drop the old points
        print("resumed, eval loss 9.0", flush=True)
    for step in range(start, 80):
        print(f"step {step} loss {(2.0 if again else 1.0) + 1.0 / (step + 1):.6f}", flush=True)
        if step == 40:
            saved.write_text(json.dumps({"step": step}))
        if step == 59 and not again:
            sys.exit(3)
    """
)


@pytest.fixture
def resuming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """RESUMING, in a folder of its own where it is run (its save goes there)."""
    script = tmp_path / "resuming.py"
    script.write_text(RESUMING)
    monkeypatch.chdir(tmp_path)
    return script


def test_a_retried_command_goes_on_from_its_own_save_and_its_steps_show_once(
    engine: Engine, resuming: Path,
) -> None:
    result = engine.cli("run", "--json", "--retries", "2", "--", sys.executable, str(resuming))
    assert result.code == 0, result.err
    run_id = result.json()["id"]
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and (run["retried"], run["retries"]) == (1, 2)
    events = [e["reason"] for e in engine.call("get_run", run=run_id)["events"]]
    assert ("retry 1 of 2 after exited with code 3: its command runs again, to go on from "
            "what it saved itself") in events
    assert ("19 points from step 41 on dropped: it goes on from there, and logs those steps "
            "again") in events
    # Each step once, in order: the first attempt's up to its save, the second's after it.
    points = engine.points(run_id)
    assert [s for s, _ in points] == list(range(80))
    assert all(v == pytest.approx(1.0 + 1.0 / (s + 1)) for s, v in points[:41])
    assert all(v == pytest.approx(2.0 + 1.0 / (s + 1)) for s, v in points[41:])
    # A store made again from the run's files drops the same points.
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "rebuild").code == 0
    assert engine.points(run_id) == points


# Names no step: its lines are counted. The first attempt logs 30 losses and fails.
STEPLESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    again = Path("tried").exists()
    Path("tried").touch()
    for n in range(30):
        print(f"loss {(2.0 if again else 1.0) + n / 100:.4f}", flush=True)
    sys.exit(0 if again else 3)
    """
)


def test_a_retried_command_that_names_no_step_goes_on_after_its_last_points(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = tmp_path / "stepless.py"
    script.write_text(STEPLESS)
    monkeypatch.chdir(tmp_path)
    run_id = engine.cli("run", "--json", "--retries", "1", "--", sys.executable,
                        str(script)).json()["id"]
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and run["retried"] == 1
    # Nothing dropped: the second attempt's lines count on after the first's.
    points = engine.points(run_id)
    assert [s for s, _ in points] == list(range(60))
    assert [round(v, 4) for _, v in points] == [
        round(a + n / 100, 4) for a in (1.0, 2.0) for n in range(30)]
    events = [e["reason"] for e in engine.call("get_run", run=run_id)["events"]]
    assert not any("dropped" in e for e in events), events
    assert engine.cli("engine", "stop").code == 0  # and so does a store made again
    assert engine.cli("engine", "rebuild").code == 0
    assert engine.points(run_id) == points


def test_resume_of_a_failed_command_runs_it_again(engine: Engine, resuming: Path) -> None:
    result = engine.cli("run", "--json", "--", sys.executable, str(resuming))
    run_id = result.json()["id"]
    assert engine.wait_state(run_id, *TERMINAL)["state"] == "failed"  # no retries
    resumed = engine.cli("resume", run_id)
    assert resumed.code == 0, resumed.err
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and run["retried"] == 0
    assert "to run its command again" in [
        e["reason"] for e in engine.call("get_run", run=run_id)["events"]]
    assert [s for s, _ in engine.points(run_id)] == list(range(80))

