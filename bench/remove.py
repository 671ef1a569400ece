"""What ``traintop rm`` costs, and whether it cleans up.  Run: ``.venv/bin/python bench/remove.py``.

The user's case: a list of hundreds of ended runs, most of them not worth
keeping, and perhaps one very long run, removed for good. Removal drops a run's
row at once, deletes its files on a thread and its points a slice at each of
the daemon's ticks (``engine.server.removal``); this measures whether the
daemon still answers at once while it does that, and checks nothing is left.

Before the daemon starts, a fresh state directory (``TRAINTOP_HOME``) gets
``--runs`` finished runs of ``--points`` ``loss`` points each (default 500 x
2,000), one finished run of ``--big`` points (default 1,000,000), all written
straight into the store, and a run directory for each with a fake checkpoint of
``--ckpt-kb`` KB. Then, with a thread sending a ``ping`` every 10 ms all along:

- baseline: ping round trips over ``--baseline-s`` seconds, the daemon idle
  (median, 99th percentile, max);
- big run: one ``remove`` request for it; the request's latency, the time
  until its last point is deleted (the store polled read-only for points whose
  run is gone), and the pings over that time, p99 against the baseline's;
- ``traintop rm``: 80% of the small runs (``--fraction``) in one command, the
  real CLI in a subprocess (its start-up counted); its wall time, per run, the
  pings over it; then the time until their points are gone too;
- checks, PASS or FAIL (a FAIL exits 1): the runs listed are exactly the ones
  kept, no removed run's directory is left in ``runs/``, ``trash/`` ends empty,
  and no point, loose point or series of a removed run is left in the store;
- the room given back: once the points are gone, the engine moves the store's
  free pages out a slice a tick (incremental vacuum) until at most
  ``RECLAIM_FLOOR`` are left; the time that takes, the pings over it, and the
  store's files and pages before and after (a FAIL if more free pages are left).

The daemon is stopped at the end, and the state directory removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.live_runs import in_fresh_home  # noqa: E402
from engine.client.client import Client  # noqa: E402
from engine.rundir.paths import StatePaths, child_env, database_bytes, private_opener  # noqa: E402
from engine.server.store import Store  # noqa: E402
from engine.server.store_metrics import RECLAIM_FLOOR  # noqa: E402

PING_EVERY_S = 0.01
POLL_S = 0.02  # how often the store is looked at for points still to delete
BATCH_POINTS = 100_000  # points a transaction while the store is filled
CREATED = 1.7e9

# Points of runs whose row is gone: chunks, loose points, and series rows (the last
# to go: they mark a removed run as still to purge).
ORPHANS = {
    table: f"SELECT count(*) FROM {table} WHERE run NOT IN (SELECT rid FROM runs)"
    for table in ("chunks", "recent", "series")
}


class Pinger(threading.Thread):
    """Sends a ``ping`` every PING_EVERY_S on a connection of its own; keeps each round
    trip with the moment it was sent (``time.monotonic``)."""

    def __init__(self, paths: StatePaths) -> None:
        super().__init__(name="pinger", daemon=True)
        self.paths = paths
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.paths).connect(autostart=False) as client:
                next_at = time.monotonic()
                while not self.stopping.is_set():
                    sent, asked = time.monotonic(), time.perf_counter()
                    client.call("ping")
                    self.samples.append((sent, time.perf_counter() - asked))
                    next_at += PING_EVERY_S
                    # After a slow answer, the next ping goes at once, not in a burst.
                    next_at = max(next_at, time.monotonic())
                    self.stopping.wait(next_at - time.monotonic())
        except BaseException as exc:
            self.error = exc

    def between(self, start: float, end: float) -> list[float]:
        """The round trips of the pings sent from ``start`` to ``end``."""
        return [rtt for sent, rtt in list(self.samples) if start <= sent <= end]

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def p99(values: list[float]) -> float:
    """The 99th percentile (as the other benches take it)."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def pings_text(rtts: list[float]) -> str:
    if not rtts:
        return "no ping answered"
    return (f"ping median {ms(statistics.median(rtts))}, p99 {ms(p99(rtts))}, "
            f"max {ms(max(rtts))} ({len(rtts)} pings)")


def ratio(rtts: list[float], baseline: list[float]) -> str:
    return f"p99 {p99(rtts) / p99(baseline):.1f}x the baseline's" if rtts and baseline else ""


def mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"


# -- the store, filled before the daemon starts --------------------------------------


