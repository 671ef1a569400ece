"""Regenerate the README's screenshots: ``.venv/bin/python screenshots/make_screenshots.py``.

Everything is real: a daemon on a temporary state directory, the three
``traintop demo`` charlm runs, a fork of the middle one, and the Textual app
under ``run_test()``. The GPU panel is the one exception: with no GPU on the
machine, the daemon is restarted with ``TRAINTOP_FAKE_GPUS=2`` so its
telemetry reports two simulated H100s. Then, on a second state directory, a
12-run charlm sweep (``sweep_shots.py``) for the overlay, the scatter and the
parallel coordinates, on a
third a sweep of three lrs by three seeds, grouped by seed, then a PBT population,
and a run forked into three lrs at one step (``traintop fork RUN lr=A,B,C``).

Writes ``screenshots/*.svg`` as Textual saved them and a ``.png`` of each
(cairosvg, with a monospace font that exists here put in place of Fira Code).
After each part every run is killed, the daemon stopped and any process left
under its temporary directory ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from shot_tools import OUT, ROOT, Pilot, log, poll, save, stop_everything, to_png, until
from sweep_shots import (
    PBT_AXES,
    PBT_INTERVAL,
    PBT_RUNS,
    SEED_AXES,
    capture_fork_variants,
    capture_seeds,
    capture_sweep,
    start_fork_variants,
    start_sweep,
    wait_for_sweep,
)
from textual.widgets import Input

from engine.client.client import Client
from engine.client.demo import fork_request, start_demo
from engine.client.events import RunInfo
from engine.common.pbt import PbtRule, axes_of
from engine.common.sweep import parse_tokens
from engine.rundir.paths import StatePaths
from tui.app import TraintopApp
from tui.screens.detail import RunDetail
from tui.screens.dialogs import ForkDialog
from tui.widgets.loss_chart import LossChart
from tui.widgets.runs_table import RunsTable

SIZE = (140, 42)
SMALL = (80, 24)
MIN_STEPS = 300
WAIT_RUNS_S = 90.0
FORK_GROWS_S = 20.0
FAKE_GPUS = 2
TELEMETRY_S = 12.0  # long enough for the GPU sparklines to show a history
SWEEP_SIZE = (140, 42)


# -- the runs -------------------------------------------------------------------


def start_runs(paths: StatePaths) -> tuple[str, str]:
    """The demo runs a few hundred steps in, and a fork of the middle one; (parent, fork)."""
    with Client(paths).connect() as client:
        start_demo(client)
        log(f"demo started; waiting for {MIN_STEPS} steps (at most {WAIT_RUNS_S:.0f} s)")

        def far_enough() -> bool:
            runs = client.all_runs()
            return bool(runs) and min(r["step"] for r in runs) >= MIN_STEPS

        poll(far_enough, WAIT_RUNS_S)
        request = fork_request([RunInfo.from_wire(r) for r in client.all_runs()])
        if request is None:
            raise RuntimeError("the demo's middle run is not running; cannot fork it")
        fork = client.call("fork", **request)
        # As a user says why a run exists: the table shows the tag, the detail the note.
        client.call("annotate", run=request["run"], add=["baseline"],
                    note="the demo's middle lr; its fork tries 1e-3 from step 100")
        log(f"forked {request['run']} as {fork['id']}; letting the fork grow {FORK_GROWS_S:.0f} s")
        time.sleep(FORK_GROWS_S)
        for run in client.all_runs():
            log(f"  {run['id']} {run['name']:<26} {run['state']:<9} step {run['step']}")
        return str(request["run"]), str(fork["id"])


def restart_daemon(paths: StatePaths, env: dict[str, str]) -> None:
    """Stop the daemon (runs go on) and start it again with ``env`` added."""
    with Client(paths).connect(autostart=False) as client:
        pid = client.server_pid
        client.call("shutdown")
    if pid is not None:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(timeout=15)
    os.environ.update(env)  # start_daemon copies os.environ
    try:
        Client(paths).connect().close()
    finally:
        for key in env:
            os.environ.pop(key, None)


# -- the captures ---------------------------------------------------------------


async def open_family(app: TraintopApp, pilot: Pilot, parent: str, fork: str) -> None:
    """Select ``parent`` and wait until the chart overlays it and its fork."""
    table = app.query_one(RunsTable)
    await until(pilot, lambda: parent in table.order and fork in table.order)
    table.select(parent)
    chart = app.query_one(LossChart)
    await until(pilot, lambda: len(chart.series) >= 2)
    log("chart: " + ", ".join(f"{s.label} ({len(s.xs)} points)" for s in chart.series))
    await until(pilot, lambda: app.state.telemetry)
    await pilot.pause(1.5)  # a few telemetry samples and a settled layout


async def capture_main_views(paths: StatePaths, parent: str, fork: str) -> None:
    app = TraintopApp(home=paths.home)
    async with app.run_test(size=SIZE) as pilot:
        await open_family(app, pilot, parent, fork)
        save(app, "main.svg")

        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ForkDialog))
        field = app.screen.query_one("#cfg-lr", Input)
        field.focus()  # scrolls the form down to it
        field.value = ""
        await pilot.press(*"3e-4")
        await pilot.pause(0.3)
        save(app, "fork-dialog.svg")

        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ForkDialog))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetail))
        await pilot.pause(0.3)
        save(app, "run-detail.svg")


async def capture_small(paths: StatePaths, parent: str, fork: str) -> None:
    app = TraintopApp(home=paths.home)
    async with app.run_test(size=SMALL) as pilot:
        await open_family(app, pilot, parent, fork)
        save(app, "small.svg")


async def capture_gpu_panel(
    paths: StatePaths, parent: str, fork: str, gpus: int = FAKE_GPUS
) -> None:
    app = TraintopApp(home=paths.home)
    async with app.run_test(size=SIZE) as pilot:
        await open_family(app, pilot, parent, fork)
        await until(pilot, lambda: len(app.state.telemetry[-1].gpus) == gpus)
        await pilot.pause(TELEMETRY_S)
        save(app, "gpu-panel.svg")


@contextlib.contextmanager
def own_state(prefix: str, said: str = "") -> Iterator[StatePaths]:
    """A state directory of its own for one part; every run of it killed, its daemon
    stopped and the directory removed after, however the part ends."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    paths = StatePaths(home)
    log(f"state directory {home}{said}")
    try:
        yield paths
    finally:
        stop_everything(paths)
        shutil.rmtree(home, ignore_errors=True)


