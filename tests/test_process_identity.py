"""How the daemon tells that a run's process is still the one it started (real processes)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from engine.server.backends import identity
from engine.server.backends.identity import Identities


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """A child process that sleeps, and its start time as a worker records it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc, psutil.Process(proc.pid).create_time()
    finally:
        proc.kill()
        proc.wait()


def test_a_process_is_known_by_pid_and_start_then_dead_once_it_exits(
    sleeper: tuple[subprocess.Popen[bytes], float],
) -> None:
    proc, started = sleeper
    ids = Identities()
    assert ids.alive(proc.pid, started)
    assert ids.alive(proc.pid, started)  # the second answer comes from /proc alone
    assert not ids.alive(proc.pid, started + 5.0)  # same pid, another start: not it
    proc.kill()
    proc.wait()
    assert not ids.alive(proc.pid, started)


def test_a_zombie_is_not_alive_to_the_cached_answer_either(
    sleeper: tuple[subprocess.Popen[bytes], float],
) -> None:
    proc, started = sleeper
    ids = Identities()
    assert ids.alive(proc.pid, started)
    proc.kill()  # not reaped until the fixture's wait(): a zombie till then
    status = None
    for _ in range(200):
        status = psutil.Process(proc.pid).status()
        if status == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.01)
    assert status == psutil.STATUS_ZOMBIE
    assert not ids.alive(proc.pid, started)


@pytest.mark.skipif(not identity.HAS_PROC, reason="the /proc fast path is Linux's")
def test_the_fast_answer_compares_the_start_in_clock_ticks(
    sleeper: tuple[subprocess.Popen[bytes], float], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pid handed to a new process: /proc says another start, so the run's process is gone."""
    proc, started = sleeper
    ids = Identities()
    assert ids.alive(proc.pid, started)
    state, ticks = identity._stat(proc.pid) or (b"", 0)
    monkeypatch.setattr(identity, "_stat", lambda pid: (state, ticks + 1))
    assert not ids.alive(proc.pid, started)
    monkeypatch.setattr(identity, "_stat", lambda pid: (state, ticks))
    assert ids.alive(proc.pid, started)
