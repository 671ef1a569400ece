"""A run's stdout and stderr read back in the order they were written, stderr marked:
through a real daemon following a real command, in ``read_log`` and the TUI's log pane."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from engine.rundir.paths import RunDir
from engine.server.output_order import merged_tail
from tests.conftest import TERMINAL, Engine
from tests.test_tui import until
from tui.app import TraintopApp
from tui.widgets.runs_table import RunsTable

# Each line goes out a good while after the last, so the daemon sees every switch.
SCRIPT = textwrap.dedent(
    """
    import sys, time
    for i, stream in enumerate(["out", "err", "err", "out", "err", "out"]):
        print(f"{stream} line {i}", file=sys.stdout if stream == "out" else sys.stderr,
              flush=True)
        time.sleep(0.4)
    """
)
ORDER = ["out line 0", "err line 1", "err line 2", "out line 3", "err line 4", "out line 5"]


def lines_of(segments: list[list[str]]) -> list[tuple[str, str]]:
    return [(stream, line) for stream, text in segments for line in text.splitlines()]


def start_script(engine: Engine, tmp_path: Path) -> str:
    script = tmp_path / "both.py"
    script.write_text(SCRIPT)
    result = engine.cli("run", "--json", "--no-wait", "--", sys.executable, str(script))
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    assert engine.wait_state(run_id, *TERMINAL)["state"] == "finished"
    return run_id


def test_both_streams_come_back_in_the_order_written(engine: Engine, tmp_path: Path) -> None:
    run_id = start_script(engine, tmp_path)
    reply = engine.call("read_log", run=run_id, stream="both", offset=-65536)
    got = lines_of(reply["segments"])
    assert [line for _, line in got] == ORDER
    assert all((stream == "stderr") == line.startswith("err") for stream, line in got)
    # a tail shorter than the output keeps the newest lines, still in order
    short = engine.call("read_log", run=run_id, stream="both", offset=-len("out line 5\n") * 2)
    assert [line for _, line in lines_of(short["segments"])][-2:] == ORDER[-2:]
    with_offset = engine.cli("logs", run_id)  # the plain per-stream read is as it was
    assert with_offset.code == 0 and with_offset.out == "out line 0\nout line 3\nout line 5\n"


def test_output_from_before_the_order_was_kept_comes_first(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path)
    rundir.stdout.write_text("old out\nnew out\n")
    rundir.stderr.write_text("old err\n")
    # only the last stdout line was written after the order began
    rundir.output_order.write_text("stdout 8\n")  # len("old out\n")
    got = [(s, t) for s, t in merged_tail(rundir, 1 << 16)]
    assert got == [("stdout", "old out\n"), ("stderr", "old err\n"), ("stdout", "new out\n")]


def test_the_log_pane_shows_both_streams_in_order_with_stderr_marked(
    engine: Engine, tmp_path: Path
) -> None:
    run_id = start_script(engine, tmp_path)

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            await pilot.press("l")
            logs = app.query_one("#logs")
            await until(pilot, lambda: any("out line 5" in str(line) for line in logs.lines))
            shown = [line.text for line in logs.lines if "line" in line.text]
            assert shown == [("▌" if text.startswith("err") else "") + text for text in ORDER]

    asyncio.run(scenario())
