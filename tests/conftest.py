"""Shared fixtures: a private state directory with a real daemon, and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.client.cli import main as cli_main
from engine.client.client import Client, EngineUnavailable
from engine.rundir.paths import StatePaths

TERMINAL = ("finished", "failed", "killed")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Engine:
    """A state directory under test, with helpers to drive its daemon."""

    paths: StatePaths
    capsys: pytest.CaptureFixture[str]

    def cli(self, *argv: str) -> CliResult:
        """Run ``traintop ARGV`` in this process and capture what it prints."""
        self.capsys.readouterr()
        code = cli_main(list(argv))
        captured = self.capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    def client(self) -> Client:
        return Client(self.paths).connect()

    def call(self, method: str, **params: Any) -> Any:
        with self.client() as client:
            return client.call(method, **params)

    def all_runs(self) -> list[dict[str, Any]]:
        with self.client() as client:
            return client.all_runs()

    def run(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("get_run", run=ref)
        return result

    def wait(
        self, ref: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        """Poll a run until ``done(run)``; fails the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(ref)
            if done(run):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on run {ref}: {run['state']} {run}")
            time.sleep(0.05)

    def wait_state(self, ref: str, *states: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait(ref, lambda r: r["state"] in states, timeout)

    def wait_step(self, ref: str, step: int, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait(ref, lambda r: r["step"] >= step or r["state"] in TERMINAL, timeout)

    def wait_process(self, ref: str, step: int, timeout: float = 60.0) -> dict[str, Any]:
        """Until the run is past ``step`` with its process known (the daemon stores the
        worker's pid at a tick that may come after the first steps it stores)."""
        return self.wait(ref, lambda r: (r["step"] >= step and r["pgid"] is not None)
                         or r["state"] in TERMINAL, timeout)

    def losses(self, ref: str, key: str = "loss") -> dict[int, float]:
        return dict(self.points(ref, key))

    def points(self, ref: str, key: str = "loss") -> list[tuple[int, float]]:
        """Every point of a series as stored, in logging order, repeats and all."""
        with self.client() as client:
            points = client.all_metrics(ref, key)
        return [(int(step), value) for step, _k, value, _t in points]

    def daemon_pid(self) -> int | None:
        try:
            return int(self.paths.lock.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


def _kill_leftovers(paths: StatePaths) -> None:
    """Stop the daemon and every process a test run left behind."""
    with (
        contextlib.suppress(EngineUnavailable, OSError),
        Client(paths).connect(autostart=False) as client,
    ):
        client.call("shutdown")
    for worker in paths.runs.glob("*/worker.json"):
        with contextlib.suppress(Exception):
            info = json.loads(worker.read_text())
            os.killpg(int(info["pgid"]), signal.SIGKILL)
    home = str(paths.home)
    # Again until a pass finds nothing: a shim or fork child may start a worker
    # while the first pass is under way.
    for _ in range(5):
        found = False
        for proc in psutil.process_iter(["cmdline", "environ"]):
            with contextlib.suppress(Exception):
                cmdline = " ".join(proc.info["cmdline"] or [])
                env = proc.info["environ"] or {}
                if home in cmdline or env.get("TRAINTOP_HOME") == home:
                    proc.kill()
                    found = True
        if not found:
            return
        time.sleep(0.1)


def wait_until(
    check: Callable[[], Any], what: str = "the condition held", timeout: float = 30.0
) -> Any:
    """Poll ``check()`` until it is truthy and return its value; fail the test after
    ``timeout`` seconds, saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


@pytest.fixture
def engine(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Engine]:
    home = tmp_path / "home"
    monkeypatch.setenv("TRAINTOP_HOME", str(home))
    monkeypatch.delenv("COLUMNS", raising=False)  # tables at their full width
    # Tests start several runs at once; the default queue's slots (one per core) would
    # queue them on a small machine. Tests of the queue set their own limits.
    monkeypatch.setenv("TRAINTOP_CPU_SLOTS", "32")
    # The warm pool stays on, as users have it: its fork server is started by a daemon's
    # first run, so a test pays the torch import once, not once per run (the suite takes
    # a sixth less time). Tests of the cold path turn it off (test_warm_pool).
    paths = StatePaths(home)
    yield Engine(paths, capsys)
    _kill_leftovers(paths)
