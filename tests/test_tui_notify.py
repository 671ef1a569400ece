"""Runs stopping while the real app watches a real daemon: a toast, a bell and a
desktop notification, once per burst, and only for what happened live."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.widgets import Input

from tests.conftest import Engine
from tests.test_tui import Pilot, screen_of, start, until
from tui.app import TraintopApp
from tui.notify import QUIET_S
from tui.screens.dialogs import ConfirmDialog, NewRunDialog
from tui.widgets.runs_table import RunsTable

SETTLE_S = QUIET_S + 1.5  # longer than a burst is gathered: whatever is due has been told


def told(app: TraintopApp) -> list[str]:
    """The toasts of stopped runs."""
    return [n.message for n in app._notifications if n.title == "traintop"]


def capture_writes(app: TraintopApp) -> list[str]:
    """What the app writes to its terminal driver from now on (headless: dropped after)."""
    writes: list[str] = []
    driver: Any = app._driver
    write = driver.write

    def recording(data: str) -> None:
        writes.append(data)
        write(data)

    driver.write = recording
    return writes


def alerts(writes: list[str]) -> list[str]:
    return [w for w in writes if "\x1b]9;" in w or "\x1b]777;" in w]


def paused_runs(engine: Engine, count: int, name: str) -> list[str]:
    """``count`` short runs, paused a step in: they end when resumed, while watched."""
    ids = []
    for i in range(count):  # each paused at once: the next start takes a while
        ids.append(start(engine, "synthetic", "steps=60", "sleep=0.01", "--name", f"{name}{i}"))
        engine.call("pause", run=ids[-1])
    for run_id in ids:
        engine.wait_state(run_id, "paused")
    return ids


async def watch_until_listed(pilot: Pilot, app: TraintopApp, ids: list[str]) -> None:
    await until(pilot, lambda: all(i in app.state.runs for i in ids) and app.state.connected)


def test_a_run_finishing_while_watched_is_told_once_with_its_name(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("VTE_VERSION", raising=False)
    monkeypatch.delenv("TRAINTOP_NOTIFY", raising=False)
    [run_id] = paused_runs(engine, 1, "watched")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            writes = capture_writes(app)
            await watch_until_listed(pilot, app, [run_id])
            engine.call("resume", run=run_id)
            await until(pilot, lambda: told(app))
            await pilot.pause(SETTLE_S)
            assert told(app) == [f"watched0 ({run_id}) finished"]
            assert alerts(writes) == [f"\a\x1b]9;traintop: watched0 ({run_id}) finished\a"]

    asyncio.run(scenario())


def test_a_burst_of_endings_is_told_once(engine: Engine) -> None:
    ids = paused_runs(engine, 3, "burst")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            writes = capture_writes(app)
            await watch_until_listed(pilot, app, ids)
            for run_id in ids:
                engine.call("resume", run=run_id)
            await until(pilot, lambda: told(app))
            await pilot.pause(SETTLE_S)
            assert told(app) == ["3 runs ended: 3 finished"]
            assert len(alerts(writes)) == 1 and "3 runs ended" in alerts(writes)[0]

    asyncio.run(scenario())


def test_runs_ended_before_the_app_started_or_replayed_on_reconnect_tell_nothing(
    engine: Engine,
) -> None:
    ended = start(engine, "synthetic", "steps=3", "--name", "old")
    engine.wait_state(ended, "finished")
    [paused] = paused_runs(engine, 1, "held")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            writes = capture_writes(app)
            await watch_until_listed(pilot, app, [ended, paused])
            await pilot.pause(SETTLE_S)
            # The connection drops; the run ends meanwhile; the listing is replayed.
            assert app.link.client is not None
            await app.link.client.close()
            await until(pilot, lambda: not app.state.connected)
            engine.call("resume", run=paused)
            engine.wait_state(paused, "finished")
            await until(pilot, lambda: app.state.connected
                        and app.state.runs[paused].state == "finished")
            await pilot.pause(SETTLE_S)
            assert told(app) == [] and alerts(writes) == []

    asyncio.run(scenario())


def test_notify_off_writes_nothing_and_a_pause_asked_here_is_no_news(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINTOP_NOTIFY", "off")
    run_id = start(engine, "synthetic", "steps=100000", "sleep=0.01", "--name", "long")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            writes = capture_writes(app)
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            await pilot.press("p")  # asked from here: not told
            await until(pilot, lambda: app.state.runs[run_id].state == "paused")
            await pilot.pause(SETTLE_S)
            assert told(app) == []
            engine.call("resume", run=run_id)
            await until(pilot, lambda: app.state.runs[run_id].state == "running")
            engine.call("pause", run=run_id)  # asked elsewhere: told, as a toast only
            await until(pilot, lambda: told(app))
            await pilot.pause(SETTLE_S)
            assert told(app) == [f"long ({run_id}) paused"]
            assert alerts(writes) == [] and "\a" not in "".join(writes)
            await pilot.press("B")  # the key turns them back on
            assert app.desktop_notices

    asyncio.run(scenario())


def test_retry_opens_the_new_run_dialog_filled_from_the_selected_run(engine: Engine) -> None:
    run_id = start(engine, "synthetic", "steps=4", "lr=0.03", "dim=8", "--name", "tried")
    engine.wait_state(run_id, "finished")
    before = engine.run(run_id)["config"]

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 50)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.selected_id == run_id)
            await pilot.press("N")
            dialog = await until(
                pilot, lambda: isinstance(app.screen, NewRunDialog) and app.screen
            )
            assert dialog.workload == "synthetic"
            assert dialog.query_one("#cfg-lr", Input).value == "0.03"
            assert dialog.query_one("#cfg-dim", Input).value == "8"
            dialog.query_one("#cfg-lr", Input).value = "0.04"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, NewRunDialog))
            await until(pilot, lambda: len(app.state.runs) == 2)

    asyncio.run(scenario())
    [retried] = [r for r in engine.all_runs() if r["id"] != run_id]
    assert retried["config"] == {**before, "lr": 0.04}


def test_a_sweeps_runs_finishing_are_told_once_as_the_sweep_with_its_best_run(
    engine: Engine,
) -> None:
    started = engine.cli("sweep", "synthetic", "lr=0.02,0.01,0.005", "steps=300",
                         "sleep=0.01", "--name", "trio", "--json")
    assert started.code == 0, started.err
    ids = [run["id"] for run in started.json()]
    for run_id in ids:
        engine.wait(run_id, lambda r: r["state"] == "running" and r["step"] > 0)
        engine.call("pause", run=run_id)
    for run_id in ids:
        engine.wait_state(run_id, "paused")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            writes = capture_writes(app)
            await watch_until_listed(pilot, app, ids)
            for run_id in ids[:2]:  # two finish: no news while the third has not ended
                engine.call("resume", run=run_id)
            await until(pilot, lambda: all(app.state.runs[r].state == "finished"
                                           for r in ids[:2]))
            await pilot.pause(SETTLE_S)
            assert told(app) == [] and alerts(writes) == []
            engine.call("resume", run=ids[2])
            await until(pilot, lambda: told(app))
            await pilot.pause(SETTLE_S)
            runs = [app.state.runs[r] for r in ids]
            best = min(runs, key=lambda r: r.best["loss"])
            [line] = told(app)
            assert line.startswith(f"sweep trio done: 3 runs: 3 finished; best {best.id} "), line
            assert len(alerts(writes)) == 1

    asyncio.run(scenario())


def test_a_sweep_its_user_kills_here_is_not_told_as_done(engine: Engine) -> None:
    started = engine.cli("sweep", "synthetic", "lr=0.02,0.01", "steps=100000", "sleep=0.01",
                         "--name", "duo", "--json")
    assert started.code == 0, started.err
    ids = [run["id"] for run in started.json()]
    for run_id in ids:
        engine.wait(run_id, lambda r: r["state"] == "running")

    async def scenario() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await watch_until_listed(pilot, app, ids)
            app.query_one(RunsTable).select("sweep:duo")
            await pilot.press("K")  # the sweep's row: every run of it, once confirmed
            await screen_of(pilot, app, ConfirmDialog)
            await pilot.press("y")
            await until(pilot, lambda: all(app.state.runs[r].state == "killed" for r in ids))
            await pilot.pause(SETTLE_S)
            assert not [line for line in told(app) if line.startswith("sweep duo")]

    asyncio.run(scenario())
