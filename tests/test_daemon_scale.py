"""A daemon that keeps answering: reads on threads, paged replies, a stop that never waits."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import sqlite3
import threading
import time
from typing import Any

import psutil

from engine.client.client import upgrade_under_way
from engine.common import protocol
from engine.server.store import Store
from tests.conftest import Engine
from tests.test_protocol import recv, reply, send, shake_hands
from tests.test_store_scale import v2_store


def _stored_run(store: Store, run_id: str, name: str, **extra: Any) -> None:
    store.create_run(
        {"id": run_id, "name": name, "workload": "synthetic", "config": extra.pop("config", {}),
         "state": "finished", "device": "cpu", "cwd": "/", "created": time.time(),
         "released": False, **extra},
        "made by the test",
    )


def _long_run(engine: Engine, points: int) -> str:
    """A finished run of ``points`` loss points, stored before the daemon starts."""
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    _stored_run(store, "long22", "long")
    batch = 50_000
    for start in range(0, points, batch):
        store.add_metrics(
            "long22",
            [[s, "loss", math.sin(s / 1000) + 2, 1.7e9 + s] for s in range(start, start + batch)],
            0, None,
        )
    store.close()
    return "long22"


def _ready(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_a_slow_read_does_not_hold_up_other_requests(engine: Engine) -> None:
    """Three full-history views of a long run are asked for first; a ping still answers first."""
    run_id = _long_run(engine, 600_000)
    slow, quick = shake_hands(engine), shake_hands(engine)
    for i, smoothing in enumerate((0.5, 0.6, 0.7)):  # new smoothing each: no cached EMA
        send(slow, {"id": i, "method": "series",
                    "params": {"run": run_id, "key": "loss", "buckets": 4000,
                               "smoothing": smoothing}})
    time.sleep(0.05)  # the daemon has read the slow requests before the ping
    send(quick, {"id": 9, "method": "ping", "params": {}})
    assert reply(quick)["result"]["pong"] is True
    assert not _ready(slow), "the ping waited for the series views"
    views = [reply(slow) for _ in range(3)]
    assert [v["id"] for v in views] == [0, 1, 2]
    assert all(v["result"]["n"] == 600_000 for v in views)


def test_sigterm_during_a_long_read_stops_the_daemon_without_finishing_it(
    engine: Engine,
) -> None:
    run_id = _long_run(engine, 600_000)
    sock = shake_hands(engine)
    pid = engine.daemon_pid()
    assert pid is not None
    for i, smoothing in enumerate((0.5, 0.6, 0.7, 0.8)):
        send(sock, {"id": i, "method": "series",
                    "params": {"run": run_id, "key": "loss", "buckets": 4000,
                               "smoothing": smoothing}})
    time.sleep(0.2)
    # Read while the daemon stops, as a client does: a reply of a few hundred KB does
    # not fit in the socket's buffer, and the daemon gives a reader that never reads
    # a second before it closes the connection, mid-frame.
    answered: list[dict[str, Any] | None] = []

    def read_to_the_end() -> None:
        try:
            answered.extend(iter(lambda: recv(sock), None))
            answered.append(None)  # the connection ended between frames
        except AssertionError:  # it ended inside one
            pass

    reading = threading.Thread(target=read_to_the_end)
    reading.start()
    os.kill(pid, signal.SIGTERM)
    psutil.Process(pid).wait(timeout=30)
    reading.join(timeout=30)
    assert not reading.is_alive(), "the daemon stopped but the connection stayed open"
    assert answered[-1:] == [None], "the daemon closed the connection inside a frame"
    answered.pop()
    # At most the view under way when the signal came finished; the others never ran.
    assert sum("result" in m for m in answered if m is not None) <= 1, answered


def test_every_run_is_listed_in_pages_under_the_frame_cap(engine: Engine) -> None:
    """250 runs with 20 KB configs are 5 MB of listing: more than one reply may carry."""
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    for i in range(250):
        _stored_run(store, f"r{i:05d}", f"run-{i:03d}-" + "x" * 88,
                    config={"blob": "y" * 20_000, "i": i})
    store.add_metrics("r00007", [[1, "loss", 0.5, 1.0]], 0, 2)
    store.close()
    sock = shake_hands(engine)
    cursor, pages, runs = None, 0, []
    while True:
        send(sock, {"id": pages, "method": "list_runs", "params": {"cursor": cursor}})
        header = sock.recv(protocol.HEADER_SIZE, socket.MSG_PEEK)
        assert protocol.frame_length(header) <= protocol.MAX_FRAME
        page = reply(sock)["result"]
        runs += page["runs"]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages >= 5
    assert [r["config"]["i"] for r in runs] == list(range(250))
    assert runs[7]["last"] == {"loss": 0.5}
    first = engine.call("list_runs", smoothing=0.9)["runs"]
    assert first[7]["ema"] == [0.5 * (1 - 0.9), 1, 1]  # the EMA state the TUI goes on from
    assert first[6]["ema"] is None
    brief = engine.call("list_runs", smoothing=0.9, brief=True)["runs"]
    assert brief[7] == {"id": first[7]["id"], "ema": first[7]["ema"]}  # no more than that
    assert engine.cli("ls").code == 0


def test_export_of_long_names_streams_every_point(engine: Engine) -> None:
    """5 long-named keys x 10,000 steps: once too big for one reply, now several pages."""
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)
    _stored_run(store, "abc234", "wide")
    keys = [f"{'k' * 190}{i}" for i in range(5)]
    store.add_metrics("abc234", [[s, k, s / 7, 1.0] for s in range(10_000) for k in keys], 0, 1)
    store.close()
    result = engine.cli("export", "abc234", "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert sorted(data["metrics"]) == keys
    for points in data["metrics"].values():
        assert [p[0] for p in points] == list(range(10_000))
    assert data["metrics"][keys[3]][-1] == [9999, 9999 / 7, 1.0]
    csv_lines = engine.cli("export", "abc234").out.splitlines()
    assert len(csv_lines) == 1 + 50_000
    assert csv_lines[-1] == f"abc234,9999,{keys[4]},{9999 / 7!r},1.0"


def test_a_stored_name_with_an_escape_is_shown_escaped(engine: Engine) -> None:
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(engine.paths.store)  # as a store from before names were checked holds it
    _stored_run(store, "abc234", "evil\x1b[2J" + "n" * 200)
    store.close()
    out = engine.cli("ls").out
    assert "\x1b" not in out and "evil\\x1b[2J" in out
    assert max(len(line) for line in out.splitlines()) < 150


def test_a_version_2_store_is_upgraded_on_first_use_and_says_so(engine: Engine) -> None:
    """The first command after an upgrade waits for the migration and says what happens."""
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    v2_store(engine.paths.store)
    db = sqlite3.connect(engine.paths.store)
    db.executemany(
        "INSERT INTO metrics (run_id, key, step, value, time) VALUES ('abc234', ?, ?, ?, 1.0)",
        ((key, s, s / 3) for s in range(150_000) for key in ("loss", "acc")),
    )
    db.commit()
    db.close()
    result = engine.cli("ls", "--json")
    assert result.code == 0, result.err
    assert "upgrading the store" in result.err and result.err.count("\n") == 1
    listed = {r["id"]: r for r in result.json()}
    assert listed["abc234"]["last"] == {"loss": 149_999 / 3, "acc": 149_999 / 3}
    assert not engine.paths.upgrading.exists()
    with engine.client() as client:
        assert len(client.all_metrics("abc234")) == 300_000


def test_a_stale_upgrade_note_is_ignored(engine: Engine) -> None:
    engine.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine.paths.upgrading.write_text("999999999 upgrading the store\n")  # no such process
    assert upgrade_under_way(engine.paths) is None
    assert engine.cli("ls").code == 0
