"""The bytes of a desktop notification and how stops are batched (pure functions)."""

from __future__ import annotations

from dataclasses import replace

from engine.client.events import RunInfo
from tui.notify import (
    MAX_WAIT_S,
    QUIET_S,
    Stop,
    StopBatch,
    desktop_sequence,
    desktop_wanted,
    summary,
    terminal_alert,
)
from tui.state import TuiState

ESC = "\x1b"


def test_osc9_by_default_and_osc777_where_the_terminal_is_known_for_it() -> None:
    assert desktop_sequence("traintop", "a finished", {"TERM": "xterm-256color"}) == (
        f"{ESC}]9;traintop: a finished\a")
    osc777 = f"{ESC}]777;notify;traintop;a finished\a"
    assert desktop_sequence("traintop", "a finished", {"TERM": "foot"}) == osc777
    assert desktop_sequence("traintop", "a finished", {"TERM": "rxvt-unicode-256color"}) == osc777
    assert desktop_sequence("traintop", "a finished", {"VTE_VERSION": "7600"}) == osc777
    # The setting names one outright.
    chosen = {"TERM": "foot", "TRAINTOP_NOTIFY": "osc9"}
    assert desktop_sequence("t", "b", chosen) == f"{ESC}]9;t: b\a"
    assert desktop_sequence("t", "b", {"TRAINTOP_NOTIFY": "osc777"}).startswith(f"{ESC}]777;")


def test_inside_tmux_the_sequence_is_wrapped_with_every_escape_doubled() -> None:
    wrapped = desktop_sequence("t", "b", {"TMUX": "/tmp/tmux-1/default,1,0"})
    assert wrapped == f"{ESC}Ptmux;{ESC}{ESC}]9;t: b\a{ESC}\\"
    # The bell goes outside the wrapping: tmux passes a bell on by itself.
    assert terminal_alert("t", "b", {"TMUX": "x"}) == "\a" + wrapped


def test_text_cannot_end_the_sequence_early() -> None:
    sequence = desktop_sequence("ti;tle", f"evil{ESC}]0;x\a;name", {"TERM": "foot"})
    assert sequence == f"{ESC}]777;notify;ti,tle;evil]0,x,name\a"
    assert sequence.count(ESC) == 1 and sequence.count("\a") == 1


def test_the_setting_turns_the_terminal_alert_off() -> None:
    assert desktop_wanted({}) and desktop_wanted({"TRAINTOP_NOTIFY": "osc9"})
    assert not desktop_wanted({"TRAINTOP_NOTIFY": "off"})
    assert not desktop_wanted({"TRAINTOP_NOTIFY": " OFF "})
    assert not desktop_wanted({"TRAINTOP_NOTIFY": "0"})


def test_a_burst_is_one_batch_said_in_one_line() -> None:
    batch = StopBatch()
    stops = [Stop(f"id{i}", f"run-{i}", "finished") for i in range(28)]
    stops += [Stop("f1", "bad-1", "failed", "exit 1"), Stop("f2", "bad-2", "failed")]
    for i, stop in enumerate(stops):
        batch.add(stop, now=100.0 + i * 0.01)
    assert batch.take_due(now=100.3) == []  # still coming in
    due = batch.take_due(now=100.3 + QUIET_S)
    assert due == stops and batch.take_due(now=200.0) == []
    assert summary(due) == "30 runs ended: 28 finished, 2 failed"
    assert summary([stops[-2]]) == "bad-1 (f1) failed: exit 1"
    assert summary([stops[0]]) == "run-0 (id0) finished"


def test_a_steady_trickle_is_still_told_after_the_longest_wait() -> None:
    batch = StopBatch()
    now = 0.0
    while now < MAX_WAIT_S:
        batch.add(Stop(str(now), "r", "finished"), now=now)
        now += QUIET_S / 2
        if batch.take_due(now=now):
            break
    assert now >= MAX_WAIT_S and not batch.pending


def test_a_stop_says_why_a_run_failed_or_paused_itself() -> None:
    paused = RunInfo(id="a1", name="div", state="paused", workload="synthetic", step=9,
                     condition="loss nan at step 9")
    failed = RunInfo(id="b2", name="bad", state="failed", workload="synthetic", step=3,
                     exit_reason="RuntimeError: boom")
    done = RunInfo(id="c3", name="ok", state="finished", workload="synthetic", step=5,
                   exit_reason="finished")
    assert summary([Stop.of(paused)]) == "div (a1) paused: loss nan at step 9"
    assert summary([Stop.of(failed)]) == "bad (b2) failed: RuntimeError: boom"
    assert summary([Stop.of(done)]) == "ok (c3) finished"


def test_a_run_that_failed_and_was_retried_is_told_once_with_its_retry() -> None:
    state = TuiState()
    running = RunInfo(id="d4", name="long", state="running", workload="synthetic", step=90,
                      retries=2)
    state.apply_event(running)
    assert state.take_stopped() == []
    # The engine's next word on it: failed, and queued again by its retries.
    state.apply_event(replace(running, state="queued", retried=1,
                              exit_reason="killed by signal SIGKILL"))
    [told] = state.take_stopped()
    assert summary([Stop.of(told)]) == \
        "long (d4) retried: killed by signal SIGKILL; retry 1 of 2"
    state.apply_event(replace(running, state="running", retried=1))  # it goes on: no news
    assert state.take_stopped() == []


def test_a_sweep_is_told_once_its_last_run_stops_with_its_best_run() -> None:
    state = TuiState()
    runs = [RunInfo(id=f"s{i}", name=f"lr-{i}", state="running", workload="synthetic",
                    step=10, sweep="lr", best={"loss": 1.0 + i}) for i in range(3)]
    for run in runs:
        state.apply_event(run)
    state.apply_event(replace(runs[0], state="finished"))
    state.apply_event(replace(runs[1], state="killed", stopped_early="stopped early at step 5"))
    assert state.take_sweeps_ended() == []  # one still trains
    state.apply_event(replace(runs[2], state="failed", exit_reason="boom"))
    assert state.take_sweeps_ended() == ["lr"]
    ended = Stop.sweep("lr", list(state.runs.values()))
    assert ended.run_id == "s0"
    said = summary([ended, Stop.of(state.runs["s2"])])
    assert said == ("sweep lr done: 3 runs: 1 finished, 1 stopped early, 1 failed; best s0 "
                    "lr-0 at loss 1; lr-2 (s2) failed: boom")
