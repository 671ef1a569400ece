"""What the screenshot scripts share: logging, waiting, saving a screen, cleaning up a
state directory, and turning an SVG into a PNG that draws the same here."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
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

from engine.client.client import Client, EngineUnavailable  # noqa: E402
from engine.rundir.paths import StatePaths  # noqa: E402
from tui.app import TraintopApp  # noqa: E402

OUT = ROOT / "screenshots"
TERMINAL = ("finished", "failed", "killed")
PNG_FONT = "DejaVu Sans Mono"
# DejaVu Sans Mono has no braille and cairo does not fall back glyph by glyph, so braille is
# drawn in DejaVu Sans, which is wider: one <text> per glyph keeps each in its cell.
BRAILLE_FONT = "DejaVu Sans"
BRAILLE = f' style="font-family: {BRAILLE_FONT}"'
TEXT_ELEMENT = re.compile(r"<text ([^>]*)>([^<]*)</text>")

T = TypeVar("T")
Pilot = Any


def log(message: str) -> None:
    """A line on stdout with the time, at once."""
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


def save(app: TraintopApp, filename: str) -> None:
    """The app's screen as ``screenshots/FILENAME`` (an SVG)."""
    app.save_screenshot(filename=filename, path=str(OUT))
    log(f"saved screenshots/{filename}")


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


# -- SVG to PNG -----------------------------------------------------------------


def to_png(svg: Path) -> Path | None:
    """``svg`` as a PNG beside it, drawn with fonts present here instead of the absent Fira Code."""
    try:
        import cairosvg  # type: ignore[import-untyped]
    except ImportError:
        print("no PNGs: cairosvg is missing (.venv/bin/pip install cairosvg)")
        return None
    text = re.sub(r'"?Fira Code"?', f'"{PNG_FONT}"', svg.read_text(encoding="utf-8"))
    text = TEXT_ELEMENT.sub(_glyph_run, text)
    png = svg.with_suffix(".png")
    with tempfile.NamedTemporaryFile("w", suffix=".svg", encoding="utf-8") as copy:
        copy.write(text)
        copy.flush()
        cairosvg.svg2png(url=copy.name, write_to=str(png), scale=1.0)
    return png


def _glyph_run(match: re.Match[str]) -> str:
    """A <text> as one <text> per glyph, each at its own cell, as a terminal draws it:
    cairosvg ignores textLength, so a run drawn whole drifts from its cells by the font's
    advance (a glyph from a fallback font, wider or narrower, by more); braille in
    BRAILLE_FONT."""
    attributes, content = match.groups()
    content = html.unescape(content)
    x = re.search(r' x="([0-9.]+)"', attributes)
    length = re.search(r' textLength="([0-9.]+)"', attributes)
    if x is None or length is None or not content:
        return match.group(0)
    cell = float(length.group(1)) / len(content)
    rest = attributes.replace(x.group(0), "").replace(length.group(0), "")
    glyphs = []
    for i, char in enumerate(content):
        if char not in " \xa0":
            font = BRAILLE if "\u2800" <= char <= "\u28ff" else ""
            glyphs.append(f'<text{font} x="{float(x.group(1)) + i * cell:.1f}" {rest}>'
                          f"{html.escape(char)}</text>")
    return "".join(glyphs)