def add_run(store: Store, paths: StatePaths, run_id: str, points: int, n: int,
            checkpoint: bytes) -> None:
    """A finished run of ``points`` ``loss`` points, and its directory with a checkpoint."""
    store.create_run(
        {"id": run_id, "name": f"bench-{run_id}", "workload": "synthetic", "config": {"n": n},
         "state": "finished", "device": "cpu", "cwd": "/", "created": CREATED + n,
         "released": False, "total_steps": points},
        "made by bench/remove.py",
    )
    for start in range(0, points, BATCH_POINTS):
        steps = range(start, min(points, start + BATCH_POINTS))
        batch = [[s, "loss", 1.0 / (1 + s), CREATED + n + s * 0.01] for s in steps]
        store.add_metrics(run_id, batch, 0, steps[-1])
    store.seal_metrics(run_id)
    rundir = paths.run_dir(run_id)
    rundir.checkpoints.mkdir(mode=0o700, parents=True)
    with open(rundir.checkpoints / "final.pt", "wb", opener=private_opener) as f:
        f.write(checkpoint)
    with open(rundir.stdout, "wb", opener=private_opener) as f:
        f.write(b"training done\n")


def build(paths: StatePaths, args: argparse.Namespace) -> tuple[list[str], str]:
    """The small runs' ids and the big run's, all in the store."""
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.runs.mkdir(mode=0o700, exist_ok=True)
    checkpoint = os.urandom(args.ckpt_kb * 1024)
    store = Store(paths.store)
    try:
        big = "big000"
        add_run(store, paths, big, args.big, 0, checkpoint)
        small = [f"run{i:05d}" for i in range(args.runs)]
        for n, run_id in enumerate(small, start=1):
            add_run(store, paths, run_id, args.points, n, checkpoint)
    finally:
        store.close()
    return small, big


def read_only(paths: StatePaths) -> sqlite3.Connection:
    """A connection that only reads the daemon's store (WAL: it never blocks the daemon)."""
    return sqlite3.connect(f"file:{paths.store}?mode=ro", uri=True, timeout=10)


def orphans(db: sqlite3.Connection) -> dict[str, int]:
    return {table: int(db.execute(query).fetchone()[0]) for table, query in ORPHANS.items()}


def wait_purged(db: sqlite3.Connection, timeout: float) -> float | None:
    """Poll until no chunk of a removed run is left; when (monotonic), None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.execute(ORPHANS["chunks"]).fetchone()[0] == 0:
            return time.monotonic()
        time.sleep(POLL_S)
    return None


def wait_reclaimed(db: sqlite3.Connection, timeout: float) -> float | None:
    """Poll until the store keeps at most RECLAIM_FLOOR free pages; when (monotonic),
    None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(db.execute("PRAGMA freelist_count").fetchone()[0]) <= RECLAIM_FLOOR:
            return time.monotonic()
        time.sleep(POLL_S)
    return None


def store_size(paths: StatePaths, db: sqlite3.Connection) -> tuple[int, int, int]:
    """The bytes of the store's files (main + -wal), of its pages, and of its free pages."""
    files = database_bytes(paths.store)
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    return files, pages * page_size, free * page_size


# -- the bench ------------------------------------------------------------------------


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str) -> None:
        if not ok:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'}  {name:<24} {detail}")


