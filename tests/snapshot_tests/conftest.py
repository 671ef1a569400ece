"""A real daemon on a state directory of fixed content, for the snapshot tests.

The state directory sits at one fixed path: the run detail screen shows a
run's directory, and a path under pytest's numbered temporaries would differ
on every run. A lock file makes two test sessions on one machine take turns
with it; each test starts from a fresh copy.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.rundir.paths import StatePaths
from tests.conftest import Engine, _kill_leftovers
from tests.snapshot_tests.fixed_state import fill_state_dir, fill_sweep_state_dir

ROOT = Path("/tmp/traintop-snapshots")
# The daemon's own sampler waits this long before its first sample (the most it
# allows): the panels show only the stored, fixed samples.
TELEMETRY_INTERVAL_S = "3600"


def _fixed_engine(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_gpus: int,
    fill: Callable[[StatePaths, float, int], None] = fill_state_dir,
) -> Iterator[Engine]:
    try:
        ROOT.mkdir(mode=0o700, exist_ok=True)
        lock = open(ROOT / "lock", "a")  # noqa: SIM115 - held until the test ends
    except OSError as exc:
        pytest.fail(f"snapshot tests need {ROOT} as their own: {exc}")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        paths = StatePaths(ROOT / "home")
        _kill_leftovers(paths)  # a session killed half-way may have left its daemon
        shutil.rmtree(paths.home, ignore_errors=True)
        fill(paths, time.time(), fake_gpus)
        monkeypatch.setenv("TRAINTOP_HOME", str(paths.home))
        monkeypatch.setenv("TRAINTOP_TELEMETRY_INTERVAL", TELEMETRY_INTERVAL_S)
        if fake_gpus:
            monkeypatch.setenv("TRAINTOP_FAKE_GPUS", str(fake_gpus))
        else:
            monkeypatch.delenv("TRAINTOP_FAKE_GPUS", raising=False)
        # Textual draws without colour when NO_COLOR is set at all (even empty): the
        # accepted snapshots are in colour, whoever runs them.
        monkeypatch.delenv("NO_COLOR", raising=False)
        # Event times are shown in local time: the same clock face on every machine.
        old_tz = os.environ.get("TZ")
        os.environ["TZ"] = "UTC"
        time.tzset()
        engine = Engine(paths, capsys)
        try:
            started = engine.cli("engine", "start")
            assert started.code == 0, started.err
            yield engine
        finally:
            _kill_leftovers(paths)
            if old_tz is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old_tz
            time.tzset()


@pytest.fixture
def fixed_engine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Engine]:
    """The fixed runs and telemetry on a machine without an NVIDIA driver."""
    yield from _fixed_engine(monkeypatch, capsys, fake_gpus=0)


@pytest.fixture
def fixed_engine_two_gpus(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Engine]:
    """The same, on a machine of two simulated H100s (``TRAINTOP_FAKE_GPUS=2``)."""
    yield from _fixed_engine(monkeypatch, capsys, fake_gpus=2)


@pytest.fixture
def fixed_sweep_engine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Engine]:
    """An 8-run sweep instead of the four runs, on a machine without an NVIDIA driver."""
    yield from _fixed_engine(monkeypatch, capsys, fake_gpus=0, fill=fill_sweep_state_dir)
