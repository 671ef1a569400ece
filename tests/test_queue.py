"""Queues on the real daemon: slots, --after, priority, moving, release, failure, restart."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from engine.client.client import EngineError
from engine.client.queue_text import waiting_lines
from tests.conftest import TERMINAL, Engine, wait_until
from tests.test_tui import screen_of, until
from tui.app import TraintopApp
from tui.screens.queues import QueuesScreen

SHORT = ["synthetic", "steps=40", "sleep=0.02", "--device", "cpu", "--no-wait", "--json"]
LONG = ["synthetic", "steps=100000", "sleep=0.02", "--device", "cpu", "--no-wait", "--json"]


def start(engine: Engine, *argv: str) -> dict[str, Any]:
    result = engine.cli("start", *argv)
    assert result.code == 0, result.err
    run: dict[str, Any] = result.json()
    return run


def queue(engine: Engine, name: str) -> dict[str, Any]:
    listed: dict[str, Any] = engine.cli("queue", name, "--json").json()
    return listed


def spans(engine: Engine, run_id: str) -> list[tuple[float, float]]:
    """When the run held a slot: from each 'starting' event to the next end or release."""
    events = engine.call("get_run", run=run_id)["events"]
    held: list[tuple[float, float]] = []
    since: float | None = None
    for event in events:
        if event["state"] == "starting" and since is None:
            since = event["time"]
        elif since is not None and (
            event["state"] in TERMINAL or "memory released" in event["reason"]
        ):
            held.append((since, event["time"]))
            since = None
    if since is not None:
        held.append((since, time.time()))
    return held


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = best = 0
    for _, change in edges:
        now += change
        best = max(best, now)
    return best


def test_a_two_slot_queue_runs_six_runs_never_more_than_two_at_once(engine: Engine) -> None:
    assert engine.cli("queue", "pair", "--parallel", "2").code == 0
    runs = [start(engine, *SHORT, "--queue", "pair") for _ in range(6)]
    assert [r["state"] for r in runs].count("queued") >= 4
    listed = queue(engine, "pair")
    assert listed["parallel"] == 2 and len(listed["waiting"]) >= 4
    assert all(w["why"] == "queue pair full, 2/2 running" for w in listed["waiting"])
    for run in runs:
        assert engine.wait_state(run["id"], *TERMINAL, timeout=120)["state"] == "finished"
    intervals = [s for run in runs for s in spans(engine, run["id"])]
    assert len(intervals) == 6
    assert most_at_once(intervals) == 2


def test_after_waits_for_a_run_to_finish_and_fails_when_it_is_killed(engine: Engine) -> None:
    first = start(engine, *SHORT)
    then = start(engine, *SHORT, "--after", first["id"])
    assert then["state"] == "queued" and f"waiting for run {first['id']}" in then["condition"]
    done = engine.wait_state(then["id"], *TERMINAL, timeout=60)
    assert done["state"] == "finished"
    assert spans(engine, then["id"])[0][0] >= spans(engine, first["id"])[0][1]

    blocker = start(engine, *LONG)
    orphan = start(engine, *SHORT, "--after", blocker["id"])
    assert engine.cli("kill", blocker["id"], "--grace", "0").code == 0
    failed = engine.wait_state(orphan["id"], *TERMINAL)
    assert failed["state"] == "failed" and blocker["id"] in failed["exit_reason"]
    refused = engine.cli("start", *SHORT, "--after", blocker["id"])
    assert refused.code != 0 and "nothing can follow it" in refused.err


def test_priority_first_then_fifo_and_moved_runs_keep_their_new_place(engine: Engine) -> None:
    assert engine.cli("queue", "one", "--parallel", "1").code == 0
    blocker = start(engine, *LONG, "--queue", "one")
    engine.wait_state(blocker["id"], "running")
    low1 = start(engine, *SHORT, "--queue", "one", "--name", "low1")
    low2 = start(engine, *SHORT, "--queue", "one", "--name", "low2")
    low3 = start(engine, *SHORT, "--queue", "one", "--name", "low3")
    high = start(engine, *SHORT, "--queue", "one", "--priority", "5", "--name", "high")
    moved = engine.cli("move", "low3", "top")
    assert moved.code == 0 and moved.out == (  # behind the one of a higher priority
        f"moved {low3['id']} (low3) to the top: number 2 of 4 waiting in one\n")
    assert [w["name"] for w in queue(engine, "one")["waiting"]] == [
        "high", "low3", "low1", "low2"
    ]
    assert engine.cli("kill", blocker["id"]).code == 0
    for run in (low1, low2, low3, high):
        engine.wait_state(run["id"], *TERMINAL, timeout=120)
    began = {r["name"]: spans(engine, r["id"])[0][0] for r in (low1, low2, low3, high)}
    assert sorted(began, key=began.__getitem__) == ["high", "low3", "low1", "low2"]
    assert engine.cli("move", "low1", "up").code != 0  # finished: no longer queued


def test_release_frees_the_slot_and_resume_queues_again(engine: Engine) -> None:
    assert engine.cli("queue", "solo", "--parallel", "1").code == 0
    first = start(engine, *LONG, "--queue", "solo")
    engine.wait_step(first["id"], 20)
    second = start(engine, *LONG, "--queue", "solo")
    assert second["state"] == "queued"
    assert engine.cli("pause", first["id"], "--release").code == 0
    engine.wait_state(second["id"], "running")
    listed = engine.cli("ls", first["id"]).out.splitlines()
    assert listed[1].split()[2] == "paused*"  # the mark, and what it means below
    assert listed[-1] == "(1 of 2 runs; *: memory released, resumes from its checkpoint)"
    resumed = engine.cli("resume", first["id"], "--timeout", "2")
    assert resumed.code == 0
    waiting = engine.run(first["id"])
    assert waiting["state"] == "queued" and waiting["condition"] == "queue solo full, 1/1 running"
    step = waiting["step"]
    assert engine.cli("kill", second["id"]).code == 0
    back = engine.wait_step(first["id"], step + 5)
    assert back["state"] == "running"
    assert min(engine.losses(first["id"])) <= step  # its curve goes on from before


def test_a_failure_pauses_its_queue_until_resumed(engine: Engine) -> None:
    assert engine.cli("queue", "careful", "--parallel", "1", "--pause-on-failure").code == 0
    bad = start(engine, "synthetic", "steps=50", "fail_at=5", "--device", "cpu",
                "--queue", "careful", "--no-wait", "--json")
    after = start(engine, *SHORT, "--queue", "careful")
    assert engine.wait_state(bad["id"], *TERMINAL)["state"] == "failed"
    listed = engine.wait(after["id"], lambda r: "paused" in (r["condition"] or ""), 30)
    assert listed["state"] == "queued" and f"run {bad['id']} failed" in listed["condition"]
    assert queue(engine, "careful")["paused"] is True
    assert engine.cli("queue", "careful", "--resume").code == 0
    assert engine.wait_state(after["id"], *TERMINAL)["state"] == "finished"


def test_queues_and_their_order_survive_a_daemon_restart(engine: Engine) -> None:
    assert engine.cli("queue", "keep", "--parallel", "1", "--pause-on-failure").code == 0
    blocker = start(engine, *LONG, "--queue", "keep")
    names = ["k1", "k2", "k3"]
    for name in names:
        start(engine, *SHORT, "--queue", "keep", "--name", name)
    assert engine.cli("move", "k3", "top").code == 0
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "start").code == 0
    listed = queue(engine, "keep")
    assert listed["parallel"] == 1 and listed["pause_on_failure"] is True
    assert [w["name"] for w in listed["waiting"]] == ["k3", "k1", "k2"]
    assert engine.run(blocker["id"])["state"] in ("starting", "running")  # it kept its slot
    assert engine.cli("kill", blocker["id"]).code == 0
    for name in names:
        assert engine.wait_state(name, *TERMINAL, timeout=120)["state"] == "finished"
    began = {n: spans(engine, n)[0][0] for n in names}
    assert sorted(began, key=began.__getitem__) == ["k3", "k1", "k2"]


def test_bad_queue_input_is_one_line_and_changes_nothing(engine: Engine) -> None:
    before = engine.all_runs()
    for argv, says in [
        (("start", *SHORT, "--queue", "two words"), "queue name"),
        (("start", *SHORT, "--gpus", "1"), "cpu cannot take 1 GPUs"),
        (("start", *SHORT, "--gpu-share", "1.5"), "--gpu-share"),
        (("start", *SHORT, "--after", "nosuchrun"), "nosuchrun"),
        (("queue", "q", "--parallel", "-1"), "--parallel"),
        (("queue", "--parallel", "3"), "name the queue"),
        (("move", "nosuchrun", "up"), "nosuchrun"),
    ]:
        result = engine.cli(*argv)
        assert result.code != 0 and says in result.err, (argv, result.err)
        assert len(result.err.strip().splitlines()) == 1
    assert engine.all_runs() == before
    with engine.client() as client:
        try:
            client.call("start", workload="synthetic", bogus=1)
        except Exception as exc:
            assert "'bogus'" in str(exc)
        else:
            raise AssertionError("an unknown parameter was accepted")
        with pytest.raises(EngineError, match="waiting must be 0 or more"):
            client.call("queues", waiting=-1)


def test_a_queue_no_one_made_runs_as_many_at_once_as_the_default_and_is_said(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A misspelt --queue does not start every run sent there at once: the queue it
    makes has the default queue's slots, and the first run sent there says so."""
    monkeypatch.setenv("TRAINTOP_CPU_SLOTS", "2")  # the default queue: 2 at a time
    assert engine.cli("queue", "grid", "--parallel", "3").code == 0
    first = engine.cli("start", *LONG, "--queue", "gird")
    assert first.code == 0, first.err
    assert first.err.strip() == (
        "traintop: queue 'gird' is new: it runs 2 runs at a time, as the default queue does "
        "('traintop queue gird --parallel N' sets it); did you mean 'grid'?")
    second = engine.cli("start", *LONG, "--queue", "gird")
    assert second.code == 0 and second.err == ""  # it is known now
    third = start(engine, *LONG, "--queue", "gird")
    ids = [first.json()["id"], second.json()["id"], third["id"]]
    for run_id in ids[:2]:
        engine.wait_state(run_id, "running")
    wait_until(lambda: "full, 2/2 running" in (engine.run(ids[2]).get("condition") or ""),
               "the third waits for a slot")
    assert queue(engine, "gird")["parallel"] == 2
    paused = engine.cli("pause", ids[2])  # a run that waits is not paused: its queue is
    assert paused.code == 1 and paused.err == (
        f"traintop: {ids[2]}: cannot pause a run that is queued; it waits for its turn: "
        "'traintop queue QUEUE --pause' holds its queue\n")
    # --parallel 0 is no limit, kept apart from a limit never given.
    assert engine.cli("queue", "gird", "--parallel", "0").code == 0
    engine.wait_state(ids[2], "running")
    assert queue(engine, "gird")["parallel"] is None
    # Asking after a queue nothing made or used: one line, exit 1.
    asked = engine.cli("queue", "grdi")
    assert asked.code == 1 and asked.out == "" and len(asked.err.splitlines()) == 1
    assert asked.err.startswith("traintop: no queue named 'grdi' yet; a run sent there makes "
                                "it, and it runs 2 runs at a time") and "'grid'?" in asked.err
    assert engine.cli("kill", *ids).code == 0
    # Made on purpose with --parallel: made, but one a letter from a known queue is said.
    made = engine.cli("queue", "gdir", "--parallel", "4")
    assert made.code == 0 and made.err == "traintop: made queue 'gdir'; did you mean 'gird'?\n"
    assert engine.cli("queue", "fresh", "--parallel", "4").err == ""