def bench(args: argparse.Namespace, home: Path) -> int:
    paths = StatePaths(home)
    started = time.perf_counter()
    small, big = build(paths, args)
    total_points = args.big + args.runs * args.points
    print(f"store: {args.runs} runs x {args.points:,} points + 1 run of {args.big:,} points "
          f"({total_points:,} points), a {args.ckpt_kb} KB checkpoint each; built in "
          f"{time.perf_counter() - started:.1f} s; {psutil.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    os.environ["TRAINTOP_HOME"] = str(home)
    client = Client(paths).connect()  # starts the daemon
    pinger = Pinger(paths)
    db: sqlite3.Connection | None = None
    checks = Checks()
    try:
        client.call("ping")
        db = read_only(paths)
        size_before = store_size(paths, db)
        pinger.start()
        time.sleep(0.5)  # the pinger's connection is up
        base_start = time.monotonic()
        time.sleep(args.baseline_s)
        baseline = pinger.between(base_start, time.monotonic())
        print(f"baseline        {pings_text(baseline)}", flush=True)

        # One big run: the request, then its points a slice a tick.
        asked = time.monotonic()
        client.call("remove", run=big)
        answered = time.monotonic()
        purged = wait_purged(db, args.timeout)
        end = purged if purged is not None else time.monotonic()
        during = pinger.between(asked, end)
        purge_text = (f"all {args.big:,} points deleted {end - asked:.2f} s after the request"
                      if purged is not None else f"points NOT all deleted in {args.timeout:.0f} s")
        print(f"rm big run      request {ms(answered - asked)}; {purge_text} "
              f"({args.big / (end - asked):,.0f} points/s)", flush=True)
        print(f"  while purging {pings_text(during)}; {ratio(during, baseline)}", flush=True)

        # Most small runs, through the real command line, in one command.
        removed = small[: round(len(small) * args.fraction)]
        kept = small[len(removed):]
        env = child_env(TRAINTOP_HOME=str(home))
        asked = time.monotonic()
        cli = subprocess.run(
            [sys.executable, "-m", "engine.client.cli", "rm", *removed], env=env, cwd=ROOT,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=args.timeout,
        )
        answered = time.monotonic()
        during = pinger.between(asked, answered)
        wall = answered - asked
        print(f"traintop rm     {len(removed)} runs in {wall:.2f} s "
              f"({wall / max(1, len(removed)) * 1000:.1f} ms a run, the CLI's start-up "
              f"included); exit {cli.returncode}", flush=True)
        print(f"  while it ran  {pings_text(during)}; {ratio(during, baseline)}", flush=True)
        purged = wait_purged(db, args.timeout)
        end = purged if purged is not None else time.monotonic()
        tail = pinger.between(answered, end)
        points = len(removed) * args.points
        print(f"  then          their {points:,} points deleted {end - answered:.2f} s after "
              f"the command ended; {pings_text(tail)}", flush=True)
        if cli.returncode != 0:
            print(cli.stderr.strip(), file=sys.stderr)
        lines = cli.stdout.strip().splitlines()
        if lines:
            print(f"  its last line: {lines[-1]}")

        # What is left.
        listed = [r["id"] for r in client.all_runs()]
        checks.check("exit status", cli.returncode == 0, f"traintop rm exited {cli.returncode}")
        checks.check("runs left", sorted(listed) == sorted(kept),
                     f"{len(listed)} listed, {len(kept)} kept"
                     + ("" if sorted(listed) == sorted(kept) else
                        f"; unexpected {sorted(set(listed) ^ set(kept))[:5]}"))
        left = [r for r in [big, *removed] if paths.run_dir(r).path.exists()]
        checks.check("run directories", not left,
                     f"{len(left)} of {len(removed) + 1} removed runs' directories in runs/")
        deadline = time.monotonic() + args.trash_wait
        while True:
            trash = list(paths.trash.iterdir()) if paths.trash.exists() else []
            if not trash or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        checks.check("trash emptied", not trash, f"{len(trash)} entries left in trash/")
        kept_dirs = [r for r in kept if not paths.run_dir(r).checkpoints.joinpath(
            "final.pt").exists()]
        checks.check("kept runs' files", not kept_dirs,
                     f"{len(kept_dirs)} of {len(kept)} kept runs lost their checkpoint")
        found = orphans(db)
        checks.check("orphan points", not any(found.values()),
                     ", ".join(f"{n} in {table}" for table, n in found.items()))

        # The room their points took, given back to the disk while the daemon runs.
        asked = time.monotonic()
        reclaimed = wait_reclaimed(db, args.timeout)
        end = reclaimed if reclaimed is not None else time.monotonic()
        during = pinger.between(asked, end)
        print(f"room given back {end - asked:.2f} s after the points were gone; "
              f"{pings_text(during)}; {ratio(during, baseline)}", flush=True)
        time.sleep(1.0)  # the last moved pages leave the WAL at the next checkpoint
        files0, pages0, free0 = size_before
        files1, pages1, free1 = store_size(paths, db)
        print(f"store before    {mib(files0)} of files, {mib(pages0)} of pages, "
              f"{mib(free0)} free")
        print(f"store after     {mib(files1)} of files (with the WAL), {mib(pages1)} of "
              f"pages, {mib(free1)} free")
        checks.check("room given back", reclaimed is not None,
                     f"{free1 // 4096} free pages left (at most {RECLAIM_FLOOR} kept)")
    finally:
        pinger.stop()
        if db is not None:
            db.close()
        stop_daemon(client, paths, home)
    if pinger.error is not None:
        print(f"FAIL  the pinger stopped: {pinger.error!r}")
        checks.failed += 1
    return 1 if checks.failed else 0


def ours(home: Path) -> list[psutil.Process]:
    """Every process whose TRAINTOP_HOME is ``home`` (the daemon), this one aside."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get("TRAINTOP_HOME") == str(home):
                found.append(proc)
    return found


def stop_daemon(client: Client, paths: StatePaths, home: Path) -> None:
    """``shutdown``; whatever of this home still runs after a while is killed."""
    with contextlib.suppress(Exception):
        client.call("shutdown")
    client.close()
    deadline = time.monotonic() + 15
    while ours(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in ours(home):
        with contextlib.suppress(psutil.Error):
            proc.kill()
            print(f"  note: killed {proc.pid}, still running after shutdown")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="small finished runs")
    parser.add_argument("--points", type=int, default=2000, help="points of each small run")
    parser.add_argument("--big", type=int, default=1_000_000, help="points of the big run")
    parser.add_argument("--ckpt-kb", type=int, default=64, help="each run's fake checkpoint")
    parser.add_argument("--fraction", type=float, default=0.8,
                        help="the share of small runs removed by one traintop rm")
    parser.add_argument("--baseline-s", type=float, default=3.0)
    parser.add_argument("--trash-wait", type=float, default=10.0,
                        help="seconds trash/ may take to empty")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)
    return in_fresh_home("traintop-remove-", args.keep, lambda home: bench(args, home))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
