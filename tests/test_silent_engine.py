"""An engine that holds its socket but answers nothing (stopped with SIGSTOP, stuck):
every client says so in one line instead of hanging, runs train on meanwhile,
``engine stop`` ends it, and the TUI says what it shows is old until it speaks again.

A real daemon is stopped with SIGSTOP; a socket nobody answers on stands in for a
daemon stuck in a way no signal shows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import engine.client.aclient as aclient_module
import engine.client.client as client_module
import tui.connection as connection_module
from tests.conftest import Engine, wait_until
from tests.test_tui import start, until
from tui.app import TraintopApp


@pytest.fixture
def impatient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients that notice a silent engine in a fraction of a second, not ten."""
    monkeypatch.setattr(client_module, "HELLO_PATIENCE_S", 0.3)
    monkeypatch.setattr(aclient_module, "HELLO_PATIENCE_S", 0.3)
    monkeypatch.setattr(client_module, "HELLO_GIVE_UP_S", 1.0)
    monkeypatch.setattr(connection_module, "QUIET_S", 0.3)


def spool_size(engine: Engine, run_id: str) -> int:
    return engine.paths.run_dir(run_id).spool.stat().st_size


def training(engine: Engine) -> tuple[str, int]:
    """A long run, training; and the engine's pid."""
    run_id = start(engine, "synthetic", "steps=100000", "sleep=0.005")
    engine.wait_step(run_id, 5)
    daemon = engine.daemon_pid()
    assert daemon is not None
    return run_id, daemon


def test_a_stopped_engine_is_said_at_once_and_engine_stop_ends_it(
        engine: Engine, impatient: None) -> None:
    run_id, daemon = training(engine)
    os.kill(daemon, signal.SIGSTOP)
    try:
        result = engine.cli("ls")
        assert result.code == 1
        assert result.err.strip() == (
            f"traintop: engine {daemon} is stopped (SIGSTOP or a debugger: 'kill -CONT "
            f"{daemon}' wakes it) and does not answer; runs keep training; 'traintop engine "
            "stop' ends it")
        # The run does not wait on the engine: its spool grows while the engine sleeps.
        before = spool_size(engine, run_id)
        wait_until(lambda: spool_size(engine, run_id) > before, timeout=30)
        stopped = engine.cli("engine", "stop")
    finally:
        if psutil.pid_exists(daemon):
            os.kill(daemon, signal.SIGCONT)
    assert stopped.code == 0, stopped.err
    assert stopped.out.splitlines() == [f"engine {daemon} does not answer; sending it SIGTERM",
                                        f"engine {daemon} stopped; runs keep training"]
    assert not psutil.pid_exists(daemon)
    # A new engine takes the run up where it is: still training, past where it was.
    step = engine.run(run_id)["step"]
    assert engine.daemon_pid() != daemon
    assert engine.run(run_id)["state"] == "running"
    engine.wait_step(run_id, step + 5)
    assert engine.cli("kill", run_id).code == 0


@pytest.fixture
def mute_socket(engine: Engine) -> Iterator[Path]:
    """A listener on the engine's socket that takes connections and never says a word."""
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(engine.paths.socket))
    listener.listen()
    taken: list[socket.socket] = []
    done = threading.Event()

    def take() -> None:
        while not done.is_set():
            try:
                taken.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    yield engine.paths.socket
    done.set()
    listener.close()
    for conn in taken:
        conn.close()
    engine.paths.socket.unlink(missing_ok=True)


def test_an_engine_that_never_answers_is_given_up_on_in_one_line(
        engine: Engine, impatient: None, mute_socket: Path) -> None:
    result = engine.cli("ls")
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].startswith(f"traintop: the engine on {mute_socket} has not answered for ")
    assert lines[0].endswith(" s; waiting")
    assert len(lines) == 2  # the wait is said once, then the end
    assert lines[1].startswith(f"traintop: the engine on {mute_socket} has not answered for 1 s "
                               f"(stuck? see {engine.paths.daemon_log}); runs keep training")
    # No engine process to stop: engine stop says so and touches nothing.
    stopped = engine.cli("engine", "stop")
    assert stopped.code == 1
    assert "has not answered" in stopped.err
    assert mute_socket.exists()


def test_the_tui_says_a_silent_engine_and_when_its_screen_is_from(
        engine: Engine, impatient: None) -> None:
    run_id, daemon = training(engine)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home, autostart=False)
        async with app.run_test(size=(120, 30)) as pilot:
            # Telemetry is the last thing a connection asks before it follows events.
            await until(pilot, lambda: app.state.connected and run_id in app.state.runs
                        and app.state.telemetry)
            status = app.query_one("#status")
            os.kill(daemon, signal.SIGSTOP)
            try:
                await until(pilot, lambda: "has not answered" in str(status.render()))
                text = str(status.render())
                assert f"engine {daemon} has not answered for " in text
                assert "(stopped or stuck?); the screen shows " in text
            finally:
                os.kill(daemon, signal.SIGCONT)
            await until(pilot, lambda: "has not answered" not in str(status.render()))
            assert app.state.connected

    asyncio.run(scenario())
    assert engine.cli("kill", run_id).code == 0


def test_engine_status_says_when_the_last_engine_did_not_stop_cleanly(engine: Engine) -> None:
    assert engine.cli("engine", "start").code == 0
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "start").code == 0
    assert "did not stop cleanly" not in engine.cli("engine", "status").out  # a clean stop
    daemon = engine.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(daemon))
    assert engine.cli("engine", "start").code == 0
    first = engine.cli("engine", "status").out.splitlines()[0]
    assert first.endswith(f"(the last engine did not stop cleanly: killed or crashed; see "
                          f"{engine.paths.daemon_log})"), first
    assert "did not stop cleanly" in engine.paths.daemon_log.read_text()
