"""``traintop export RUN...``: many runs in one file, one metric of them, and nothing
written (or overwritten) when a name or a key is wrong.

The runs are stored before the daemon starts (their points go through the real store
and the real daemon's pages, as a finished run's do); ``test_engine`` exports a run a
worker trained.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from engine.client.cli.export_cmd import _output
from engine.client.client import EngineUnavailable, unpacked
from engine.server.store import Store
from tests.conftest import Engine
from tests.test_daemon_scale import _stored_run

RUNS = {"aaa222": "base", "bbb333": "lr-low", "ccc444": "lr-high"}
STEPS = 40


def stored(engine: Engine) -> None:
    """Three finished runs: ``loss`` at every step (a NaN in the second), ``acc`` every
    tenth step in the first two only."""
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    for n, (run_id, name) in enumerate(RUNS.items()):
        _stored_run(store, run_id, name, config={"lr": 10.0 ** -(n + 2)})
        points = [[s, "loss", math.nan if (n, s) == (1, 7) else (n + 1) / (s + 1), 1.0 + s]
                  for s in range(STEPS)]
        if n < 2:
            points += [[s, "acc", s / 100, 1.0 + s] for s in range(0, STEPS, 10)]
        store.add_metrics(run_id, points, 0, 1)
    store.close()


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_several_runs_go_into_one_csv_in_the_order_named(engine: Engine) -> None:
    stored(engine)
    result = engine.cli("export", "lr-high", "aaa", "bbb333", "base")  # base twice: once
    assert result.code == 0, result.err
    header, *rows = rows_of(result.out)
    assert header == ["run", "step", "key", "value", "time"]
    order = list(dict.fromkeys(r[0] for r in rows))
    assert order == ["ccc444", "aaa222", "bbb333"]
    assert len(rows) == 3 * STEPS + 2 * (STEPS // 10)
    nan_row = [r for r in rows if r[:3] == ["bbb333", "7", "loss"]]
    assert nan_row == [["bbb333", "7", "loss", "nan", "8.0"]]
    assert ["ccc444", "39", "loss", repr(3 / 40), "40.0"] in rows


def test_only_the_keys_asked_for_and_runs_without_them_add_nothing(engine: Engine) -> None:
    stored(engine)
    result = engine.cli("export", "aaa", "bbb", "ccc", "-k", "acc")
    assert result.code == 0, result.err
    _, *rows = rows_of(result.out)
    assert {r[2] for r in rows} == {"acc"} and {r[0] for r in rows} == {"aaa222", "bbb333"}
    both = engine.cli("export", "aaa", "--key", "acc,loss")
    assert [r[2] for r in rows_of(both.out)[1:]] == ["acc"] * 4 + ["loss"] * STEPS


def test_json_is_an_object_a_run_and_jsonl_a_line_a_run(engine: Engine) -> None:
    stored(engine)
    one = json.loads(engine.cli("export", "base", "--format", "json").out)
    assert one["run"]["id"] == "aaa222" and one["run"]["config"] == {"lr": 0.01}
    assert sorted(one["metrics"]) == ["acc", "loss"]
    several = json.loads(engine.cli("export", "base", "lr-low", "--format", "json").out)
    assert [r["run"]["id"] for r in several] == ["aaa222", "bbb333"]
    assert several[1]["metrics"]["loss"][7] == [7, "nan", 8.0]
    assert several[0] == one
    lines = engine.cli("export", "base", "lr-low", "-k", "loss", "--format", "jsonl").out
    parsed = [json.loads(line) for line in lines.splitlines()]
    assert [p["run"]["name"] for p in parsed] == ["base", "lr-low"]
    assert all(list(p["metrics"]) == ["loss"] for p in parsed)
    assert [p[1] for p in parsed[0]["metrics"]["loss"]] == [1 / (s + 1) for s in range(STEPS)]


def test_a_files_name_chooses_the_format_and_one_it_cannot_write_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    stored(engine)
    for name, form in (("a.json", "json"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"),
                       ("a.CSV", "csv"), ("metrics", "csv")):
        wrote = engine.cli("export", "base", "lr-low", "-k", "loss", "-o", str(tmp_path / name))
        assert wrote.code == 0 and wrote.out == "", wrote.err
        assert wrote.err == f"wrote {2 * STEPS} points of 2 runs to {tmp_path / name} ({form})\n"
        text = (tmp_path / name).read_bytes().decode()
        asked = engine.cli("export", "base", "lr-low", "-k", "loss", "--format", form).out
        assert text == asked, name
    for name, given, says in (("b.xlsx", None, "cannot write"),
                              ("b.json", "csv", "its name says json")):
        argv = ["export", "base", "-o", str(tmp_path / name)]
        refused = engine.cli(*argv, *(["--format", given] if given else []))
        assert refused.code == 2 and refused.err.count("\n") == 1 and says in refused.err
        assert not (tmp_path / name).exists()


def test_a_wrong_name_or_key_writes_nothing_and_keeps_the_old_file(
    engine: Engine, tmp_path: Path
) -> None:
    stored(engine)
    out = tmp_path / "sweep.csv"
    assert engine.cli("export", "base", "lr-low", "-o", str(out)).code == 0
    before = out.read_text()
    assert len(rows_of(before)) == 1 + 2 * STEPS + 2 * (STEPS // 10)

    typo = engine.cli("export", "base", "lr-lwo", "-o", str(out))
    assert typo.code == 1 and typo.err.count("\n") == 1 and "lr-lwo" in typo.err
    key = engine.cli("export", "base", "lr-low", "-k", "acx", "-o", str(out))
    assert key.code == 1 and key.err.count("\n") == 1
    assert "no run named has a metric 'acx'; did you mean acc?" in key.err
    assert out.read_text() == before
    # A path that cannot be written: one line naming it (not the hidden file beside it).
    for where, why in ((tmp_path / "nope" / "x.csv", "no such directory"),
                       (tmp_path, "it is a directory")):
        bad = engine.cli("export", "base", "-o", str(where))
        assert bad.code == 1 and bad.err == f"traintop: cannot write {where}: {why}" + (
            " (give a file's name, e.g. runs.csv)\n" if where == tmp_path else "\n"), bad
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "sweep.csv"]  # no part file


def test_an_export_that_fails_half_way_leaves_the_old_file(tmp_path: Path) -> None:
    """The engine going away mid-export (here, an error raised after some rows)."""
    out = tmp_path / "runs.csv"
    out.write_text("the export of yesterday\n")
    with pytest.raises(EngineUnavailable), _output(str(out)) as written:
        written.write("run,step,key,value,time\naaa222,0,loss,1.0,1.0\n")
        raise EngineUnavailable("the engine went away")
    assert out.read_text() == "the export of yesterday\n"
    assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]


def test_packed_columns_carry_every_value_as_the_lists_do(engine: Engine) -> None:
    # The store seals 1024 points a chunk: this run has sealed chunks and loose points,
    # NaN, both infinities, the largest double and steps past 2**53.
    engine.paths.home.mkdir(mode=0o700, parents=True)
    store = Store(engine.paths.store)
    _stored_run(store, "ddd555", "odd")
    odd = [math.nan, math.inf, -math.inf, 1.7976931348623157e308, 5e-324]
    points = [[2**60 + s, "loss", odd[s % len(odd)] if s % 7 == 0 else 1 / (s + 1), 1.5 + s]
              for s in range(2500)]
    store.add_metrics("ddd555", points, 0, None)
    store.close()
    with engine.client() as client:
        listed = client.all_pages("metrics", "series", run="ddd555", columns=True)
        packed = list(client.series_blocks("ddd555"))
    assert [b["key"] for b in packed] == ["loss"] and "n" not in listed[0]
    assert packed[0]["steps"] == listed[0]["steps"] == [p[0] for p in points]
    assert packed[0]["times_us"] == listed[0]["times_us"]
    # repr tells NaN apart, as == does not
    assert repr(packed[0]["values"]) == repr(listed[0]["values"]) == repr([p[2] for p in points])


@pytest.mark.parametrize("bad", [
    {"n": 2, "steps": "AAAAAAAAAAA=", "values": "", "times_us": ""},  # 8 bytes, not 16
    {"n": 1, "steps": "not base64!", "values": "", "times_us": ""},
    {"n": -1, "steps": "", "values": "", "times_us": ""},
    {"n": 0, "steps": 5, "values": "", "times_us": ""},
    {"n": 0, "steps": ""},
])
def test_a_malformed_packed_block_is_one_line_not_a_traceback(bad: dict[str, object]) -> None:
    with pytest.raises(EngineUnavailable, match=r"^malformed series from the engine: "):
        unpacked({"key": "loss", "start": 0, **bad})
