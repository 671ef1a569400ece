"""Attach mode end to end: scripts that call ``traintop.init``, a real daemon, real signals."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
from textual.widgets import RichLog

from engine.client.client import EngineError
from engine.common.runs import ATTACHED_OUTPUT
from engine.rundir.paths import child_env
from tests.conftest import TERMINAL, Engine
from tests.test_tui import until
from tui.app import TraintopApp

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    import traintop

    cfg = {"steps": 50, "lr": 0.05, "sleep": 0.0, "fail_at": -1}
    for arg in sys.argv[1:]:
        key, value = arg.split("=")
        cfg[key] = type(cfg[key])(value)
    run = traintop.init(config=cfg, name="attached")
    print("RUN", run.id, flush=True)
    torch.manual_seed(0)
    target = torch.randn(8, 1)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=run.config.lr)
    run.track(model=model, optimizer=opt)
    for step in run.steps(run.config.steps):
        if step == run.config.fail_at:
            raise RuntimeError(f"boom at step {step}")
        x = torch.randn(32, 8)
        loss = torch.nn.functional.mse_loss(model(x), x @ target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log(loss=loss)
        time.sleep(run.config.sleep)
    """
)


def launch(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    """Start the script as a user would (no shim); returns it and its run id."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=child_env(**env),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("RUN "), line
    return proc, line.split()[1]


def test_attached_script_shows_its_metrics_and_finishes(engine: Engine, tmp_path: Path) -> None:
    proc, run_id = launch(tmp_path, "steps=40")
    assert proc.wait(timeout=60) == 0
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and run["exit_code"] == 0
    assert run["name"] == "attached" and run["workload"].startswith("attach:")
    assert run["config"] == {"steps": 40, "lr": 0.05, "sleep": 0.0, "fail_at": -1}
    assert sorted(engine.losses(run_id)) == list(range(40))
    assert run["step"] == 40
    # Its output went to its own terminal: logs says so, not "it printed nothing".
    logs = engine.cli("logs", run_id)
    assert logs.code == 0 and logs.out == ""
    assert logs.err == ("traintop: an attached script prints to the terminal it runs in: "
                        "traintop keeps no copy of its output\n")


def test_the_tuis_log_pane_says_where_an_attached_scripts_output_is(
        engine: Engine, tmp_path: Path) -> None:
    proc, run_id = launch(tmp_path, "steps=5")
    assert proc.wait(timeout=60) == 0
    engine.wait_state(run_id, *TERMINAL)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: run_id in app.state.runs)
            await pilot.press("l")
            logs = app.query_one("#logs", RichLog)
            await until(pilot, lambda: any(ATTACHED_OUTPUT in str(line) for line in logs.lines))

    asyncio.run(scenario())


def test_attached_script_that_raises_fails_with_its_error(engine: Engine, tmp_path: Path) -> None:
    proc, run_id = launch(tmp_path, "fail_at=7")
    assert proc.wait(timeout=60) == 1
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "failed" and run["exit_code"] == 1
    assert run["exit_reason"] == "RuntimeError: boom at step 7"
    assert "Traceback" in run["stderr_tail"]
    assert sorted(engine.losses(run_id)) == list(range(7))


def test_attached_script_pauses_resumes_and_is_killed_alone(
    engine: Engine, tmp_path: Path
) -> None:
    proc, run_id = launch(tmp_path, "steps=100000", "sleep=0.01")
    engine.wait_step(run_id, 10)
    assert engine.cli("pause", run_id).code == 0
    held = engine.wait_state(run_id, "paused")["step"]
    time.sleep(0.6)
    assert engine.run(run_id)["step"] == held
    assert engine.cli("resume", run_id).code == 0
    engine.wait_step(run_id, held + 10)
    assert engine.cli("kill", run_id, "--grace", "5").code == 0
    run = engine.wait_state(run_id, *TERMINAL, timeout=20)
    assert run["state"] == "killed" and run["exit_reason"] == "killed by user with SIGTERM"
    assert proc.wait(timeout=10) == 143  # SIGTERM, not the SIGKILL after the grace
    # Only the process was signalled: it shares this test's process group.
    assert psutil.Process().is_running()


def test_attached_script_killed_hard_is_marked_lost(engine: Engine, tmp_path: Path) -> None:
    proc, run_id = launch(tmp_path, "steps=100000", "sleep=0.01")
    engine.wait_step(run_id, 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    run = engine.wait_state(run_id, *TERMINAL, timeout=20)
    assert run["state"] == "failed" and run["exit_reason"].startswith("lost")


def test_fork_of_an_attached_script_reproduces_its_losses(
    engine: Engine, tmp_path: Path
) -> None:
    proc, parent = launch(tmp_path, "steps=150", "sleep=0.01")
    engine.wait_step(parent, 25)
    forked = engine.cli("fork", parent, "--json")
    assert forked.code == 0, forked.err
    child = forked.json()
    assert child["workload"] == engine.run(parent)["workload"]
    assert proc.wait(timeout=60) == 0
    for run_id in (parent, child["id"]):
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    child = engine.run(child["id"])
    parent_losses = engine.losses(parent)
    child_losses = engine.losses(child["id"])
    assert child["fork_step"] >= 25 and min(child_losses) == child["fork_step"]
    assert child_losses == {s: v for s, v in parent_losses.items() if s >= child["fork_step"]}
    assert child["config"] == engine.run(parent)["config"]


def test_without_a_daemon_the_script_trains_and_is_imported_later(
    engine: Engine, tmp_path: Path
) -> None:
    proc, run_id = launch(tmp_path, "steps=30", TRAINTOP_NO_AUTOSTART="1")
    assert proc.wait(timeout=60) == 0
    assert not engine.paths.socket.exists()  # no daemon was started
    marker = json.loads(engine.paths.run_dir(run_id).offline.read_text())
    assert marker["name"] == "attached" and marker["pid"] == proc.pid
    assert engine.call("ping")["pong"]  # starts a daemon, which imports the run
    run = engine.wait_state(run_id, *TERMINAL)
    assert run["state"] == "finished" and run["exit_code"] == 0
    assert sorted(engine.losses(run_id)) == list(range(30))


def test_attach_example_trains_end_to_end(engine: Engine, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "attach_train.py"), "--steps", "300", "--name", "ex"],
        capture_output=True, text=True, cwd=tmp_path, env=child_env(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    run = engine.wait_state("ex", *TERMINAL)
    assert run["state"] == "finished"
    losses = engine.losses("ex")
    assert sorted(losses) == list(range(300))
    # Means of 20 batches: one batch's loss is noisy (a single step-299 loss once came
    # within 0.8x of step 0's, when the example's initial weights were not seeded).
    first, last = (sum(losses[s] for s in range(a, a + 20)) / 20 for a in (0, 280))
    assert last < first * 0.8, (first, last)


def test_import_traintop_is_cheap() -> None:
    code = "import sys, traintop\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=child_env())
    loaded = set(out.stdout.split())
    assert "torch" not in loaded and "textual" not in loaded
    assert "engine.client.client" not in loaded  # the daemon's client only once init runs


def test_release_pause_ends_the_script_and_resume_continues_it_exactly(
    engine: Engine, tmp_path: Path
) -> None:
    reference, ref_id = launch(tmp_path, "steps=120", "sleep=0.01")
    proc, run_id = launch(tmp_path, "steps=120", "sleep=0.01")
    engine.wait_step(run_id, 20)
    assert engine.cli("pause", run_id, "--release").code == 0
    assert proc.wait(timeout=20) == 0  # the script itself stops; its memory is free
    run = engine.wait(run_id, lambda r: r["released"])
    assert run["state"] == "paused" and run["checkpoint"]
    assert engine.cli("resume", run_id).code == 0  # re-runs the script, in the background
    for ref in (ref_id, run_id):
        assert engine.wait_state(ref, *TERMINAL)["state"] == "finished"
    assert reference.wait(timeout=10) == 0
    assert engine.losses(run_id) == engine.losses(ref_id)
    assert engine.run(run_id)["generation"] == 2


def test_attach_request_is_validated_and_follows_the_process(
    engine: Engine, tmp_path: Path
) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    request = {"argv": ["sleep", "60"], "cwd": str(tmp_path), "config": {}}
    with engine.client() as client:
        for bad, code in (({"pid": 2**22 + 7}, "bad_request"), ({"pid": "1"}, "bad_request"),
                          ({"pid": sleeper.pid, "argv": []}, "bad_request"),
                          ({"pid": sleeper.pid, "name": "a b"}, "bad_request")):
            try:
                client.call("attach", **{**request, **bad})
            except EngineError as exc:
                assert exc.code == code
            else:
                raise AssertionError(f"accepted {bad}")
        assert client.all_runs() == []  # a refused attach stores nothing
        run = client.call("attach", **request, pid=sleeper.pid, device="cuda")
    assert run["state"] == "running" and run["device"] == "cuda:0" and run["name"] == "sleep"
    assert run["pid"] == sleeper.pid and Path(run["dir"]).is_dir()
    # A process that never calls traintop.init writes no exit.json: killed, it is gone.
    assert engine.cli("kill", run["id"], "--grace", "1").code == 0
    assert engine.wait_state(run["id"], *TERMINAL, timeout=20)["state"] == "killed"
    assert sleeper.wait(timeout=10) == -signal.SIGTERM


def test_a_restarted_daemon_still_follows_and_kills_an_attached_script(
    engine: Engine, tmp_path: Path
) -> None:
    proc, run_id = launch(tmp_path, "steps=100000", "sleep=0.01")
    engine.wait_step(run_id, 5)
    assert engine.cli("engine", "stop").code == 0
    time.sleep(0.5)  # it trains on while no daemon runs
    assert engine.cli("engine", "start").code == 0
    step = engine.run(run_id)["step"]
    engine.wait_step(run_id, step + 10)  # its spool is tailed again
    assert engine.cli("kill", run_id, "--grace", "5").code == 0
    assert engine.wait_state(run_id, *TERMINAL, timeout=20)["state"] == "killed"
    assert proc.wait(timeout=10) == 143  # signalled alone, as before the restart


def test_a_kill_that_lands_after_the_last_step_leaves_the_run_finished(
    engine: Engine, tmp_path: Path
) -> None:
    # A script that trains, then evaluates, and ends cleanly on SIGTERM: a kill in that
    # evaluation stops nothing of the training, whose every point and checkpoint are kept.
    script = tmp_path / "train_then_eval.py"
    script.write_text(SCRIPT + textwrap.dedent(
        """
        signal_module = __import__("signal")
        signal_module.signal(signal_module.SIGTERM, lambda *_: sys.exit(0))
        print("TRAINED", flush=True)
        time.sleep(60)
        """
    ))
    proc = subprocess.Popen([sys.executable, str(script), "steps=20"], stdout=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=child_env())
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    assert proc.stdout.readline() == "TRAINED\n"
    engine.wait_step(run_id, 20)
    assert engine.cli("kill", run_id, "--grace", "5").code == 0
    assert proc.wait(timeout=20) == 0
    run = engine.wait_state(run_id, *TERMINAL, timeout=20)
    assert (run["state"], run["step"], run["exit_code"]) == ("finished", 20, 0), run
    assert sorted(engine.losses(run_id)) == list(range(20))
    shown = engine.cli("show", run_id).out
    assert "killed by user with SIGTERM after its last step: it had finished" in shown, shown
