"""How many bytes does the TUI send, and how fast does j/k move the cursor?

Run: ``.venv/bin/python bench/tui_traffic.py``.

The real ``python -m tui.main`` runs on a 120x40 pseudo-terminal against a
real daemon on a temporary state directory; ``htop`` runs on a pty of the
same size over the same seconds, as the baseline of what a quiet terminal
monitor costs. htop's bytes move with how busy the machine is, so compare
the two within one run. The cases:

* idle: only finished runs, nothing changes but host telemetry;
* live: four synthetic runs stepping ~10 times a second the whole time,
  with a finished run selected, then with a live one selected (its curve
  grows in the chart), then with that one zoomed in on its end (``+``: a
  window of half its steps that follows new ones, asked of the daemon).

Then key -> screen: with 500 finished runs (made cheaply, see
``make_finished_runs``) and four live ones, j and k are written to the pty
one at a time, and we time from the write to the output that paints the
newly selected row's id on the cursor's background (80 keys, bouncing between the
ends, so with 507 rows most of them scroll the table). The baseline,
measured the same way in the same run, is the TUI with seven runs (three
finished, four live). Ten steps a second on two cores is a busy machine:
expect the p99 to move with whatever else runs there.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_idle import COLUMNS, LINES, ROOT, PtyApp, environment, p99, stop_daemon

from engine.client.client import Client
from engine.common.runs import new_run_id
from engine.run.run_api import Run
from engine.rundir.paths import RunDir, StatePaths, write_json_atomic

MEASURE_S = 10.0
SETTLE_S = 3.0
LIVE_RUNS = 4
MANY_RUNS = 500
KEY_PRESSES = 40  # each way: j and k, 80 keys in all
KEY_GAP_S = 0.15  # between a key's screen update and the next key
TERMINAL = ("finished", "failed", "killed")
END = b"\x1b[F"  # the End key: the cursor to the last row, a live run
ID = rb"[2-9a-z]{6}"


def make_finished_runs(paths: StatePaths, count: int, steps: int = 200) -> None:
    """``count`` finished runs through the attach path's offline import.

    Each is what an offline ``traintop.init`` script leaves behind: a run
    directory with an ``offline.json`` marker, a spool written by the worker's
    own ``Run`` (running, metrics, finished) and an ``exit.json``. The daemon
    imports and ingests them like any other. Starting 500 worker processes
    would take minutes on two cores; this takes about a second.
    """
    me = psutil.Process()
    for i in range(count):
        run_id = new_run_id()
        rundir = RunDir(paths.runs / run_id)
        rundir.path.mkdir(parents=True)
        launch = {"run_id": run_id, "name": f"many-{i}", "generation": 1, "device": "cpu"}
        run = Run(rundir.path, launch, {"steps": steps, "lr": 10 ** -(1 + i % 4)})
        for step in run.steps(steps):
            run.log(loss=1.0 / (1 + step) + (i % 7) * 0.01)
        for fd in (run._wake_r, run._wake_w, run._spool._fd):  # 500 runs: keep fds in check
            os.close(fd)
        write_json_atomic(rundir.offline, {
            "name": f"many-{i}", "config": {"steps": steps}, "argv": [sys.executable, "x.py"],
            "cwd": str(ROOT), "device": "cpu", "pid": me.pid, "pid_start": me.create_time(),
            "created": time.time() + i * 1e-3,
        })
        write_json_atomic(rundir.exit, {"generation": 1, "returncode": 0, "time": time.time()})


def wait_runs(client: Client, want: int, states: tuple[str, ...], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.all_runs()
        if sum(r["state"] in states for r in runs) >= want:
            return
        time.sleep(0.5)
    raise RuntimeError(f"fewer than {want} runs reached {states} in {timeout} s")


def start_live(client: Client) -> list[str]:
    """Four runs of ~10 steps a second, long enough to outlast the bench.

    In a queue of their own with room for all four: the default queue has one slot
    per core, and on 2 cores two of them would wait.
    """
    client.call("queue_set", name="traffic", parallel=LIVE_RUNS)
    ids = [
        client.call("start", workload="synthetic", overrides=["steps=200000", "sleep=0.1"],
                    name=f"live-{i}", device="cpu", cwd=str(ROOT), queue="traffic")["id"]
        for i in range(LIVE_RUNS)
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = {r["id"]: r for r in client.all_runs()}
        if all(runs[i]["state"] == "running" and (runs[i]["step"] or 0) > 5 for i in ids):
            return ids
        time.sleep(0.5)
    raise RuntimeError("the live runs did not start stepping within 60 s")


def kill_runs(paths: StatePaths, run_ids: list[str]) -> None:
    """Kill the live runs and wait until they are gone (they would train for hours)."""
    if not run_ids:
        return
    with Client(paths).connect(autostart=False) as client:
        for run_id in run_ids:
            client.call("kill", run=run_id)
        wait_runs(client, len(run_ids), ("killed",), timeout=60)


def htop(home: Path) -> PtyApp:
    env = environment(home)
    env["HTOPRC"] = "/dev/null"  # its defaults, whatever this user configured
    return PtyApp(["htop"], env)


def tui(home: Path) -> PtyApp:
    """A fresh TUI: the view an earlier case left (its selection, kept in tui.json) is
    forgotten, so every case starts where a first start does."""
    StatePaths(home).tui_view.unlink(missing_ok=True)
    return PtyApp([sys.executable, "-m", "tui.main"], environment(home))


def traffic(home: Path, needle: bytes, *keys: bytes) -> tuple[float, float]:
    """Bytes a second written by traintop and by htop, side by side, same seconds.

    ``keys`` are typed into traintop first, a second apart (e.g. End: select the
    newest run; then +: zoom in on its end, following it).
    """
    ours, theirs = tui(home), htop(home)
    try:
        ours.wait_for(needle)
        theirs.wait_for(b"Load average")
        for key in keys:
            time.sleep(1.0)
            os.write(ours.master, key)
        time.sleep(SETTLE_S)
        b0, h0, t0 = ours.byte_count(), theirs.byte_count(), time.perf_counter()
        time.sleep(MEASURE_S)
        b1, h1, t1 = ours.byte_count(), theirs.byte_count(), time.perf_counter()
    finally:
        ours.close()
        theirs.close()
    return (b1 - b0) / (t1 - t0), (h1 - h0) / (t1 - t0)


class KeyTimer:
    """Times key -> the newly selected row painted in the cursor's style."""

    def __init__(self, app: PtyApp, run_ids: set[str]) -> None:
        self.app = app
        self.run_ids = {i.encode() for i in run_ids}
        self.cursor_bg: bytes | None = None
        self.current: bytes | None = None  # the run under the cursor

    def _press(self, key: bytes) -> tuple[int, float]:
        start = self.app.byte_count()
        os.write(self.app.master, key)
        return start, time.perf_counter()

    def calibrate(self) -> None:
        """Find the cursor's background: the one a row had just after j, and lost after
        the next j."""
        chunks = []
        for _ in range(2):
            start, _t = self._press(b"j")
            time.sleep(1.0)
            chunks.append(bytes(self.app.output[start:]))
        first = {(run_id, bg) for run_id, bg, _ in backgrounds(chunks[0])}
        second = {(run_id, bg) for run_id, bg, _ in backgrounds(chunks[1])}
        moved_off = {run_id for run_id, _ in first} & {run_id for run_id, _ in second}
        for run_id, bg in first:
            if run_id in moved_off and run_id in self.run_ids and (run_id, bg) not in second:
                self.cursor_bg = bg
                self.current = next(
                    (i for i, b in second if b == bg and i in self.run_ids and i != run_id), None
                )
                return
        raise RuntimeError("could not find the cursor's style in the output")

    def measure(self, keys: list[bytes]) -> list[float]:
        """Seconds from each key's write to its cursor row on screen."""
        assert self.cursor_bg is not None
        latencies = []
        for key in keys:
            start, t0 = self._press(key)
            deadline = t0 + 5.0
            while True:
                seen = self.app.byte_count()  # before the search: nothing slips between
                found = self._moved(start)
                if found is not None:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no cursor move seen 5 s after {key!r}")
                # Block until more output comes: polling would take CPU from the TUI.
                self.app.wait_beyond(seen, deadline - time.perf_counter())
            run_id, end = found
            latencies.append(self.app.time_at(start + end) - t0)
            self.current = run_id
            time.sleep(KEY_GAP_S)
        return latencies

    def _moved(self, start: int) -> tuple[bytes, int] | None:
        """The first run id written on the cursor's background since ``start`` that is
        not the row the cursor was on, and where it ends in that output."""
        for run_id, bg, end in backgrounds(bytes(self.app.output[start:])):
            if bg == self.cursor_bg and run_id in self.run_ids and run_id != self.current:
                return run_id, end
        return None


