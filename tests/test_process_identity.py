"""How the daemon tells that a run's process is still the one it started (real processes)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from engine.server.backends import identity
from engine.server.backends.identity import Identities


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_process_is_known_by_pid_and_start_then_dead_once_it_exits() -> None:
    proc = sleeper()
    started = psutil.Process(proc.pid).create_time()
    ids = Identities()
    try:
        assert ids.alive(proc.pid, started)
        assert ids.alive(proc.pid, started)  # the second answer comes from /proc alone
        assert not ids.alive(proc.pid, started + 5.0)  # same pid, another start: not it
        proc.kill()
        proc.wait()
        assert not ids.alive(proc.pid, started)
    finally:
        proc.kill()
        proc.wait()


def test_a_zombie_is_not_alive_to_the_cached_answer_either() -> None:
    proc = sleeper()
    started = psutil.Process(proc.pid).create_time()
    ids = Identities()
    try:
        assert ids.alive(proc.pid, started)
        proc.kill()  # not reaped until proc.wait() below: a zombie till then
        status = None
        for _ in range(200):
            status = psutil.Process(proc.pid).status()
            if status == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.01)
        assert status == psutil.STATUS_ZOMBIE
        assert not ids.alive(proc.pid, started)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not identity._PROC, reason="the /proc fast path is Linux's")
def test_the_fast_answer_compares_the_start_in_clock_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pid handed to a new process: /proc says another start, so the run's process is gone."""
    proc = sleeper()
    started = psutil.Process(proc.pid).create_time()
    ids = Identities()
    try:
        assert ids.alive(proc.pid, started)
        state, ticks = identity._stat(proc.pid) or (b"", 0)
        monkeypatch.setattr(identity, "_stat", lambda pid: (state, ticks + 1))
        assert not ids.alive(proc.pid, started)
        monkeypatch.setattr(identity, "_stat", lambda pid: (state, ticks))
        assert ids.alive(proc.pid, started)
    finally:
        proc.kill()
        proc.wait()
