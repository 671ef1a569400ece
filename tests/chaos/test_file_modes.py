"""Every file of the state tree is the user's alone, and a run's launch.json holds no secret."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from engine.rundir.paths import child_env, read_json
from tests.conftest import TERMINAL, Engine

ATTACH_SCRIPT = textwrap.dedent(
    """
    import torch
    import traintop

    run = traintop.init(config={"steps": 20}, name="attached")
    print("RUN", run.id, flush=True)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run.track(model=model, optimizer=opt)
    for step in run.steps(run.config.steps):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log(loss=loss)
    """
)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask most shells have (022): files are 0644 unless the code says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def loose_modes(home: Path) -> list[str]:
    """Every path under ``home`` whose mode is not 0600 (files) or 0700 (directories)."""
    found = []
    for path in [home, *home.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        wanted = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if stat.S_IMODE(info.st_mode) != wanted:
            found.append(f"{path.relative_to(home)} {stat.S_IMODE(info.st_mode):04o}")
    return found


def attach(tmp_path: Path, **env: str) -> str:
    """Run the attach script to its end, as a user would (their umask); its run id."""
    script = tmp_path / "attached.py"
    script.write_text(ATTACH_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
        env=child_env(**env), timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[1]


def test_every_file_and_directory_is_private_after_runs_attaches_and_a_restart(
    engine: Engine, tmp_path: Path, open_umask: None
) -> None:
    started = engine.cli("start", "synthetic", "steps=30", "--json")
    assert started.code == 0, started.err
    wrapped = engine.cli("run", "--json", "--", sys.executable, "-c", "print('loss 0.5')")
    assert wrapped.code == 0, wrapped.err
    attached = attach(tmp_path)
    for run_id in (started.json()["id"], wrapped.json()["id"], attached):
        assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    home = engine.paths.home
    assert (home / "store.sqlite-wal").exists() and engine.paths.daemon_log.exists()
    assert list(engine.paths.run_dir(attached).checkpoints.iterdir())
    assert loose_modes(home) == []

    assert engine.cli("engine", "stop").code == 0
    offline = attach(tmp_path, TRAINTOP_NO_AUTOSTART="1")  # no engine: made by the script
    assert engine.paths.run_dir(offline).offline.exists()
    assert loose_modes(home) == []
    # A tree left open by an older traintop is made private when the engine starts.
    os.chmod(engine.paths.store, 0o644)
    os.chmod(engine.paths.run_dir(attached).launch, 0o664)
    os.chmod(engine.paths.run_dir(attached).checkpoints, 0o755)
    assert engine.cli("engine", "start").code == 0
    assert engine.wait_state(offline, *TERMINAL)["state"] == "finished"
    assert loose_modes(home) == []


def test_launch_json_holds_only_what_the_run_needs(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("WANTED_SETTING", "on")
    echo = [sys.executable, "-c", "import os; print(os.environ.get('SECRET_TOKEN', 'absent'))"]
    plain = engine.cli("run", "--json", "--", *echo).json()["id"]
    asked = engine.cli("run", "--json", "--env", "SECRET_TOKEN", "--", *echo).json()["id"]
    for run_id in (plain, asked):
        engine.wait_state(run_id, *TERMINAL)
    assert engine.cli("logs", plain).out == "absent\n"
    assert engine.cli("logs", asked).out == "hunter2\n"

    run_id = engine.cli("start", "synthetic", "steps=400", "sleep=0.01", "--env",
                        "WANTED_SETTING", "--json").json()["id"]
    env = read_json(engine.paths.run_dir(run_id).launch)["env"]
    assert "SECRET_TOKEN" not in env and env["WANTED_SETTING"] == "on"
    assert env["PATH"] == os.environ["PATH"]
    assert read_json(engine.paths.run_dir(plain).launch)["env"].get("SECRET_TOKEN") is None
    daemon = psutil.Process(engine.call("status")["pid"])
    assert "SECRET_TOKEN" not in daemon.environ()  # runs started with no env inherit its own

    # A release and resume, and a fork, run with the same reduced environment.
    engine.wait_step(run_id, 20)
    assert engine.cli("pause", run_id, "--release").code == 0
    assert engine.cli("resume", run_id).code == 0
    child = engine.cli("fork", run_id, "--json").json()["id"]
    for ref in (run_id, child):
        assert engine.wait_state(ref, *TERMINAL)["state"] == "finished"
        launch = read_json(engine.paths.run_dir(ref).launch)
        assert launch["env"] == env
    assert read_json(engine.paths.run_dir(run_id).launch)["generation"] == 2
    assert read_json(engine.paths.run_dir(child).launch)["parent_id"] == run_id
