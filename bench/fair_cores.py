"""Does a run keep its share of the cores beside its fork?  Run: ``bench/fair_cores.py``.

The user's case (issue 12): a character-level GPT script attached with
``traintop.init`` (``bench/chargpt_train.py``) is started from a plain shell,
without ``OMP_WAIT_POLICY`` in its environment, on a scratch state directory
with its own daemon. Measured, each over the same window length:

1. the script alone (its solo speed);
2. after ``traintop fork``: the parent and the fork side by side;
3. the parent killed: the fork alone (its solo speed).

Each run's speed beside the other is printed as a ratio of its own solo
speed, and PASS or FAIL against 0.40. Speeds are read from the points the
runs logged (one per iteration, each with the time of its step), as steps per
second over the window (stalls included) and as the median step time; both
ratios must pass.
``--wrapped`` then does the same for ``traintop run -- python script`` beside
a worker of the built-in charlm workload. ``--quick``: short windows.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.client.client import Client  # noqa: E402
from engine.rundir.paths import StatePaths  # noqa: E402

SCRIPT = ROOT / "bench" / "chargpt_train.py"
TARGET = 0.40
WARMUP_STEPS = 10  # iterations a run does before it is measured
SETTLE_S = 2.0  # time for the engine to share the cores after a change


@dataclass
class Speed:
    """A run's speed over one window."""

    steps: int
    window_s: float
    median_ms: float

    @property
    def ms_per_step(self) -> float:
        """Wall time over steps done: stalls count."""
        return self.window_s * 1000 / self.steps if self.steps else float("inf")


