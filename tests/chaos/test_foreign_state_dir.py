"""A state tree that another user owns or may write is refused, and nothing is written in it.

Tests run as root here, so they can hand a directory to ``nobody``.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from engine.rundir.paths import child_env, write_json_atomic
from tests.conftest import Engine

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another user")


def snapshot(home: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every path under ``home`` with its mode, owner, size and modification time."""
    return {
        str(p): (s.st_mode, s.st_uid, s.st_size, s.st_mtime_ns)
        for p in [home, *home.rglob("*")]
        for s in [p.lstat()]
    }


def make_tree(engine: Engine) -> None:
    """A state tree as a stopped engine leaves it, with one run directory."""
    rundir = engine.paths.run_dir("abc234")
    rundir.path.mkdir(parents=True, mode=0o700)
    os.chmod(engine.paths.home, 0o700)
    os.chmod(engine.paths.runs, 0o700)
    write_json_atomic(rundir.launch, {"run_id": "abc234", "workload": "synthetic"})


def refused(engine: Engine, path: Path, why: str) -> None:
    """``traintop ls`` fails with one line naming ``path`` and the fix."""
    result = engine.cli("ls")
    assert result.code == 1 and result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert f"{path} " in lines[0] and why in lines[0], lines[0]
    assert "Traceback" not in result.err


@pytest.mark.parametrize("which", ["home", "runs"])
def test_a_state_dir_owned_by_another_user_is_refused(engine: Engine, which: str) -> None:
    make_tree(engine)
    nobody = pwd.getpwnam("nobody")
    target = engine.paths.home if which == "home" else engine.paths.runs
    os.chown(target, nobody.pw_uid, nobody.pw_gid)
    before = snapshot(engine.paths.home)
    refused(engine, target, f"owned by uid {nobody.pw_uid}")
    assert snapshot(engine.paths.home) == before
    assert not engine.paths.socket.exists() and not engine.paths.store.exists()


def test_a_state_dir_writable_by_others_is_refused(engine: Engine) -> None:
    make_tree(engine)
    os.chmod(engine.paths.home, 0o777)
    before = snapshot(engine.paths.home)
    refused(engine, engine.paths.home, "chmod 700")
    assert snapshot(engine.paths.home) == before


def test_a_run_directory_of_another_user_stops_the_engine_with_one_line(
    engine: Engine,
) -> None:
    make_tree(engine)
    foreign = engine.paths.run_dir("abc234").path
    nobody = pwd.getpwnam("nobody")
    os.chown(foreign, nobody.pw_uid, nobody.pw_gid)
    inside = snapshot(foreign)
    refused(engine, foreign, f"owned by uid {nobody.pw_uid}")
    assert snapshot(foreign) == inside
    assert not engine.paths.store.exists()  # the daemon stopped before opening it
    assert engine.daemon_pid() is None or not engine.paths.socket.exists()


def test_traintop_init_trains_on_but_records_nothing_in_a_foreign_state_dir(
    engine: Engine, tmp_path: Path
) -> None:
    make_tree(engine)
    nobody = pwd.getpwnam("nobody")
    os.chown(engine.paths.home, nobody.pw_uid, nobody.pw_gid)
    before = snapshot(engine.paths.home)
    script = "import traintop\nrun = traintop.init()\nfor s in run.steps(3): run.log(loss=1.0)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=child_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{engine.paths.home} is owned by uid {nobody.pw_uid}" in done.stderr
    assert snapshot(engine.paths.home) == before
