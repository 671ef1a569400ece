"""The real TUI on a pseudo-terminal: it ends at once when the SSH connection
drops (the runs go on), and it speaks only the colours the terminal has."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import Engine


def _spawn_tui(engine: Engine, term: str = "xterm-256color") -> tuple[subprocess.Popen[bytes], int]:
    """The real ``traintop`` TUI on a pseudo-terminal; returns it and the pty master."""
    master, slave = pty.openpty()
    env = dict(
        os.environ, TRAINTOP_HOME=str(engine.paths.home), TERM=term, COLUMNS="100", LINES="30"
    )
    env.pop("COLORTERM", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.main"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    return proc, master


def _read_until(master: int, needle: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"the TUI never drew {needle!r}; got {seen[-300:]!r}")
        try:
            seen += os.read(master, 65536)
        except OSError:
            break
    return seen


def _exit_within(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("how", ["close-terminal", "sighup"])
def test_tui_ends_when_the_terminal_goes_away(engine: Engine, how: str) -> None:
    started = engine.cli("start", "synthetic", "steps=100000", "sleep=0.01", "--json")
    run_id = started.json()["id"]
    proc, master = _spawn_tui(engine)
    try:
        _read_until(master, run_id.encode())
        if how == "close-terminal":
            os.close(master)  # the SSH session's end of the terminal is gone
        else:
            os.killpg(proc.pid, signal.SIGHUP)
        code = _exit_within(proc, 3.0)
        assert code is not None, "the TUI kept running on a dead terminal"
        time.sleep(0.3)
        assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == "zombie"
    finally:
        if proc.poll() is None:
            proc.kill()
        if how != "close-terminal":
            os.close(master)
    run = engine.run(run_id)
    assert run["state"] == "running"  # the run does not care


@pytest.mark.parametrize(
    ("term", "allowed", "refused"),
    [
        ("xterm", r"\x1b\[[0-9;]*m", r"[34]8;[25];"),  # 16 colours: no 256 or true colour
        ("xterm-256color", r"[34]8;5;", r"[34]8;2;"),  # 256 colours: no true colour
    ],
)
def test_tui_speaks_only_the_colours_of_its_terminal(
    engine: Engine, term: str, allowed: str, refused: str
) -> None:
    started = engine.cli("start", "synthetic", "steps=50", "--json")
    run_id = started.json()["id"]
    proc, master = _spawn_tui(engine, term)
    try:
        drawn = _read_until(master, run_id.encode()).decode("utf-8", "replace")
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    assert re.search(allowed, drawn)
    assert not re.search(refused, drawn)