# An SGR sequence (its parameters), another escape sequence, a run id, or one byte.
TOKEN = re.compile(rb"\x1b\[([0-9;]*)m|\x1b\[[0-9;?]*[A-Za-z]|(" + ID + rb")|.", re.DOTALL)


def backgrounds(output: bytes) -> list[tuple[bytes, bytes, int]]:
    """Each run id in ``output`` with the background it is written on and its end offset.

    The TUI writes a style as a change from the one before (``tui.partial_updates``),
    so the background is followed through every SGR sequence, from a reset (each
    update starts from one)."""
    found, bg = [], b""
    for token in TOKEN.finditer(output):
        if token.group(1) is not None:
            bg = background_after(token.group(1), bg)
        elif token.group(2):
            found.append((token.group(2), bg, token.end()))
    return found


def background_after(params: bytes, bg: bytes) -> bytes:
    """The background once an SGR sequence with ``params`` is applied to ``bg``."""
    codes = params.split(b";") if params else [b"0"]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code in (b"38", b"48"):  # 38;5;N or 38;2;R;G;B, and the same for 48
            width = 3 if codes[i + 1 : i + 2] == [b"5"] else 5
            if code == b"48":
                bg = b";".join(codes[i : i + width])
            i += width
            continue
        if code in (b"0", b"", b"49"):
            bg = b""
        elif 40 <= int(code) <= 47 or 100 <= int(code) <= 107:
            bg = code
        i += 1
    return bg


