"""traintop at scale.  Run: ``.venv/bin/python bench/scale.py [--quick] [--json PATH]``.

Builds N runs x M steps x K keys (default 500 x 20,000 x 2, plus one run of
100,000 steps x 1 key) in a temporary ``TRAINTOP_HOME`` and times what a user
feels, then does the same with TensorBoard as the baseline, in the same run.
Needs the ``bench`` extra (``.venv/bin/pip install -e '.[dev,bench]'``).
``--quick`` is 20 runs x 2,000 steps, for CI; ``--runs/--steps/--keys`` set
the size, ``--help`` lists the time limits.

How the data gets in (the real ingest path, none of it bypassed): a daemon is
started as a client starts it; a few writer processes (``bench/scale_parts.py
write``) are user training scripts: each calls ``traintop.init`` once per run
(an ``attach`` request, so the daemon follows the run), then advances its runs
in turns through ``run.steps`` / ``run.log``. ``Run`` flushes its buffer to the
run's ``spool.jsonl`` with the same ``SpoolWriter`` a worker uses, and the
daemon tails the spools into SQLite exactly as for worker processes. One run
in twenty is forked half-way by a ``fork`` request: the parent writes a
checkpoint, and the daemon starts the child through its shim, re-running the
script, which continues the run from the checkpoint. So forks are real worker
processes with a ``parent_id`` and a ``fork_step``, and the runs table is a tree.
Why not one worker per run: each imports torch (~2 s of CPU on a 2-core box),
and 500 of them would measure process start-up rather than ingest. Why not
direct inserts or pre-written spools: they would skip the path being measured.

Figures (one line each; the targets of issue 9 marked PASS or MISS):

- ingest: points/s from the first point written to the last point of the
  writers' runs stored, "stored" read from the daemon (a run's step is stored
  in the same transaction as its points; done when every such run is finished
  at its last step); the fork children, each a new Python process that imports
  torch, started by the daemon in its default queue (one slot per core), are
  timed on their own line;
  with when the writers ended (did the daemon keep up?) and the daemon's CPU
  time and RSS over the ingest;
- bytes per point: store.sqlite + its -wal after a checkpoint, the daemon
  stopped, divided by the points stored;
- cold ``ls``: the daemon stopped, ``traintop ls`` in a subprocess (it starts
  the daemon), spawn to exit 0; warm ``ls``: the same once more;
- TUI: the real app (``tui.app``) under Textual's ``run_test()`` in a
  subprocess: spawn to the runs table holding every run; then a fork child
  selected (``move_cursor``, as a click) until the chart holds its points, for five
  fork children in turn, each loaded from nothing: the median of the five;
- export: ``traintop export RUN --format csv`` of the 100,000-point run to a
  file; the rows are counted;
- daemon RSS (psutil) after all of the above;
- TensorBoard: the same scalars (same tags, steps, values) written with
  tensorboardX, one event file per run, loaded with ``EventAccumulator``
  (size_guidance 0 for scalars: all of them), run by run; our side loads the
  same runs' full series through the daemon's paged ``metrics`` request.
  Either load stops at ``--load-budget`` seconds; the time for all runs is then
  extrapolated by points (both loads are linear in points) and says so.
  Ratio: (cold ``ls`` + our load) against EventAccumulator's load.

Every step has a time limit (``--timeout``): one that gets no answer prints
"no answer in N s" and the bench goes on (a daemon that stopped answering is
killed and the next step starts a fresh one). Every process started here, the
daemon, shims and fork workers included, carries this TRAINTOP_HOME in its
environment; all of them are ended at the end (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale_parts import RunSpec  # noqa: E402

from engine.client.client import Client, EngineUnavailable  # noqa: E402
from engine.rundir.paths import StatePaths, child_env, database_bytes  # noqa: E402

PARTS = ROOT / "bench" / "scale_parts.py"
LONG_STEPS = 100_000
FORK_EVERY = 20  # one run in twenty is a fork
POLL_S = 0.5
TERMINAL = ("finished", "failed", "killed")
STALL_S = 120.0  # ingest gives up when no point is stored for this long after writers end
KILL_GRACE_S = 5.0
CHART_SAMPLES = 5  # fork children charted one after another; the median is the figure
EXPORT = "export of the long run (csv)"
BEST_REPEATS = 5  # full listings timed with and without each run's best
STOP_GRACE_S = 10.0  # for the daemon to store what is left and exit after SIGTERM


@dataclass
class Figure:
    """One printed line: a measured value (None: not measured) and its verdict."""

    name: str
    value: float | None
    unit: str
    text: str
    target: str = ""
    passed: bool | None = None

    def line(self) -> str:
        verdict = ""
        if self.target:  # no value (no answer in time) misses the target too
            verdict = f"{'PASS' if self.passed else 'MISS'} (target {self.target})"
        return f"{self.name:<36} {self.text:<48} {verdict}".rstrip()


def seconds_text(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


# -- plan ------------------------------------------------------------------------


@dataclass
class Plan:
    parts: list[list[RunSpec]]
    roots: list[RunSpec]  # every run a writer opens, the long one included
    long_name: str

    @property
    def forks(self) -> list[RunSpec]:
        return [s for s in self.roots if s.fork_at is not None]

    def final_steps(self) -> dict[str, int]:
        """The step each run ends at, by name."""
        final = {s.name: s.steps for s in self.roots}
        for s in self.forks:
            assert s.fork_name is not None and s.fork_at is not None
            final[s.fork_name] = s.fork_at + s.steps
        return final



def make_plan(runs: int, steps: int, keys: int, writers: int, long_steps: int) -> Plan:
    """``runs`` runs (one in FORK_EVERY a fork) plus the long run, over ``writers`` parts."""
    forks = max(1, runs // FORK_EVERY) if runs >= 2 else 0
    roots = runs - forks
    parents = {i * roots // forks for i in range(forks)} if forks else set()
    specs = []
    for i in range(roots):
        lr = 2e-4 * (1 + i % 5)
        spec = RunSpec(f"scale-{i:04d}", seed=i, lr=lr, steps=steps, keys=keys)
        if i in parents:
            spec.fork_at, spec.fork_name, spec.fork_lr = steps // 2, f"{spec.name}-fork", lr / 2
        specs.append(spec)
    long_run = RunSpec("scale-long", seed=runs, lr=3e-5, steps=long_steps, keys=1)
    parts: list[list[RunSpec]] = [[] for _ in range(max(1, writers))]
    parts[0].append(long_run)
    for i, spec in enumerate(specs):
        parts[i % len(parts)].append(spec)
    return Plan(parts, [long_run, *specs], long_run.name)


# -- processes -------------------------------------------------------------------


class Bench:
    """One bench run: its state directory, the processes it started, its figures."""

    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        self.args = args
        self.home = home
        self.paths = StatePaths(home)
        self.env = child_env(TRAINTOP_HOME=str(home), TRAINTOP_NO_AUTOSTART="1")
        self.cli_env = child_env(TRAINTOP_HOME=str(home))
        # A user's Python keeps bytecode caches. A shell that sets PYTHONDONTWRITEBYTECODE
        # (this sandbox does) would make every daemon and CLI start compile its modules
        # again, ~0.1 s of a cold `ls` that no user sees. Said in the header line.
        self.compiles = self.cli_env.pop("PYTHONDONTWRITEBYTECODE", None) is not None
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.writers: list[subprocess.Popen[bytes]] = []
        self.runs: dict[str, dict[str, Any]] = {}  # by name, as the daemon last listed them
        self.restarts = 0  # daemons killed because they stopped answering
        # Seconds, for the comparison with TensorBoard (None: not measured).
        self.cold_ls: float | None = None
        self.ours_all: float | None = None
        self.tb_all: float | None = None
        self.plan = make_plan(args.runs, args.steps, args.keys, args.writers, args.long_steps)
        traintop = Path(sys.executable).with_name("traintop")
        self.traintop = [str(traintop)] if traintop.exists() else [sys.executable, "-m", "tui.main"]

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(figure.line(), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    # -- the daemon ---------------------------------------------------------------

    def daemon_pid(self) -> int | None:
        """The pid in engine.pid if that process is this home's daemon."""
        try:
            pid = int(self.paths.lock.read_text().split()[0])
            proc = psutil.Process(pid)
            if "engine.server.daemon" in " ".join(proc.cmdline()) and self._ours(proc):
                return pid
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def _ours(self, proc: psutil.Process) -> bool:
        try:
            return bool(proc.environ().get("TRAINTOP_HOME") == str(self.home))
        except psutil.Error:
            return False

    def start_daemon(self) -> None:
        """Start a daemon as any client does (no-op if one answers)."""
        if self.daemon_pid() is None:
            with Client(self.paths).connect(autostart=True, timeout=60):
                pass

    def stop_daemon(self) -> float | None:
        """SIGTERM (a clean stop, as ``shutdown``), SIGKILL after the grace period.

        Returns seconds to a clean exit, None if it had to be killed.
        """
        pid = self.daemon_pid()
        if pid is None:
            return 0.0
        proc = psutil.Process(pid)
        started = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            ended = _exited(proc, STOP_GRACE_S)
            proc.wait(timeout=STOP_GRACE_S)  # reaped: no zombie left behind
            return ended - started
        except psutil.TimeoutExpired:
            self.note(f"daemon {pid} ignored SIGTERM (busy); killed with SIGKILL")
            proc.kill()
            with contextlib.suppress(psutil.Error):
                proc.wait(timeout=10)
            return None

    def call(self, method: str, timeout: float, **params: Any) -> Any:
        """One request on a fresh connection; TimeoutError if no answer in time."""
        return with_deadline(lambda c: c.call(method, **params), self.paths, timeout)

    # -- steps ----------------------------------------------------------------------

    def ingest(self) -> None:
        plan_file = self.home / "plan.json"
        parts = [[asdict(spec) for spec in part] for part in self.plan.parts]
        plan_file.write_text(json.dumps({"parts": parts}))
        logs = self.home / "writer-logs"
        logs.mkdir()
        for index in range(len(self.plan.parts)):
            with open(logs / f"writer-{index}.log", "wb") as log:
                self.writers.append(subprocess.Popen(
                    [sys.executable, str(PARTS), "write", str(plan_file), str(index)],
                    env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True,
                ))
        daemon = psutil.Process(self.daemon_pid())
        cpu_before, wall_before = sum(daemon.cpu_times()[:2]), time.monotonic()
        deadline = time.monotonic() + self.args.ingest_timeout
        last_progress, last_stored = time.monotonic(), -1
        stored, done_at, slowest, unanswered, polls = 0, None, 0.0, 0, 0
        roots_at: tuple[float, int] | None = None  # (when, points) the writers' runs were done
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            asked = time.monotonic()
            polls += 1
            try:
                listed = with_deadline(lambda c: c.all_runs(), self.paths, self.args.timeout)
            except TimeoutError:
                unanswered += 1
                slowest = max(slowest, time.monotonic() - asked)
                continue
            except EngineUnavailable as exc:
                self.note(f"lost the daemon during ingest: {exc}")
                break
            slowest = max(slowest, time.monotonic() - asked)
            now = time.time()
            self.runs = {r["name"]: r for r in listed}
            stored = self.stored_points()
            if stored != last_stored:
                last_stored, last_progress = stored, time.monotonic()
            # Once the writers are gone every fork child exists (asked for by them).
            writers_done = all(w.poll() is not None for w in self.writers)
            roots = [r for r in listed if not r["parent_id"]]
            if roots_at is None and writers_done and all(r["state"] in TERMINAL for r in roots):
                roots_at = (now, sum(self.points_of(r) for r in roots))
            if writers_done and all(r["state"] in TERMINAL for r in listed):
                done_at = now
                break
            if writers_done and time.monotonic() - last_progress > STALL_S:
                self.note(f"ingest stalled: nothing stored for {STALL_S:.0f} s")
                break
        answered = f"{unanswered} of {polls} got no answer in {self.args.timeout:.0f} s" \
            if unanswered else f"all {polls} answered"
        self.add(Figure("list_runs during ingest", slowest, "s",
                        f"slowest {seconds_text(slowest)}; {answered}"))
        self.check_runs()
        with contextlib.suppress(psutil.Error):
            cpu = sum(daemon.cpu_times()[:2]) - cpu_before
            wall = time.monotonic() - wall_before
            rss = daemon.memory_info().rss / 1e6
            self.add(Figure("daemon during ingest", cpu, "s",
                            f"{cpu:.1f} s CPU in {wall:.1f} s ({100 * cpu / wall:.0f}% of a core); "
                            f"RSS {rss:.0f} MB"))
        first = self.written_time("started-*", min)
        last_written = self.written_time("finished-*", max)
        if done_at is None or first is None:
            self.add(Figure("ingest", None, "points/s", f"not finished after "
                            f"{time.monotonic() - wall_before:.0f} s ({stored:,} points stored)"))
            return
        # The writers' own runs: the fork children start later, each a new Python that
        # imports torch, which would make this a figure of process start-up.
        roots_done, root_points = roots_at or (done_at, stored)
        rate = root_points / (roots_done - first)
        # When the writers ended too, so a reader sees whether the daemon kept up with them.
        writers = f"; writers done at {last_written - first:.1f} s" if last_written else ""
        self.add(Figure("ingest", rate, "points/s", f"{rate:,.0f} points/s ({root_points:,} "
                        f"points of the writers' runs stored {roots_done - first:.1f} s after "
                        f"the first{writers})"))
        forks = sum(1 for r in self.runs.values() if r["parent_id"])
        self.add(Figure("fork children", done_at - first, "s",
                        f"{forks} queued by the daemon, each a Python importing torch: "
                        f"all done {done_at - first:.1f} s after the first point "
                        f"({stored:,} points in all)"))

    def check_runs(self) -> None:
        """Say which runs did not end as planned (a few examples of each kind)."""
        final = self.plan.final_steps()
        unplanned = [n for n in self.runs if n not in final]
        if unplanned:
            self.note(f"{len(unplanned)} runs the plan does not have, e.g. {unplanned[:3]}: "
                      "traintop.init got no attach answer in time and went offline, "
                      "and the daemon imported the run a second time")
        missing = [n for n in final if n not in self.runs]
        if missing:
            self.note(f"{len(missing)} planned runs never listed, e.g. {missing[:3]}")
        off: dict[str, list[str]] = {}
        for name, run in self.runs.items():
            if name in final and (run["state"] != "finished" or run["step"] != final[name]):
                why = run.get("exit_reason") or f"step {run['step']} of {final[name]}"
                off.setdefault(f"{run['state']} ({why})", []).append(name)
        for what, names in off.items():
            self.note(f"{len(names)} runs {what}, e.g. {names[:3]}")

    def written_time(self, pattern: str, pick: Callable[[list[float]], float]) -> float | None:
        """The earliest or latest time the writers left in files named ``pattern``."""
        times = []
        for path in self.home.glob(pattern):
            with contextlib.suppress(ValueError):
                times.append(float(path.read_text()))
        return pick(times) if times else None

    def stored_points(self) -> int:
        """Points stored, from the runs' stored steps (stored with the points, atomically)."""
        return sum(self.points_of(r) for r in self.runs.values())

    @staticmethod
    def points_of(run: dict[str, Any]) -> int:
        """One run's points stored (a fork's own, from its fork step on)."""
        return (int(run["step"]) - int(run["fork_step"] or 0)) * int(run["config"].get("keys", 1))

    def disk_size(self) -> None:
        stopped = self.stop_daemon()
        if stopped is not None:
            self.note(f"daemon stopped cleanly in {seconds_text(stopped)}")
        store = self.paths.store
        with contextlib.closing(sqlite3.connect(store)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = database_bytes(store)
        stored = self.stored_points()
        per_point = size / stored if stored else float("nan")
        self.add(Figure("bytes per point", per_point, "B",
                        f"{per_point:.1f} B ({size / 1e6:,.1f} MB for {stored:,} points)",
                        "<= 20 B", per_point <= 20))

    def ls(self, label: str, target: bool) -> bool:
        """Time ``traintop ls`` in a subprocess; True if it answered."""
        elapsed, out = self.cli(["ls"])
        expected = len(self.runs) + 1
        lines = out.count("\n") if out is not None else 0
        limit = "< 0.5 s" if target else ""
        if elapsed is None:
            self.add(Figure(label, None, "s", f"no answer in {self.args.timeout:.0f} s", limit))
            self.restart_stuck_daemon()
            return False
        if lines != expected:
            self.note(f"{label}: {lines} lines printed, expected {expected}")
        self.add(Figure(label, elapsed, "s", seconds_text(elapsed), limit,
                        elapsed < 0.5 if target else None))
        return True

    def cli(self, argv: list[str]) -> tuple[float | None, str | None]:
        """Seconds from spawn to exit 0 and stdout; (None, None) on a time-out."""
        started = time.perf_counter()
        proc = subprocess.Popen([*self.traintop, *argv], env=self.cli_env, cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=self.args.timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return None, None
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            self.note(f"traintop {' '.join(argv)} exited {proc.returncode}: "
                      f"{err.decode(errors='replace').strip()[-300:]}")
            return None, None
        return elapsed, out.decode(errors="replace")

    def restart_stuck_daemon(self) -> None:
        """A daemon that did not answer stays busy with it: stop it, start a fresh one."""
        self.restarts += 1
        self.stop_daemon()
        try:
            self.start_daemon()
        except Exception as exc:
            self.note(f"could not start a fresh daemon: {exc}")

    def load_order(self) -> list[str]:
        """The runs in a fixed shuffled order, for both loads (a budget cuts both alike)."""
        names = sorted(self.runs)
        random.Random(9).shuffle(names)
        return names

    def load_ours(self) -> None:
        """Every run's full series through the paged ``metrics`` request in columns, the form
        a program loading whole series uses (budget: extrapolate)."""
        order = self.load_order()
        budget = self.args.load_budget
        done: dict[str, Any] = {"points": 0, "runs": 0, "seconds": 0.0}

        def load(client: Client) -> None:
            started = time.perf_counter()
            for name in order:
                if time.perf_counter() - started > budget:
                    break
                done["points"] += sum(
                    len(block["steps"]) for block in client.series_blocks(self.runs[name]["id"])
                )
                done["runs"] += 1
                done["seconds"] = time.perf_counter() - started

        label = "our load, all runs (metrics)"
        try:
            with_deadline(load, self.paths, budget + self.args.timeout)
        except TimeoutError:
            self.add(Figure(label, None, "s", f"no answer in {budget + self.args.timeout:.0f} s"
                            f" ({done['runs']} runs loaded)"))
            self.restart_stuck_daemon()
            return
        seconds, points, runs = done["seconds"], done["points"], done["runs"]
        self.ours_all = self.extrapolate(seconds, points)
        extra = "" if runs == len(self.runs) else f", {runs} of {len(self.runs)} runs, extrapolated"
        self.add(Figure(label, self.ours_all, "s",
                        f"{seconds_text(self.ours_all)} ({points / seconds:,.0f} points/s{extra})"))

    def tui(self) -> None:
        # Fork children, each loaded from nothing: one sample alone was noise on 2 cores.
        forks = [r for r in self.runs.values() if r["parent_id"]][:CHART_SAMPLES]
        charted = forks or [next(iter(self.runs.values()))]
        points = {r["id"]: int(r["step"]) - int(r["fork_step"] or 0) for r in charted}
        argv = [sys.executable, str(PARTS), "tui", str(self.home), str(len(self.runs)),
                ",".join(f"{run_id}:{n}" for run_id, n in points.items()),
                str(self.args.timeout)]
        started = time.time()
        proc = subprocess.Popen(argv, env=self.cli_env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=(1 + len(points)) * self.args.timeout + 30)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, err = proc.communicate()
        events: dict[str, Any] = {}
        selected: dict[str, float] = {}
        drawn: list[float] = []
        for line in out.decode(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                events[event["event"]] = event
                if event["event"] == "selected":
                    selected[event["run"]] = event["time"]
                elif event["event"] == "chart":
                    drawn.append(event["time"] - selected[event["run"]])
        n = len(self.runs)
        if "rows" in events:
            first = events["rows"]["time"] - started
            app_only = events["rows"]["time"] - events["imported"]["time"]
            self.add(Figure(f"TUI first screen, {n} runs", first, "s",
                            f"{seconds_text(first)} (app alone {seconds_text(app_only)})",
                            "< 1 s", first < 1.0))
        else:
            self.add(Figure(f"TUI first screen, {n} runs", None, "s",
                            f"no full table in {self.args.timeout:.0f} s", "< 1 s"))
        label = f"chart of a selected run ({max(points.values()):,} pts)"
        if drawn:
            median = statistics.median(drawn)
            spread = (f" (median of {len(drawn)}: {min(drawn) * 1e3:.0f} to "
                      f"{max(drawn) * 1e3:.0f} ms)" if len(drawn) > 1 else "")
            self.add(Figure(label, median, "s", seconds_text(median) + spread, "< 150 ms",
                            median < 0.15))
        else:
            why = f"not drawn in {self.args.timeout:.0f} s" if "rows" in events else "no table"
            self.add(Figure(label, None, "s", why, "< 150 ms"))
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        if proc.returncode != 0 and tail and "gave_up" not in events:
            self.note(f"TUI probe exited {proc.returncode}: {' | '.join(tail)}")
        if "rows" not in events:
            self.restart_stuck_daemon()

    def export(self) -> None:
        run = self.runs.get(self.plan.long_name)
        if run is None:
            self.add(Figure(EXPORT, None, "s", "no such run"))
            return
        out = self.home / "export.csv"
        elapsed, _ = self.cli(["export", run["id"], "--format", "csv", "-o", str(out)])
        if elapsed is None:
            self.add(Figure(EXPORT, None, "s",
                            f"no answer in {self.args.timeout:.0f} s"))
            self.restart_stuck_daemon()
            return
        with open(out, "rb") as f:
            rows = sum(1 for _ in f) - 1
        if rows != self.args.long_steps:
            self.note(f"export wrote {rows:,} rows, expected {self.args.long_steps:,}")
        self.add(Figure(EXPORT, elapsed, "s",
                        f"{seconds_text(elapsed)} ({rows:,} rows)"))

    def rss(self) -> None:
        pid = self.daemon_pid()
        if pid is None:
            self.add(Figure("daemon RSS", None, "MB", "no daemon running", "< 300 MB"))
            return
        rss = psutil.Process(pid).memory_info().rss / 1e6
        fresh = f" (a daemon started after {self.restarts} stuck ones)" if self.restarts else ""
        self.add(Figure("daemon RSS", rss, "MB", f"{rss:.0f} MB{fresh}", "< 300 MB", rss < 300))

    def tensorboard(self) -> None:
        """The same scalars through tensorboardX and EventAccumulator, run by run."""
        from scale_parts import load_events, write_events

        load_events(self.home)  # imports TensorBoard before the clock runs (an empty dir)
        logdir = self.home / "tensorboard"
        loaded_s, points, runs, size = 0.0, 0, 0, 0
        for name in self.load_order():
            if loaded_s > self.args.load_budget:
                break
            run = self.runs[name]
            cfg = run["config"]  # a fork's holds its overrides
            steps = range(int(run["fork_step"] or 0), int(run["step"]))
            size += write_events(logdir / name, int(cfg["keys"]), steps, int(cfg["seed"]),
                                 float(cfg["lr"]))
            seconds, count = load_events(logdir / name)
            loaded_s += seconds
            points += count
            runs += 1
            shutil.rmtree(logdir / name)  # keep the disk use to one run's events
        self.tb_all = self.extrapolate(loaded_s, points)
        extra = "" if runs == len(self.runs) else f", {runs} of {len(self.runs)} runs, extrapolated"
        self.add(Figure("TensorBoard load, all runs", self.tb_all, "s",
                        f"{seconds_text(self.tb_all)} ({points / loaded_s:,.0f} points/s{extra})"))
        per_point = size / points if points else float("nan")
        self.add(Figure("TensorBoard bytes per point", per_point, "B", f"{per_point:.1f} B"))

    def extrapolate(self, seconds: float, points: int) -> float:
        """Seconds for every stored point at the rate of a load of ``points`` in ``seconds``."""
        return seconds * self.stored_points() / points if points else float("nan")

    def compare(self) -> None:
        if self.cold_ls is None or self.ours_all is None or self.tb_all is None:
            missing = "cold ls" if self.cold_ls is None else "a load"
            # The loads alone still say something when only the cold ls failed.
            alone = (f"; the loads alone: {self.tb_all / self.ours_all:.1f}x"
                     if self.ours_all and self.tb_all else "")
            self.add(Figure("ours vs TensorBoard", None, "x", f"not measured ({missing} got no "
                            f"answer){alone}", ">= 10x"))
            return
        ours_total = self.cold_ls + self.ours_all
        ratio = self.tb_all / ours_total
        self.add(Figure("ours vs TensorBoard", ratio, "x",
                        f"{ratio:.1f}x as fast (cold ls + load: {seconds_text(ours_total)})",
                        ">= 10x", ratio >= 10))

    def best_cost(self) -> None:
        """What each run's ``best`` (lowest value per metric, as the TUI asks for it) adds
        to a full listing."""
        def listing(best: bool) -> float:
            def pages(client: Client) -> None:
                client.all_pages("list_runs", "runs", best=best)
            timings = []
            for _ in range(BEST_REPEATS):
                started = time.monotonic()
                with_deadline(pages, self.paths, self.args.timeout)
                timings.append(time.monotonic() - started)
            return sorted(timings)[len(timings) // 2]
        try:
            without, with_best = listing(False), listing(True)
        except TimeoutError:
            self.add(Figure("list_runs with best", None, "s", "no answer in time"))
            return
        runs = len(self.runs)
        self.add(Figure("list_runs with best", with_best - without, "s",
                        f"+{seconds_text(max(0.0, with_best - without))} for {runs} runs "
                        f"({seconds_text(with_best)} against {seconds_text(without)}, "
                        f"median of {BEST_REPEATS})"))

    def steps(self) -> list[Callable[[], object]]:
        """What the bench does, in order."""
        return [self.start_daemon, self.ingest, self.disk_size, self.cold_and_warm_ls,
                self.start_daemon, self.best_cost, self.load_ours, self.tui, self.export, self.rss,
                self.stop_daemon, self.tensorboard, self.compare]

    def cold_and_warm_ls(self) -> None:
        if self.ls("cold ls (daemon stopped)", target=True):
            self.cold_ls = self.figures[-1].value
            self.ls("warm ls", target=False)
            elapsed, out = self.cli(["ls", "-G"])
            summary = (out or "").strip().splitlines()[-1:] or ["no answer"]
            self.add(Figure("warm ls -G (a row a setting)", elapsed, "s",
                            f"{seconds_text(elapsed)} {summary[0]}" if elapsed is not None
                            else f"no answer in {self.args.timeout:.0f} s"))
        else:
            self.add(Figure("warm ls", None, "s", "skipped: cold ls got no answer"))

    def cleanup(self) -> None:
        """End every process carrying this TRAINTOP_HOME: writers, daemon, shims, workers."""
        for writer in self.writers:
            if writer.poll() is None:
                kill_group(writer)
        with contextlib.suppress(Exception):
            self.stop_daemon()
        ours = [p for p in psutil.process_iter() if p.pid != os.getpid() and self._ours(p)]
        for proc in ours:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(ours, timeout=KILL_GRACE_S)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if ours:
            self.note(f"ended {len(ours)} leftover processes ({len(alive)} with SIGKILL)")


def _exited(proc: psutil.Process, timeout: float) -> float:
    """When ``proc`` ended: gone, or a zombie (the daemon is nobody's child here, and how
    soon init reaps it is init's business, not the daemon's). TimeoutExpired if not."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return time.perf_counter()
        except psutil.NoSuchProcess:
            return time.perf_counter()
        time.sleep(0.005)
    raise psutil.TimeoutExpired(timeout, proc.pid)


def with_deadline(work: Callable[[Client], Any], paths: StatePaths, seconds: float) -> Any:
    """``work(client)`` on a fresh connection; TimeoutError after ``seconds``.

    The client has no read timeout of its own, so the work runs on a thread and
    the socket is shut down under it when time is up.
    """
    client = Client(paths)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            client.connect(autostart=False, timeout=seconds)
            outcome["value"] = work(client)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with contextlib.suppress(OSError, AttributeError):
            client.sock.shutdown(2)  # type: ignore[union-attr]
        raise TimeoutError(f"no answer in {seconds:.0f} s")
    client.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process group started with start_new_session, SIGKILL if it stays."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="traintop-scale-"))
    bench = Bench(args, home)
    plan = bench.plan
    total = sum(s.steps * s.keys for s in [*plan.roots, *plan.forks])
    print(f"scale: {args.runs} runs x {args.steps:,} steps x {args.keys} keys "
          f"({len(plan.forks)} of them forks) + 1 run of {args.long_steps:,} steps x 1 key, "
          f"~{total:,} points; {len(plan.parts)} writer processes; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    if bench.compiles:
        print("  note: PYTHONDONTWRITEBYTECODE dropped for the processes timed here "
              "(bytecode caches, as a user has them)", flush=True)
    try:
        for step in bench.steps():
            try:
                step()
            except Exception as exc:  # one broken step must not hide the others' figures
                bench.note(f"{step.__name__} failed: {type(exc).__name__}: {exc}")
    finally:
        bench.cleanup()
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return {
        "runs": args.runs, "steps": args.steps, "keys": args.keys, "writers": len(plan.parts),
        "cpus": os.cpu_count(), "figures": [asdict(f) for f in bench.figures],
        "notes": bench.notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20 runs x 2,000 steps (for CI)")
    parser.add_argument("--long-steps", type=int, default=LONG_STEPS,
                        help="steps of the extra one-key run that is exported")
    parser.add_argument("--writers", type=int, default=2, help="writer processes")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a step (ls, TUI, export, a request) may take")
    parser.add_argument("--ingest-timeout", type=float, default=1800.0)
    parser.add_argument("--load-budget", type=float, default=120.0,
                        help="seconds each full-series load may take before it is extrapolated")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.steps = 20, 2_000
    result = run_bench(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
