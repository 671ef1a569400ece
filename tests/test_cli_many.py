"""The CLI among many runs: ``ls`` filters by words, state and sweep, sorts, cuts and
prints ids only; ``pause``, ``resume`` and ``kill`` take many runs at once.

The listed runs are stored before the daemon starts (as a restarted daemon finds
them), then listed through the real CLI, daemon and store; the acted-on runs are
real workers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from engine.client.cli.reads import LS_HEADER
from engine.client.run_select import parse_since
from engine.common.format import cut_middle, fit_columns
from engine.server.store import Store
from tests.conftest import TERMINAL, Engine

# id, name, state, sweep, losses in the order logged (best is the lowest, last the last)
RUNS: list[tuple[str, str, str, str | None, list[float]]] = [
    ("aaaa01", "base", "finished", None, [3.0, 2.0, 2.5]),
    ("aaaa02", "lr-1e-3", "running", "lr-search", [3.0, 1.0, 1.8]),
    ("aaaa03", "lr-3e-4", "paused", "lr-search", [3.0, 1.5]),
    ("aaaa04", "lr-1e-4", "queued", "lr-search", []),
    ("aaaa05", "lr-3e-3", "failed", "lr-search", [3.0, 0.5, 9.0]),
    ("aaaa06", "wide", "running", None, [2.2]),
    ("aaaa07", "deep", "killed", None, [2.9, 2.7]),
]


@pytest.fixture
def listed(engine: Engine) -> Engine:
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    for n, (run_id, name, state, sweep, losses) in enumerate(RUNS):
        store.create_run(
            {"id": run_id, "name": name, "workload": "synthetic", "config": {},
             "state": state, "device": "cpu", "cwd": "/", "created": 1.7e9 + n,
             "released": False, "sweep": sweep,
             # the queued run waits on a run that never ends here, so it stays queued
             "after_id": "aaaa06" if state == "queued" else None},
            "made by the test",
        )
        if losses:
            points = [[s, "loss", v, 1.7e9 + s] for s, v in enumerate(losses)]
            store.add_metrics(run_id, points, 0, None)
    store.close()
    return engine


def ids(engine: Engine, *argv: str) -> list[str]:
    result = engine.cli("ls", "-q", *argv)
    assert result.code == 0, result.err
    return result.out.split()


def test_words_states_and_sweeps_choose_the_runs(listed: Engine) -> None:
    # every word must match, in any field, case ignored
    assert ids(listed, "LR", "running") == ["aaaa02"]
    assert ids(listed, "lr-search") == ["aaaa02", "aaaa03", "aaaa04", "aaaa05"]
    assert ids(listed, "synthetic", "nothing-has-this") == []
    assert ids(listed, "--state", "running,paused") == ["aaaa02", "aaaa03", "aaaa06"]
    assert ids(listed, "--state", "live") == ["aaaa02", "aaaa03", "aaaa04", "aaaa06"]
    assert ids(listed, "--state", "ended") == ["aaaa01", "aaaa05", "aaaa07"]
    assert ids(listed, "--sweep", "lr-search", "--state", "live") == [
        "aaaa02", "aaaa03", "aaaa04"]
    # after '-' (and '--', so that it is not taken for an option) a word leaves runs out
    assert ids(listed, "--", "-lr-search") == ["aaaa01", "aaaa06", "aaaa07"]
    assert ids(listed, "lr", "--", "-RUNNING", "-best<1") == ["aaaa03", "aaaa04"]
    refused = listed.cli("ls", "-#old")
    assert refused.code == 2 and refused.out == "" and refused.err.count("\n") == 1
    assert "after '--': traintop ls -- -#old" in refused.err


def test_sorting_ranks_by_best_not_last_and_keyless_runs_go_last(listed: Engine) -> None:
    # best: 05 0.5, 02 1.0, 03 1.5, 06 2.2, 07 2.7, 01 2.0 -> 2.0 before 2.2; 04 has none
    assert ids(listed, "--sort", "best") == [
        "aaaa05", "aaaa02", "aaaa03", "aaaa01", "aaaa06", "aaaa07", "aaaa04"]
    assert ids(listed, "--sort", "best", "-r") == [
        "aaaa07", "aaaa06", "aaaa01", "aaaa03", "aaaa02", "aaaa05", "aaaa04"]
    # last: 03 1.5, 02 1.8, 06 2.2, 01 2.5, 07 2.7, 05 9.0
    assert ids(listed, "--sort", "loss", "-n", "2") == ["aaaa03", "aaaa02"]
    # the top runs of a sweep, the question a sweep is run to answer
    assert ids(listed, "--sweep", "lr-search", "--sort", "best", "-n", "2") == [
        "aaaa05", "aaaa02"]
    assert ids(listed, "--sort", "state")[:2] == ["aaaa04", "aaaa02"]  # queued, running


def test_since_keeps_the_runs_made_since_a_time_or_a_span_back() -> None:
    assert parse_since("90m", 10_000.0) == 10_000.0 - 5400
    assert parse_since("2.5h", 10_000.0) == 10_000.0 - 9000
    assert parse_since("1w", 1e6) == 1e6 - 7 * 86400
    assert parse_since("2023-11-14T22:13", 0.0) == datetime(2023, 11, 14, 22, 13).timestamp()
    for wrong in ("yesterday", "5", "3y", ""):
        with pytest.raises(ValueError, match="not a time"):
            parse_since(wrong, 0.0)


def test_since_chooses_by_creation_time(listed: Engine) -> None:
    fourth = datetime.fromtimestamp(1.7e9 + 4).isoformat()  # as a person types it: local
    assert ids(listed, "--since", fourth) == ["aaaa05", "aaaa06", "aaaa07"]
    assert ids(listed, "--since", "1d") == []  # made in 2023


def test_a_limit_keeps_the_newest_in_creation_order(listed: Engine) -> None:
    assert ids(listed, "-n", "3") == ["aaaa05", "aaaa06", "aaaa07"]
    assert ids(listed, "-n", "3", "-r") == ["aaaa07", "aaaa06", "aaaa05"]
    assert ids(listed, "-n", "100") == [r[0] for r in RUNS]


def test_the_table_shows_best_and_says_how_many_were_left_out(listed: Engine) -> None:
    result = listed.cli("ls", "--sweep", "lr-search", "--sort", "best")
    assert result.code == 0, result.err
    header, *rows, footer = result.out.splitlines()
    assert header.split() == LS_HEADER
    assert [r.split()[0] for r in rows] == ["aaaa05", "aaaa02", "aaaa03", "aaaa04"]
    failed = rows[0].split()
    assert failed[LS_HEADER.index("LOSS")] == "9" and failed[LS_HEADER.index("BEST")] == "0.5"
    assert footer == "(4 of 7 runs)"
    best = listed.cli("ls", "--sweep", "lr-search", "--sort", "best", "-n", "2").out
    assert best.splitlines()[-1] == "(2 of the 4 that match, of 7 runs)"  # cut by -n
    whole = listed.cli("ls").out.splitlines()
    assert len(whole) == 1 + len(RUNS)  # every run, and no footer
    assert listed.cli("ls", "nothing-has-this").out == "no run of the 7 matches\n"
    # a queued run's long reason is cut, so it does not widen the column for every row
    (queued,) = [line for line in whole if line.startswith("aaaa04")]
    assert "queued (waiting for run aaaa06 to finis…  0 " in queued


def test_a_terminal_narrower_than_the_table_cuts_the_state_then_the_name(
    listed: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = listed.cli("ls").out.splitlines()
    assert max(len(line) for line in whole) > 80
    monkeypatch.setenv("COLUMNS", "80")  # (as a terminal of 80 columns says it)
    fitted = listed.cli("ls").out.splitlines()
    assert max(len(line) for line in fitted) <= 80, fitted
    assert [line.split()[0] for line in fitted] == [line.split()[0] for line in whole]
    (queued,) = [line for line in fitted if line.startswith("aaaa04")]
    assert "queued (waiting for run…  " in queued  # the reason gives way first ('show')
    cut = fit_columns(["ID", "NAME"], [["a1", "grid-lr1e-4-batch32"], ["a2", "x"]], 20,
                      [(1, 12, True)])
    assert cut == [["ID", "NAME"], ["a1", "grid-lr1…batch32"], ["a2", "x"]]  # both ends kept
    assert cut_middle("grid-lr1…batch32", 10) == "grid-…ch32"  # a cut cut again: one '…'
    # diff's columns give way alike, side by side or a row a run.
    for refs in (["aaaa01", "aaaa02"], ["--sweep", "lr-search"]):
        monkeypatch.delenv("COLUMNS")
        wide = listed.cli("diff", *refs).out.splitlines()
        monkeypatch.setenv("COLUMNS", "40")
        narrow = listed.cli("diff", *refs).out.splitlines()
        assert len(narrow) == len(wide) and max(map(len, narrow)) < max(map(len, wide))
        assert max(map(len, narrow)) <= 40 or "…" in "".join(narrow), narrow


def test_json_holds_the_chosen_runs_in_order_with_their_best(listed: Engine) -> None:
    result = listed.cli("ls", "--json", "--state", "failed,paused", "--sort", "best")
    runs: list[dict[str, Any]] = result.json()
    assert [r["id"] for r in runs] == ["aaaa05", "aaaa03"]
    assert runs[0]["best"] == {"loss": 0.5} and runs[0]["last"] == {"loss": 9.0}




def start(engine: Engine, *args: str) -> str:
    result = engine.cli("start", "synthetic", *args, "--json")
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


def test_pause_resume_and_kill_take_many_runs_and_refuse_a_typo_before_acting(
    engine: Engine,
) -> None:
    done = start(engine, "steps=5")
    engine.wait_state(done, *TERMINAL)
    a, b = (start(engine, "steps=100000", "sleep=0.01") for _ in range(2))
    engine.wait_step(a, 1)
    engine.wait_step(b, 1)

    typo = engine.cli("pause", a, b, "zzzzzz")  # nothing is paused for a name that is wrong
    assert typo.code == 1 and typo.err == "traintop: no run matches 'zzzzzz'\n"
    assert {engine.run(r)["state"] for r in (a, b)} == {"running"}

    paused = engine.cli("pause", a, b, a)  # named twice: paused once
    assert paused.code == 0, paused.err
    assert [line.split()[:2] for line in paused.out.splitlines()] == [["paused", a],
                                                                        ["paused", b]]
    assert {engine.run(r)["state"] for r in (a, b)} == {"paused"}

    resumed = engine.cli("resume", a, done, b)  # the finished one is refused, the others go on
    assert resumed.code == 1
    assert resumed.err == f"traintop: {done}: cannot resume a run that is finished\n"
    assert [line.split()[:2] for line in resumed.out.splitlines()] == [["resumed", a],
                                                                         ["resumed", b]]
    assert {engine.run(r)["state"] for r in (a, b)} == {"running"}

    killed = engine.cli("kill", b, a)
    assert killed.code == 0, killed.err
    assert killed.out.splitlines() == [f"killed {b} (synthetic-3)", f"killed {a} (synthetic-2)"]
    assert {engine.run(r)["state"] for r in (a, b)} == {"killed"}
    assert engine.run(done)["state"] == "finished"