class Bench:
    """A scratch state directory, its daemon, and the CLI on it."""

    def __init__(self, home: Path) -> None:
        self.paths = StatePaths(home)
        # A user's shell: no OMP_WAIT_POLICY, no thread count of its own.
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        self.env["TRAINTOP_HOME"] = str(home)
        self.env["PYTHONPATH"] = str(ROOT)
        os.environ["TRAINTOP_HOME"] = str(home)
        self.started: list[subprocess.Popen[bytes]] = []

    def client(self) -> Client:
        return Client(self.paths).connect(autostart=True, timeout=60)

    def cli(self, *argv: str) -> dict[str, object]:
        """``traintop ARGV --json``, as a user would type it; its JSON answer."""
        command = [sys.executable, "-m", "engine.client.cli", argv[0], "--json", *argv[1:]]
        out = subprocess.run(command, env=self.env, check=True, capture_output=True,
                             cwd=ROOT).stdout
        answer: dict[str, object] = json.loads(out)
        return answer

    def start_script(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--iters", "10000000", *args],
                                env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        self.started.append(proc)
        return proc

    def run_named(self, name: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.client() as client:
                for run in client.all_runs():
                    if run["name"] == name:
                        return str(run["id"])
            time.sleep(0.2)
        raise SystemExit(f"fair_cores: no run named {name} appeared")

    def wait_steps(self, run_id: str, steps: int = WARMUP_STEPS, timeout: float = 120.0) -> None:
        """Wait until the run has done ``steps`` more iterations."""
        with self.client() as client:
            first = int(client.call("get_run", run=run_id)["step"])
            deadline = time.monotonic() + timeout
            while int(client.call("get_run", run=run_id)["step"]) < first + steps:
                if time.monotonic() > deadline:
                    raise SystemExit(f"fair_cores: run {run_id} does not train")
                time.sleep(0.2)

    def measure(self, run_ids: list[str], window: float) -> dict[str, Speed]:
        """Each run's steps and step times within the next ``window`` seconds."""
        start = time.time()
        time.sleep(window)
        end = time.time()
        time.sleep(0.6)  # the last points reach the store
        speeds = {}
        with self.client() as client:
            for run_id in run_ids:
                times = sorted(p[3] for p in client.all_metrics(run_id, "loss")
                               if start <= p[3] <= end)
                gaps = [b - a for a, b in itertools.pairwise(times)]
                median = statistics.median(gaps) * 1000 if gaps else float("inf")
                speeds[run_id] = Speed(len(times), end - start, median)
        return speeds

    def close(self) -> None:
        with contextlib.suppress(Exception), self.client() as client:
            for run in client.all_runs():
                if run["state"] in ("starting", "running", "paused"):
                    client.call("kill", run=run["id"], grace=1.0)
            time.sleep(1.5)
            client.call("shutdown")
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            proc.wait()


def report(label: str, solo: Speed, beside: Speed) -> bool:
    ratio = solo.ms_per_step / beside.ms_per_step
    median_ratio = solo.median_ms / beside.median_ms
    # Both ratios must pass: stalls (other load on the machine) can slow a solo
    # window's throughput, never its median step much.
    ok = min(ratio, median_ratio) >= TARGET
    print(f"  {label:8s} solo {solo.ms_per_step:7.1f} ms/it (median {solo.median_ms:6.1f})"
          f"   beside {beside.ms_per_step:8.1f} ms/it (median {beside.median_ms:7.1f})"
          f"   ratio {ratio:4.2f} (median {median_ratio:4.2f})  {'PASS' if ok else 'FAIL'}")
    return ok


def fork_case(bench: Bench, window: float) -> bool:
    """The user's case: an attached script started from a shell, then forked."""
    parent_proc = bench.start_script("--name", "parent")
    parent = bench.run_named("parent")
    bench.wait_steps(parent)
    solo = bench.measure([parent], window)[parent]
    child = str(bench.cli("fork", parent, "--name", "fork")["id"])
    bench.wait_steps(child)
    time.sleep(SETTLE_S)
    both = bench.measure([parent, child], window)
    parent_proc.send_signal(signal.SIGTERM)
    parent_proc.wait()
    time.sleep(SETTLE_S)
    child_solo = bench.measure([child], window)[child]
    print("attached script and its fork (bench/chargpt_train.py, 2 processes):")
    ok = report("parent", solo, both[parent])
    return report("fork", child_solo, both[child]) and ok


def wrapped_case(bench: Bench, window: float) -> bool:
    """``traintop run -- python script`` beside a worker run of the built-in charlm."""
    wrapped = str(bench.cli("run", "--name", "wrapped", "--", sys.executable, str(SCRIPT),
                            "--plain", "--iters", "10000000")["id"])
    bench.wait_steps(wrapped)
    solo = bench.measure([wrapped], window)[wrapped]
    worker = str(bench.cli("start", "charlm", "--name", "worker", "--steps", "10000000")["id"])
    bench.wait_steps(worker)
    time.sleep(SETTLE_S)
    both = bench.measure([wrapped, worker], window)
    with bench.client() as client:
        client.call("kill", run=wrapped, grace=1.0)
    time.sleep(SETTLE_S + 1.0)
    worker_solo = bench.measure([worker], window)[worker]
    print("wrapped command beside a charlm worker:")
    ok = report("wrapped", solo, both[wrapped])
    return report("worker", worker_solo, both[worker]) and ok


def main() -> int:
    """Run the cases; exit 0 when every run keeps at least 40 % of its solo speed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s windows instead of 10 s")
    parser.add_argument("--wrapped", action="store_true",
                        help="also a wrapped command beside a worker run")
    args = parser.parse_args()
    window = 4.0 if args.quick else 10.0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load {load} before; each speed over {window:.0f} s")
    ok = True
    with tempfile.TemporaryDirectory(prefix="traintop-fair-") as tmp:
        cases = [fork_case] + ([wrapped_case] if args.wrapped else [])
        for case in cases:
            bench = Bench(Path(tmp) / case.__name__)
            try:
                ok = case(bench, window) and ok
            finally:
                bench.close()
    print("PASS" if ok else "FAIL", f"(each run keeps >= {TARGET:.0%} of its solo speed)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
