"""How quiet is the TUI when nothing happens?  Run: ``.venv/bin/python bench/tui_idle.py``.

The real ``python -m tui.main`` runs on a pseudo-terminal (120x40) against a
daemon on a temporary state directory, (a) with no runs and (b) with three
finished runs. Once it has drawn and settled, for IDLE_S seconds we count the
bytes it writes to the terminal and the CPU time it uses (psutil). The
baseline, measured in the same run on the same pty for the same time, is a
minimal Textual app: a Static and a Footer.

Also the time to first frame: from spawn to the first output holding the
status line's text "traintop" (median of a few starts), ours against the
minimal app's.

The daemon publishes host telemetry once a second and the host panel shows
it, so the TUI is not expected to be silent: the host panel redraws each second.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import pty
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.client.client import Client, EngineUnavailable  # noqa: E402
from engine.rundir.paths import StatePaths  # noqa: E402

COLUMNS, LINES = 120, 40
IDLE_S = 10.0
SETTLE_S = 2.0
FIRST_FRAME_TRIES = 3
NEEDLE = b"traintop"
TERMINAL = ("finished", "failed", "killed")

MINIMAL_APP = """
from textual.app import App
from textual.widgets import Footer, Static

class Minimal(App[None]):
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self):
        yield Static(" traintop  minimal baseline")
        yield Footer()

Minimal().run()
"""


@dataclass
class Idle:
    """What one app did over the idle window."""

    bytes_per_s: float
    cpu_percent: float


class PtyApp:
    """A command on its own pseudo-terminal; a thread drains and counts its output."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.last_output = self.started
        self.first_frame: float | None = None
        self.arrivals: list[tuple[int, float]] = []  # (output length after a read, when)
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter()
            with self._lock:
                self.output += chunk
                self.last_output = now
                self.arrivals.append((len(self.output), now))
                self._grew.notify_all()
                if self.first_frame is None and NEEDLE in self.output:
                    self.first_frame = now - self.started

    def byte_count(self) -> int:
        with self._lock:
            return len(self.output)

    def wait_beyond(self, length: int, timeout: float) -> None:
        """Sleep until the output is longer than ``length`` (or ``timeout`` seconds)."""
        with self._grew:
            self._grew.wait_for(lambda: len(self.output) > length, timeout)

    def time_at(self, offset: int) -> float:
        """When the byte at ``offset`` of the output was read."""
        with self._lock:
            index = bisect.bisect_left(self.arrivals, offset, key=lambda a: a[0] - 1)
            return self.arrivals[index][1]

    def wait_for(self, needle: bytes, timeout: float = 30.0) -> None:
        """Until ``needle`` has been written (ESC sequences may split other text)."""
        deadline = time.monotonic() + timeout
        while needle not in bytes(self.output):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                tail = bytes(self.output[-300:])
                raise RuntimeError(f"never saw {needle!r}; exit {self.proc.poll()}; {tail!r}")
            time.sleep(0.05)

    def measure_idle(self, seconds: float) -> Idle:
        process = psutil.Process(self.proc.pid)
        cpu0, bytes0, t0 = sum(process.cpu_times()[:2]), self.byte_count(), time.perf_counter()
        time.sleep(seconds)
        cpu1, bytes1, t1 = sum(process.cpu_times()[:2]), self.byte_count(), time.perf_counter()
        return Idle((bytes1 - bytes0) / (t1 - t0), 100.0 * (cpu1 - cpu0) / (t1 - t0))

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)
        self._reader.join(timeout=2)


def p99(values: list[float]) -> float:
    """The 99th percentile (the benches' tail latency)."""
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def environment(home: Path) -> dict[str, str]:
    return dict(
        os.environ, TRAINTOP_HOME=str(home), TERM="xterm-256color",
        COLUMNS=str(COLUMNS), LINES=str(LINES), PYTHONPATH=str(ROOT),
    )


def ours(home: Path) -> PtyApp:
    return PtyApp([sys.executable, "-m", "tui.main"], environment(home))


def minimal(home: Path) -> PtyApp:
    return PtyApp([sys.executable, "-c", MINIMAL_APP], environment(home))


def idle(app: PtyApp, needle: bytes) -> Idle:
    try:
        app.wait_for(needle)
        time.sleep(SETTLE_S)  # the first telemetry, history and layout passes
        return app.measure_idle(IDLE_S)
    finally:
        app.close()


def first_frame(start: Callable[[Path], PtyApp], home: Path) -> float:
    """Median seconds from spawn to the first output holding NEEDLE."""
    times = []
    for _ in range(FIRST_FRAME_TRIES):
        app = start(home)
        try:
            app.wait_for(NEEDLE)
            assert app.first_frame is not None
            times.append(app.first_frame)
        finally:
            app.close()
    return statistics.median(times)


def finish_three_runs(paths: StatePaths) -> None:
    with Client(paths).connect() as client:
        ids = [
            client.call("start", workload="synthetic", overrides=["steps=200"], name=f"idle-{i}",
                        device="cpu", cwd=str(ROOT))["id"]
            for i in range(3)
        ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(client.call("get_run", run=i)["state"] in TERMINAL for i in ids):
                return
            time.sleep(0.2)
    raise RuntimeError("the three synthetic runs did not finish within 60 s")


def stop_daemon(paths: StatePaths) -> None:
    with (
        contextlib.suppress(EngineUnavailable, OSError),
        Client(paths).connect(autostart=False) as client,
    ):
        pid = client.server_pid
        client.call("shutdown")
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(timeout=10)


def ratio(value: float, base: float) -> str:
    return f"x{value / base:.1f}" if base else "n/a (baseline 0)"


def row(label: str, result: Idle, base: Idle) -> str:
    return (
        f"{label:<26} {result.bytes_per_s:>7.0f} B/s {result.cpu_percent:>6.2f} % CPU"
        f"   bytes {ratio(result.bytes_per_s, base.bytes_per_s)}"
        f", CPU {ratio(result.cpu_percent, base.cpu_percent)}"
    )


def main() -> int:
    """Measure and print; everything started here is stopped before returning."""
    home = Path(tempfile.mkdtemp(prefix="traintop-idle-"))
    paths = StatePaths(home)
    try:
        Client(paths).connect().close()
        baseline = idle(minimal(home), NEEDLE)
        empty = idle(ours(home), b"no runs yet")
        finish_three_runs(paths)
        finished = idle(ours(home), b"3 finished")
        ours_first = first_frame(ours, home)
        minimal_first = first_frame(minimal, home)
    finally:
        stop_daemon(paths)
        shutil.rmtree(home, ignore_errors=True)
    print(f"idle for {IDLE_S:.0f} s on a {COLUMNS}x{LINES} pty ({os.cpu_count()} CPUs)")
    print(f"{'minimal Textual app':<26} {baseline.bytes_per_s:>7.0f} B/s "
          f"{baseline.cpu_percent:>6.2f} % CPU   (baseline)")
    print(row("traintop, no runs", empty, baseline))
    print(row("traintop, 3 finished runs", finished, baseline))
    print(
        f"first frame: traintop {ours_first * 1000:.0f} ms, minimal {minimal_first * 1000:.0f} ms"
        f", x{ours_first / minimal_first:.2f} (median of {FIRST_FRAME_TRIES})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