def demo_shots() -> None:
    """The demo runs and a fork: main view, fork dialog, run detail, 80x24, GPU panel."""
    with own_state("traintop-shots-") as paths:
        parent, fork = start_runs(paths)
        asyncio.run(capture_main_views(paths, parent, fork))
        asyncio.run(capture_small(paths, parent, fork))
        log(f"restarting the daemon with TRAINTOP_FAKE_GPUS={FAKE_GPUS} (simulated GPUs)")
        restart_daemon(paths, {"TRAINTOP_FAKE_GPUS": str(FAKE_GPUS)})
        asyncio.run(capture_gpu_panel(paths, parent, fork))


def gpu_shot() -> None:
    """The GPU panel alone, of the GPUs this machine has (a GPU machine), else simulated ones.

    The demo runs then train on the real GPU; only gpu-panel.svg is (re)written.
    """
    from engine.server.devices import list_gpus

    real = len(list_gpus())
    with own_state("traintop-gpu-shot-", f"; {real or 'no'} real GPU(s)") as paths:
        parent, fork = start_runs(paths)
        if not real:
            restart_daemon(paths, {"TRAINTOP_FAKE_GPUS": str(FAKE_GPUS)})
        asyncio.run(capture_gpu_panel(paths, parent, fork, real or FAKE_GPUS))


def sweep_shots() -> None:
    """A 12-run sweep, on a state directory of its own: overlaid, then its scatter."""
    with own_state("traintop-sweep-shots-") as paths:
        group, ids = start_sweep(paths)
        wait_for_sweep(paths, ids)
        asyncio.run(capture_sweep(paths, group, ids, SWEEP_SIZE))


def seed_shots() -> None:
    """Three lrs by three seeds, on a state directory of its own, grouped by seed."""
    with own_state("traintop-seed-shots-") as paths:
        group, ids = start_sweep(paths, SEED_AXES)
        wait_for_sweep(paths, ids)
        asyncio.run(capture_seeds(paths, group, ids, SWEEP_SIZE))


def pbt_shots() -> None:
    """A population of six lrs trained by PBT, on a state directory of its own: marked
    and overlaid, its forks under the runs they copied."""
    with own_state("traintop-pbt-shots-") as paths:
        rule = PbtRule(PBT_INTERVAL, axes=axes_of(parse_tokens(PBT_AXES)))
        group, ids = start_sweep(paths, PBT_AXES, PBT_RUNS, rule)
        everyone = wait_for_sweep(paths, ids)
        asyncio.run(capture_sweep(paths, group, everyone, SWEEP_SIZE, "sweep-pbt.svg", None))


def fork_shots() -> None:
    """A run forked into three lrs at one step, on a state directory of its own."""
    with own_state("traintop-fork-shots-") as paths:
        group, ids = start_fork_variants(paths)
        wait_for_sweep(paths, ids)
        asyncio.run(capture_fork_variants(paths, group, ids, SWEEP_SIZE))


PARTS = {"demo": demo_shots, "sweep": sweep_shots, "seeds": seed_shots, "pbt": pbt_shots,
         "forks": fork_shots}
# Made only when named: on a GPU machine, the README's GPU panel from real GPUs.
ON_REQUEST = {"gpu": gpu_shot}


def main() -> int:
    """Start runs, capture the screens, convert the new ones, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = {**PARTS, **ON_REQUEST}
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"which screenshots to make: {' '.join(every)} (default: "
                        f"{' '.join(PARTS)}; gpu: the GPU panel of this machine's real GPUs)")
    args = parser.parse_args()
    unknown = [p for p in args.parts if p not in every]
    if unknown:
        parser.error(f"no part {unknown[0]!r}; the parts are {', '.join(every)}")
    OUT.mkdir(exist_ok=True)
    began = time.time()
    for part in args.parts or PARTS:
        every[part]()
    for svg in sorted(OUT.glob("*.svg")):
        if svg.stat().st_mtime < began:
            continue  # not made this time
        png = to_png(svg)
        if png is not None:
            log(f"{png.relative_to(ROOT)}: {png.stat().st_size // 1024} KiB")
    log(f"done in {time.time() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
