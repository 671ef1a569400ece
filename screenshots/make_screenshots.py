"""Regenerate the README's screenshots: ``.venv/bin/python screenshots/make_screenshots.py``.

Everything is real: a daemon on a temporary state directory, the three
``traintop demo`` charlm runs, a fork of the middle one, and the Textual app
under ``run_test()``. The GPU panel is the one exception: with no GPU on the
machine, the daemon is restarted with ``TRAINTOP_FAKE_GPUS=2`` so its
telemetry reports two simulated H100s.

Writes ``screenshots/*.svg`` as Textual saved them and a ``.png`` of each
(cairosvg, with a monospace font that exists here put in place of Fira Code).
At the end every run is killed, the daemon stopped and any process left
under the temporary directory ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.widgets import Input  # noqa: E402

from engine.client.client import Client, EngineUnavailable  # noqa: E402
from engine.client.demo import fork_request, start_demo  # noqa: E402
from engine.client.events import RunInfo  # noqa: E402
from engine.rundir.paths import StatePaths  # noqa: E402
from tui.app import TraintopApp  # noqa: E402
from tui.screens.detail import RunDetail  # noqa: E402
from tui.screens.dialogs import ForkDialog  # noqa: E402
from tui.widgets.loss_chart import LossChart  # noqa: E402
from tui.widgets.runs_table import RunsTable  # noqa: E402

OUT = ROOT / "screenshots"
SIZE = (140, 42)
SMALL = (80, 24)
MIN_STEPS = 300
WAIT_RUNS_S = 90.0
FORK_GROWS_S = 20.0
FAKE_GPUS = 2
TELEMETRY_S = 12.0  # long enough for the GPU sparklines to show a history
TERMINAL = ("finished", "failed", "killed")
PNG_FONT = "DejaVu Sans Mono"
# DejaVu Sans Mono has no braille and cairo does not fall back glyph by glyph, so braille is
# drawn in DejaVu Sans, which is wider: one <text> per glyph keeps each in its cell.
BRAILLE_FONT = "DejaVu Sans"
TEXT_ELEMENT = re.compile(r"<text ([^>]*)>([^<]*)</text>")

T = TypeVar("T")
Pilot = Any


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def poll(check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T | None:
    """``check()``'s first truthy result, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)


async def until(pilot: Pilot, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Let the app run until ``check()`` is truthy; RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError("the app did not get there in time")
        await pilot.pause(0.1)


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


def stop_everything(paths: StatePaths) -> None:
    """Kill every run, stop the daemon, end whatever still runs under ``paths.home``."""
    with (
        contextlib.suppress(EngineUnavailable, OSError),
        Client(paths).connect(autostart=False) as client,
    ):
        for run in client.all_runs():
            if run["state"] not in TERMINAL:
                with contextlib.suppress(Exception):
                    client.call("kill", run=run["id"], grace=2)

        def all_ended() -> bool:
            return all(r["state"] in TERMINAL for r in client.all_runs())

        poll(all_ended, 15.0)
        client.call("shutdown")
    for worker in paths.runs.glob("*/worker.json"):
        with contextlib.suppress(Exception):
            os.killpg(int(json.loads(worker.read_text())["pgid"]), signal.SIGKILL)
    home = str(paths.home)

    def leftovers() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline", "environ"]):
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(proc.info["cmdline"] or [])
                if home in cmdline or (proc.info["environ"] or {}).get("TRAINTOP_HOME") == home:
                    found.append(proc)
        return found

    for proc in leftovers():
        with contextlib.suppress(psutil.Error):
            proc.wait(timeout=5)
    for proc in leftovers():
        log(f"ending leftover process {proc.pid}")
        with contextlib.suppress(psutil.Error):
            proc.kill()
    left = [p.pid for p in leftovers() if p.status() != psutil.STATUS_ZOMBIE]
    log(f"processes left under {home}: {left or 'none'}")


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


async def capture_gpu_panel(paths: StatePaths, parent: str, fork: str) -> None:
    app = TraintopApp(home=paths.home)
    async with app.run_test(size=SIZE) as pilot:
        await open_family(app, pilot, parent, fork)
        await until(pilot, lambda: len(app.state.telemetry[-1].gpus) == FAKE_GPUS)
        await pilot.pause(TELEMETRY_S)
        save(app, "gpu-panel.svg")


def save(app: TraintopApp, filename: str) -> None:
    app.save_screenshot(filename=filename, path=str(OUT))
    log(f"saved screenshots/{filename}")


# -- SVG to PNG -----------------------------------------------------------------


def to_png(svg: Path) -> Path | None:
    """``svg`` as a PNG beside it, drawn with fonts present here instead of the absent Fira Code."""
    try:
        import cairosvg  # type: ignore[import-untyped]
    except ImportError:
        print("no PNGs: cairosvg is missing (.venv/bin/pip install cairosvg)")
        return None
    text = re.sub(r'"?Fira Code"?', f'"{PNG_FONT}"', svg.read_text(encoding="utf-8"))
    text = TEXT_ELEMENT.sub(_braille_run, text)
    png = svg.with_suffix(".png")
    with tempfile.NamedTemporaryFile("w", suffix=".svg", encoding="utf-8") as copy:
        copy.write(text)
        copy.flush()
        cairosvg.svg2png(url=copy.name, write_to=str(png), scale=1.0)
    return png


def _braille_run(match: re.Match[str]) -> str:
    """A <text> of braille as one <text> per glyph in BRAILLE_FONT, each at its own cell
    (cairosvg ignores textLength, so a run in a wider font would spill out of its cells)."""
    attributes, content = match.groups()
    content = content.replace("&#160;", " ")
    x = re.search(r' x="([0-9.]+)"', attributes)
    length = re.search(r' textLength="([0-9.]+)"', attributes)
    if x is None or length is None or not re.search("[\u2800-\u28ff]", content):
        return match.group(0)
    cell = float(length.group(1)) / len(content)
    rest = attributes.replace(x.group(0), "").replace(length.group(0), "")
    return "".join(
        f'<text style="font-family: {BRAILLE_FONT}" x="{float(x.group(1)) + i * cell:.1f}" '
        f"{rest}>{char}</text>"
        for i, char in enumerate(content)
        if char != " "
    )


def main() -> int:
    """Start runs, capture the screens, convert them, clean up."""
    OUT.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="traintop-shots-"))
    paths = StatePaths(home)
    log(f"state directory {home}")
    try:
        parent, fork = start_runs(paths)
        asyncio.run(capture_main_views(paths, parent, fork))
        asyncio.run(capture_small(paths, parent, fork))
        log(f"restarting the daemon with TRAINTOP_FAKE_GPUS={FAKE_GPUS} (simulated GPUs)")
        restart_daemon(paths, {"TRAINTOP_FAKE_GPUS": str(FAKE_GPUS)})
        asyncio.run(capture_gpu_panel(paths, parent, fork))
    finally:
        stop_everything(paths)
        shutil.rmtree(home, ignore_errors=True)
    for svg in sorted(OUT.glob("*.svg")):
        png = to_png(svg)
        if png is not None:
            log(f"{png.relative_to(ROOT)}: {png.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
