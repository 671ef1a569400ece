"""What forking one run into many variants costs the daemon.
Run: ``.venv/bin/python bench/fork_variants.py``.

``traintop fork RUN lr=A,B,...`` sends one ``fork_variants`` request: every child is
made, checked and queued in it, from one checkpoint. The baseline, in the same run
and on the same state directory, is the same children made one ``fork`` request at a
time (what a script looping over ``traintop fork`` does). The parent is a finished
synthetic run (its final checkpoint serves every fork), and the forks wait in a
paused queue, so no worker starts and the daemon's own work is all that is timed.

For each size (``--sizes``, default 50 200 500): the request's wall time, against the
loop of single forks; and the longest a ``list_runs`` from a second connection (sent
every 10 ms all along) waited while the forks were made: the daemon's answer to
anyone else at that moment. The daemon is stopped at the end and the state directory
removed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.live_runs import in_fresh_home  # noqa: E402
from bench.remove import stop_daemon  # noqa: E402
from engine.client.client import Client  # noqa: E402
from engine.rundir.paths import StatePaths  # noqa: E402

QUEUE = "held"
PING_EVERY_S = 0.01


class Pinger:
    """``list_runs`` every 10 ms on its own connection; the slowest answer in a window."""

    def __init__(self, paths: StatePaths) -> None:
        self.client = Client(paths).connect()
        self.times: list[tuple[float, float]] = []  # (sent at, seconds to answer)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            sent = time.perf_counter()
            self.client.call("list_runs")
            self.times.append((sent, time.perf_counter() - sent))
            time.sleep(PING_EVERY_S)

    def slowest(self, since: float) -> float:
        return max((took for sent, took in self.times if sent + took >= since), default=0.0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()


def variants(n: int, size: int) -> list[list[str]]:
    """``n`` distinct lrs (each size's own, so no fork is alike another)."""
    return [[f"lr={1e-3 * (1 + size * 1e-3 + i * 1e-6)!r}", "steps=41"] for i in range(n)]


def measure(home: Path, sizes: list[int]) -> int:
    os.environ["TRAINTOP_HOME"] = str(home)
    paths = StatePaths(home)
    client = Client(paths).connect()
    try:
        client.call("queue_set", name=QUEUE, paused=True)
        parent = client.call("start", workload="synthetic", overrides=["steps=40"],
                             name="parent", cwd=str(ROOT))
        while client.call("get_run", run=parent["id"])["state"] != "finished":
            time.sleep(0.1)
        pinger = Pinger(paths)
        time.sleep(0.5)
        print(f"{'forks':>6}  {'one request':>12}  {'one a fork':>11}  {'ratio':>6}  "
              f"{'slowest list_runs (one / each)':>30}")
        for size in sizes:
            began = time.perf_counter()
            made = client.call("fork_variants", run=parent["id"], variants=variants(size, size),
                               names=[f"v{size}-{i}" for i in range(size)],
                               sweep=f"v{size}", queue=QUEUE)["runs"]
            together = time.perf_counter() - began
            waited_together = pinger.slowest(began)
            assert len(made) == size and len({r["launch_from"] for r in made}) == 1
            began = time.perf_counter()
            for i, overrides in enumerate(variants(size, size + 1)):
                client.call("fork", run=parent["id"], overrides=overrides,
                            name=f"s{size}-{i}", queue=QUEUE)
            apart = time.perf_counter() - began
            waited_apart = pinger.slowest(began)
            print(f"{size:>6}  {together:>10.3f} s  {apart:>9.3f} s  {together / apart:>5.2f}x  "
                  f"{waited_together * 1e3:>14.0f} ms / {waited_apart * 1e3:.0f} ms")
        pinger.close()
    finally:
        stop_daemon(client, paths, home)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args(argv)
    return in_fresh_home("traintop-bench-forks-", args.keep,
                         lambda home: measure(home, args.sizes))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