def bounce(rows: int, presses: int, at: int) -> list[bytes]:
    """j and k, ``presses`` in all, from row ``at`` down and up, never past either end."""
    keys, step = [], 1
    for _ in range(presses):
        if not 0 <= at + step < rows:
            step = -step
        keys.append(b"j" if step > 0 else b"k")
        at += step
    return keys


def key_latency(home: Path, needle: bytes, run_ids: set[str]) -> tuple[list[float], float]:
    """Key -> screen latencies, and seconds from spawn until every run was listed."""
    app = tui(home)
    try:
        app.wait_for(needle, timeout=120)
        ready = time.perf_counter() - app.started
        time.sleep(SETTLE_S)
        timer = KeyTimer(app, run_ids)
        timer.calibrate()  # two j: the cursor is on the third row
        return timer.measure(bounce(len(run_ids), 2 * KEY_PRESSES, 2)), ready
    finally:
        app.close()


def main() -> int:
    """Measure and print; everything started here is stopped before returning."""
    if shutil.which("htop") is None:
        print("htop is not installed: it is this bench's baseline")
        return 1
    # The finished runs made here name this process as theirs (make_finished_runs):
    # a daemon's nudge to one of them (SIGUSR1) lands here, and would end the bench.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    home = Path(tempfile.mkdtemp(prefix="traintop-traffic-"))
    paths = StatePaths(home)
    live_ids: list[str] = []
    try:
        with Client(paths).connect() as client:
            make_finished_runs(paths, 3)
            wait_runs(client, 3, TERMINAL)
            idle = traffic(home, b"3 finished")
            live_ids = start_live(client)
            live = traffic(home, b"4 running")
            live_chart = traffic(home, b"4 running", END)
            live_zoomed = traffic(home, b"4 running", END, b"+")
            few, few_ready = key_latency(home, b"4 running",
                                         {r["id"] for r in client.all_runs()})
            make_finished_runs(paths, MANY_RUNS)
            wait_runs(client, MANY_RUNS + 3, TERMINAL)
            many, many_ready = key_latency(home, f"{MANY_RUNS + 3} finished".encode(),
                                           {r["id"] for r in client.all_runs()})
    finally:
        kill_runs(paths, live_ids)  # runs outlive their daemon by design: end them here
        stop_daemon(paths)
        shutil.rmtree(home, ignore_errors=True)
    print(f"{COLUMNS}x{LINES} pty, {MEASURE_S:.0f} s each, {os.cpu_count()} CPUs")
    cases = (("idle, 3 finished runs", idle), ("4 live runs", live),
             ("4 live, one charted", live_chart), ("4 live, one zoomed (+)", live_zoomed))
    for label, (ours, theirs) in cases:
        print(f"{label:<24} traintop {ours:>7.0f} B/s   htop {theirs:>6.0f} B/s   "
              f"x{ours / theirs:.2f} htop")
    for label, values, ready in ((f"j/k, {LIVE_RUNS + 3} runs", few, few_ready),
                                 (f"j/k, {MANY_RUNS + 3 + LIVE_RUNS} runs", many, many_ready)):
        print(f"{label:<24} p50 {statistics.median(values) * 1000:>6.1f} ms   "
              f"p99 {p99(values) * 1000:>6.1f} ms   ({len(values)} keys; all runs listed "
              f"{ready:.1f} s after start)")
    print(f"{MANY_RUNS} more runs: p50 x{statistics.median(many) / statistics.median(few):.2f}, "
          f"p99 x{p99(many) / p99(few):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
