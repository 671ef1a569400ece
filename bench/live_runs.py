"""What hundreds of live runs cost the daemon.  Run: ``.venv/bin/python bench/live_runs.py``.

The user's case: a few hundred runs training at once (a sweep over a cluster of
small jobs, or many scripts on one box), each logging now and then. The daemon
follows every live run at every tick; this measures what that costs it and
whether it still answers at once.

``--runs`` runs (default 500) are attached with ``traintop.init`` from
``--writers`` processes; each run logs one ``loss`` point ``--rate`` times a second.
On a fresh state directory, in one run of this script:

- attach: the wall time until every run is attached, and per run;
- live: over ``--seconds``, the daemon's CPU time (% of one core), the round
  trip of a ``ping`` sent every 0.1 s (median and 99th percentile), and the
  bytes a second it writes to the disk (the store's commits and checkpoints);
- baseline: the same daemon once every run has finished (the same runs in the
  store, none live), measured the same way;
- then the ratios: CPU per live run (live minus baseline, in microseconds of
  CPU per run per second), the ping p99 live against the baseline's, and the
  bytes written to the disk per point logged;
- and whether every point logged was stored.

With ``--subscribers N``, N processes stay subscribed to runs, metrics and
telemetry all along, as the TUI does, and the live and baseline lines also say
how many frames (and bytes of JSON) a second each subscriber got. With
``--tui``, the real TUI runs on a pseudo-terminal (120x40, as in
``bench/tui_idle.py``) all along; the lines also say its CPU and the bytes a
second it writes to its terminal (what an SSH session carries).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tui_idle import PtyApp, ours, p99  # noqa: E402
from engine.client.client import Client  # noqa: E402
from engine.rundir.paths import StatePaths, child_env  # noqa: E402

TERMINAL = {"finished", "failed", "killed"}
PING_EVERY_S = 0.1


def write(count: int, rate: float, prefix: str, stop: Path, attached: Path) -> int:
    """A writer process: attach ``count`` runs, log ``rate`` points/s each until ``stop``."""
    import traintop

    runs = [traintop.init(config={"i": i}, name=f"{prefix}-{i:04d}") for i in range(count)]
    steps = [run.steps(10**9) for run in runs]
    attached.write_text(f"{time.time()!r}\n")
    logged = 0
    next_at = time.monotonic()
    while not stop.exists():
        for run, step_iter in zip(runs, steps, strict=True):
            step = next(step_iter)
            run.log(loss=1.0 / (1 + step))
            logged += 1
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    for run in runs:
        run.flush()
        run.mark_finished()
        run.record_exit(0)  # type: ignore[attr-defined]
    stop.with_name(f"{prefix}.logged").write_text(str(logged))
    return 0


def subscribe(stop: Path, counts: Path) -> int:
    """A subscriber process: take every event a TUI takes until ``stop``; count them."""
    frames = size = 0
    with Client().connect(autostart=False) as client:
        client.subscribe(["runs", "metrics", "telemetry"])
        written = time.monotonic()
        while not stop.exists():
            event = client.next_event(timeout=0.2)
            if event is not None:
                frames += 1
                size += len(json.dumps(event, separators=(",", ":")))
            if time.monotonic() - written > 0.2:
                written = time.monotonic()
                counts.with_suffix(".tmp").write_text(f"{frames} {size}")
                counts.with_suffix(".tmp").replace(counts)
    return 0


def tui_use(tui: PtyApp | None) -> tuple[float, int]:
    """The TUI's CPU seconds so far and the bytes it has written to its terminal."""
    if tui is None:
        return 0.0, 0
    return sum(psutil.Process(tui.proc.pid).cpu_times()[:2]), tui.byte_count()


def received(counts: list[Path]) -> tuple[int, int]:
    """Frames and bytes the subscribers have taken so far, together."""
    found = [tuple(map(int, c.read_text().split())) if c.exists() else (0, 0) for c in counts]
    return sum(f for f, _ in found), sum(b for _, b in found)