def test_a_rebuilt_store_keeps_queued_runs_and_the_queues_settings(engine: Engine) -> None:
    assert engine.cli("queue", "kept", "--parallel", "1").code == 0
    blocker = start(engine, *LONG, "--queue", "kept")
    waiting = start(engine, *SHORT, "--queue", "kept", "--priority", "3", "--name", "later")
    assert waiting["state"] == "queued"
    assert engine.cli("engine", "stop").code == 0
    assert engine.cli("engine", "rebuild").code == 0
    assert engine.cli("engine", "start").code == 0
    later = engine.run("later")
    assert later["state"] == "queued" and later["queue"] == "kept" and later["priority"] == 3
    assert queue(engine, "kept")["parallel"] == 1
    assert engine.cli("kill", blocker["id"]).code == 0
    assert engine.wait_state("later", *TERMINAL, timeout=60)["state"] == "finished"


def test_the_queues_screen_shows_and_steers_the_queues(engine: Engine) -> None:
    """Q in the TUI: each queue's row and the selected one's line, in starting order; p
    holds the queue, + and - move its limit, f turns pausing on a failure on; a
    read-only TUI changes nothing."""
    assert engine.cli("queue", "night", "--parallel", "1").code == 0
    first = start(engine, *LONG, "--queue", "night")["id"]
    engine.wait_state(first, "running")
    waiting = [start(engine, "synthetic", "steps=5", "--queue", "night", "--no-wait",
                     "--json")["id"] for _ in range(3)]

    # A client that shows the head of the line asks for only that much of it.
    (head,) = [q for q in engine.call("queues", waiting=1) if q["name"] == "night"]
    assert [w["id"] for w in head["waiting"]] == waiting[:1] and head["waiting_count"] == 3
    assert waiting_lines(head)[-1] == "       … 2 more (traintop queue night)"
    listed = engine.cli("queue", "night", "-n", "1").out.splitlines()
    assert listed[-2:] == [f"    1. {waiting[0]} synthetic-2: queue night full, 1/1 "
                           "running", "       … 2 more (traintop queue night)"]

    def night() -> dict[str, Any]:  # (not the CLI: the app's run shares its stdout)
        found: dict[str, Any] = next(q for q in engine.call("queues") if q["name"] == "night")
        return found

    async def scenario(readonly: bool) -> None:
        app = TraintopApp(home=engine.paths.home, readonly=readonly)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.selected is not None)
            await pilot.press("Q")  # on the selected run's queue
            screen = await screen_of(pilot, app, QueuesScreen)
            keys = str(screen.query_one("#queue-keys", Static).render())
            assert ("[readonly]" in keys) is readonly and "p hold or let go" in keys
            table = screen.query_one("#queues", DataTable)
            rows = await until(pilot, lambda: [table.get_row_at(i)
                                               for i in range(table.row_count)])
            assert ["night", "1", "1", "3", "open"] in rows
            pool = screen.query_one("#queue-pool", Static)  # (this module's tests keep it on)
            await until(pilot, lambda: re.match(r"warm pool: ready \(pid \d+\); \d+ runs forked",
                                                str(pool.render())))
            box = screen.query_one("#queue-waiting", Static)
            # once the running run's rate is known: when the queue will be done with
            # (the TUI's estimate, as the table's ETA: tests/test_tui_state.py)
            line = await until(pilot, lambda: re.match(
                r"waiting in night, in the order they start; all of its runs ended in "
                r"about \d+[hms]", str(box.render())) and str(box.render()))
            assert [line.index(run_id) for run_id in waiting] == sorted(
                line.index(run_id) for run_id in waiting)
            await pilot.press("p", "plus", "f")
            if readonly:
                await pilot.pause(1.0)
                return
            await until(pilot, lambda: night()["paused"] and night()["parallel"] == 2
                        and night()["pause_on_failure"])
            await until(pilot, lambda: "paused: " in str(table.get_row_at(table.cursor_row)))
            await pilot.press("minus", "minus", "p")
            await until(pilot, lambda: not night()["paused"] and night()["parallel"] == 1)

    asyncio.run(scenario(readonly=True))
    assert (night()["paused"], night()["parallel"], night()["pause_on_failure"]) == (
        False, 1, False)
    asyncio.run(scenario(readonly=False))
    engine.cli("kill", first, *waiting)