def measure(daemon: psutil.Process, paths: StatePaths, seconds: float,
            counts: list[Path], tui: PtyApp | None) -> tuple[float, list[float], float, str]:
    """The daemon's CPU (% of a core) over ``seconds``, the ping round trips (s), the
    bytes a second it wrote to the disk (the store: what a commit costs), and what each
    subscriber got a second and the TUI used and wrote."""
    pings: list[float] = []
    with Client(paths).connect(autostart=False) as client:
        disk0 = daemon.io_counters().write_bytes
        cpu0, wall0 = sum(daemon.cpu_times()[:2]), time.monotonic()
        frames0, bytes0 = received(counts)
        tui_cpu0, tui_bytes0 = tui_use(tui)
        while time.monotonic() - wall0 < seconds:
            asked = time.perf_counter()
            client.call("ping")
            pings.append(time.perf_counter() - asked)
            time.sleep(PING_EVERY_S)
        cpu = sum(daemon.cpu_times()[:2]) - cpu0
        wall = time.monotonic() - wall0
        disk = daemon.io_counters().write_bytes - disk0
        frames1, bytes1 = received(counts)
        tui_cpu1, tui_bytes1 = tui_use(tui)
    got = ""
    if tui is not None:
        got += (f"; TUI {100 * (tui_cpu1 - tui_cpu0) / wall:.1f}% of a core, "
                f"{(tui_bytes1 - tui_bytes0) / wall:,.0f} B/s to its terminal")
    if counts:
        each = len(counts) * wall
        got = (f"; each subscriber {(frames1 - frames0) / each:,.0f} frames/s, "
               f"{(bytes1 - bytes0) / each / 1024:,.1f} KiB/s")
    return 100 * cpu / wall, pings, disk / wall, got


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def bench(args: argparse.Namespace, home: Path) -> int:
    paths = StatePaths(home)
    os.environ["TRAINTOP_HOME"] = str(home)
    with Client(paths).connect() as client:  # starts the daemon
        client.call("ping")
    daemon = psutil.Process(int(paths.lock.read_text().strip()))
    stop = home / "stop"
    per_writer = [args.runs // args.writers + (i < args.runs % args.writers)
                  for i in range(args.writers)]
    env = child_env(TRAINTOP_HOME=str(home))
    counts = [home / f"s{i}.counts" for i in range(args.subscribers)]
    unsubscribe = home / "unsubscribe"  # the subscribers stay for the baseline too
    subscribers = [
        subprocess.Popen([sys.executable, __file__, "subscribe", str(unsubscribe), str(c)],
                         env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        for c in counts
    ]
    tui = ours(home) if args.tui else None
    started = time.time()
    writers = [
        subprocess.Popen(
            [sys.executable, __file__, "write", str(n), str(args.rate), f"w{i}", str(stop),
             str(home / f"w{i}.attached")],
            env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        for i, n in enumerate(per_writer)
    ]
    try:
        marks = [home / f"w{i}.attached" for i in range(args.writers)]
        deadline = time.monotonic() + args.timeout
        while not all(m.exists() for m in marks):
            if time.monotonic() > deadline or any(w.poll() is not None for w in writers):
                print("attach: not every writer attached its runs", file=sys.stderr)
                return 1
            time.sleep(0.1)
        attach_s = max(float(m.read_text()) for m in marks) - started
        print(f"{args.runs} runs from {args.writers} writers, {args.rate:g} points/s each; "
              f"{psutil.cpu_count()} CPUs")
        print(f"attach          {attach_s:6.1f} s for {args.runs} runs "
              f"({attach_s / args.runs * 1000:.0f} ms a run, writers' start-up included)")
        time.sleep(2.0)  # the first points of every run reach the store
        live_cpu, live_pings, live_disk, live_got = measure(
            daemon, paths, args.seconds, counts, tui)
        stop.write_text("")
        for w in writers:
            w.wait(args.timeout)
        with Client(paths).connect(autostart=False) as client:
            deadline = time.monotonic() + args.timeout
            while True:
                runs = client.all_runs()
                if all(r["state"] in TERMINAL for r in runs) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            stored = sum(len(client.all_metrics(r["id"], "loss")) for r in runs)
        logged = sum(int((home / f"w{i}.logged").read_text()) for i in range(args.writers))
        idle_cpu, idle_pings, idle_disk, idle_got = measure(
            daemon, paths, args.seconds, counts, tui)
    finally:
        stop.write_text("")
        unsubscribe.write_text("")
        for w in [*writers, *subscribers]:
            if w.poll() is None:
                w.kill()
        if tui is not None:
            tui.close()
        try:
            with Client(paths).connect(autostart=False) as client:
                client.call("shutdown")
        except Exception:
            daemon.kill()
    print(f"live            daemon {live_cpu:5.1f}% of a core; ping median "
          f"{ms(statistics.median(live_pings))}, p99 {ms(p99(live_pings))}; "
          f"disk {live_disk / 1024:,.0f} KiB/s{live_got}")
    print(f"baseline        daemon {idle_cpu:5.1f}% of a core; ping median "
          f"{ms(statistics.median(idle_pings))}, p99 {ms(p99(idle_pings))}; "
          f"disk {idle_disk / 1024:,.0f} KiB/s{idle_got} (the same runs, finished)")
    per_run_us = (live_cpu - idle_cpu) / 100 / args.runs * 1e6
    per_point = (live_disk - idle_disk) / (args.runs * args.rate)
    print(f"cost per run    {per_run_us:.0f} us of daemon CPU per live run per second; "
          f"ping p99 {p99(live_pings) / p99(idle_pings):.1f}x the baseline's; "
          f"{per_point:,.0f} bytes written to disk per point")
    lost = logged - stored
    print(f"points          {stored:,} stored of {logged:,} logged"
          + ("" if lost == 0 else f"  ({lost:,} MISSING)"))
    return 0 if lost == 0 else 1


def main(argv: list[str]) -> int:
    if argv and argv[0] == "write":
        count, rate, prefix, stop, attached = argv[1:]
        return write(int(count), float(rate), prefix, Path(stop), Path(attached))
    if argv and argv[0] == "subscribe":
        return subscribe(Path(argv[1]), Path(argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1.0, help="points a second, each run")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--subscribers", type=int, default=0,
                        help="clients subscribed as the TUI is (runs, metrics, telemetry)")
    parser.add_argument("--tui", action="store_true", help="the real TUI on a pty, all along")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)
    return in_fresh_home("traintop-live-", args.keep, lambda home: bench(args, home))


def in_fresh_home(prefix: str, keep: bool, body: Callable[[Path], int]) -> int:
    """``body`` on a new private state directory, removed after it unless ``keep``."""
    home = Path(tempfile.mkdtemp(prefix=prefix))  # made 0700
    try:
        return body(home)
    finally:
        if keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
