"""Small defects of issue 10: each test failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.client.client import Client, EngineUnavailable
from engine.common import protocol
from engine.rundir.paths import child_env
from tests.conftest import Engine
from tests.test_cli_errors import refused
from tests.test_protocol import assert_closed, reply, send
from tests.test_tui import until
from tui.app import TraintopApp
from tui.widgets.runs_table import RunsTable

# -- options among overrides -----------------------------------------------------------


def test_options_may_come_before_between_and_after_overrides(engine: Engine) -> None:
    started = engine.cli(
        "start", "synthetic", "--device", "cpu", "steps=3", "--name", "mixed", "lr=0.01", "--json"
    )
    assert started.code == 0, started
    run = started.json()
    assert (run["name"], run["device"]) == ("mixed", "cpu")
    assert (run["config"]["steps"], run["config"]["lr"]) == (3, 0.01)
    engine.wait_state("mixed", "finished")

    forked = engine.cli("fork", "mixed", "--name", "branch", "lr=0.02", "--no-wait", "seed=1",
                        "steps=6")
    assert forked.code == 0, forked
    child = engine.run("branch")
    assert (child["config"]["lr"], child["config"]["seed"]) == (0.02, 1)
    engine.wait_state("branch", "finished")  # a run still starting would change the store

    # An unknown option is still refused, wherever it stands, and starts nothing.
    refused(engine, "start", "synthetic", "--device", "cpu", "--bogus", "lr=1", code=2,
            mentions="--bogus")


# -- numbers that overflow --------------------------------------------------------------

HUGE_TOTAL = """\
def train(run):
    for step in run.steps(10**20):
        run.log(loss=1.0)
"""


def test_a_step_total_too_large_to_store_leaves_the_run_training(
    engine: Engine, tmp_path: Path
) -> None:
    """The worker reports the total it was given; one beyond 64 bits used to wedge the run."""
    script = tmp_path / "huge.py"
    script.write_text(HUGE_TOTAL)
    started = engine.cli("start", str(script), "--name", "huge", "--no-wait")
    assert started.code == 0, started
    run = engine.wait_step("huge", 3, timeout=30)
    assert run["state"] == "running" and run["total_steps"] is None
    assert engine.cli("kill", "huge", "--grace", "1").code == 0


# -- a run directory deleted under the engine --------------------------------------------


def _delete_dir(engine: Engine, ref: str, tmp_path: Path) -> None:
    """Take a run's directory away (a rename: no race with a worker still writing in it)."""
    run_dir = Path(engine.run(ref)["dir"])
    run_dir.rename(tmp_path / f"deleted-{run_dir.name}")


def test_commands_on_a_run_whose_directory_was_deleted_say_so(
    engine: Engine, tmp_path: Path
) -> None:
    done = engine.call("start", workload="synthetic", name="done", overrides=["steps=3"])
    busy = engine.call(
        "start", workload="synthetic", name="busy", overrides=["steps=100000", "sleep=0.01"]
    )
    engine.wait_state(done["id"], "finished")
    engine.wait_step(busy["id"], 1)
    _delete_dir(engine, "done", tmp_path)
    _delete_dir(engine, "busy", tmp_path)

    for argv in (["pause", "busy"], ["pause", "busy", "--release"], ["fork", "busy", "lr=0.1"],
                 ["logs", "busy"], ["fork", "done"], ["logs", "done", "--stderr"]):
        line = refused(engine, *argv, mentions="is missing (deleted?)")
        assert str(engine.paths.runs) in line
    shown = engine.cli("show", "done")
    assert shown.code == 0 and "(missing: deleted?)" in shown.out
    assert engine.cli("show", "done", "--json").json()["dir_missing"] is True

    # Kill needs no file: the worker goes, and the run is marked killed.
    assert engine.cli("kill", "busy", "--grace", "1").code == 0
    assert engine.wait_state("busy", "killed", "failed")["state"] == "killed"


def test_resume_and_fork_of_a_released_run_whose_files_are_gone_say_so(
    engine: Engine, tmp_path: Path
) -> None:
    engine.call("start", workload="synthetic", name="rel", overrides=["steps=100000"])
    engine.wait_step("rel", 1)
    assert engine.cli("pause", "rel", "--release", "--timeout", "30").code == 0
    run = engine.wait("rel", lambda r: r["released"])
    Path(run["checkpoint"]).unlink()
    refused(engine, "resume", "rel", mentions="checkpoint")
    refused(engine, "fork", "rel", mentions="checkpoint")
    _delete_dir(engine, "rel", tmp_path)
    refused(engine, "resume", "rel", mentions="is missing (deleted?)")
    refused(engine, "fork", "rel", "seed=2", mentions="is missing (deleted?)")


# -- config keys named like dict methods -------------------------------------------------

SHADOWING_KEYS = """\
def train(run):
    cfg = run.config
    for step in run.steps(2):
        run.log(keys=cfg.keys, items=cfg.items, get=cfg.get, mapped=cfg["items"] + len(cfg))
"""


def test_config_keys_named_like_dict_methods_read_as_attributes(
    engine: Engine, tmp_path: Path
) -> None:
    script = tmp_path / "shadow.py"
    script.write_text(SHADOWING_KEYS)
    result = engine.cli("start", str(script), "keys=1", "items=2", "get=3", "--name", "shadow")
    assert result.code == 0, result
    run = engine.wait_state("shadow", "finished", "failed")
    assert run["state"] == "finished", run["exit_reason"]
    assert run["last"] == {"keys": 1.0, "items": 2.0, "get": 3.0, "mapped": 5.0}


# -- NaN, +inf and -inf from the worker to export ----------------------------------------

NON_FINITE = """\
import math

import torch

LOSSES = [1.0, math.inf, -math.inf, 2.0, math.nan]


def train(run):
    for step in run.steps(len(LOSSES)):
        value = LOSSES[step]
        run.log(loss=value, tensor=torch.tensor(value), inf=math.inf, neg=-math.inf)
"""
SPELLED = ["1.0", "inf", "-inf", "2.0", "nan"]


def _strict_json(text: str) -> Any:
    """Parse as strict JSON: NaN and Infinity tokens are refused."""
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinities_are_told_apart_from_worker_to_export(
    engine: Engine, tmp_path: Path
) -> None:
    script = tmp_path / "nonfinite.py"
    script.write_text(NON_FINITE)
    run_id = engine.cli("start", str(script), "--name", "odd", "--json").json()["id"]
    engine.wait_state(run_id, "finished")  # its points are sealed into chunks by now

    csv_out = engine.cli("export", "odd", "--format", "csv")
    assert csv_out.code == 0, csv_out
    rows = list(csv.DictReader(io.StringIO(csv_out.out)))
    for key in ("loss", "tensor"):
        assert [r["value"] for r in rows if r["key"] == key] == SPELLED
    assert {r["value"] for r in rows if r["key"] == "inf"} == {"inf"}
    assert {r["value"] for r in rows if r["key"] == "neg"} == {"-inf"}

    json_out = engine.cli("export", "odd", "--format", "json")
    metrics = _strict_json(json_out.out)["metrics"]
    want = [1.0, "inf", "-inf", 2.0, "nan"]
    assert [p[1] for p in metrics["loss"]] == [p[1] for p in metrics["tensor"]] == want

    shown = engine.cli("show", "odd")
    assert "inf=inf" in shown.out and "loss=nan" in shown.out and "neg=-inf" in shown.out
    header, row = engine.cli("ls").out.splitlines()[:2]
    loss_at = header.index(" LOSS ") + 1  # the state may be words: 'finished (loss inf ...)'
    assert row[loss_at:].split()[0] == "nan"  # the LOSS column
    assert "finished (loss inf at step " in row  # its divergence, beside its state
    for argv in (["ls", "--json"], ["show", "odd", "--json"]):
        last = _strict_json(engine.cli(*argv).out)
        last = (last[0] if isinstance(last, list) else last)["last"]
        assert last == {"loss": "nan", "tensor": "nan", "inf": "inf", "neg": "-inf"}

    async def table_cell() -> None:
        app = TraintopApp(home=engine.paths.home)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(RunsTable)
            await until(pilot, lambda: table.order == [run_id])
            assert table.cell_text(run_id, "LOSS") == "nan"

    asyncio.run(table_cell())


# -- connections: a limit, and a timeout for silent ones ---------------------------------


@pytest.fixture
def start_daemon_with(engine: Engine) -> Iterator[Callable[..., None]]:
    """Start the engine's daemon here, with some of its connection limits lowered."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**constants: float) -> None:
        assigns = "".join(
            f"socket_server.{name} = {value!r}; " for name, value in constants.items()
        )
        code = (
            "import sys; from engine.server import daemon, socket_server; "
            f"{assigns}sys.exit(daemon.main())"
        )
        engine.paths.home.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=child_env(TRAINTOP_HOME=str(engine.paths.home)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.append(proc)
        deadline = time.monotonic() + 30
        while not engine.paths.socket.exists():  # a client now would start a daemon itself
            assert proc.poll() is None and time.monotonic() < deadline, "no daemon started"
            time.sleep(0.05)

    yield start
    with (
        contextlib.suppress(EngineUnavailable, OSError),
        Client(engine.paths).connect(autostart=False) as client,
    ):
        client.call("shutdown")
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)


def _raw_hello(engine: Engine) -> socket.socket:
    """A connection that has shaken hands (no client: nothing else is opened on the way)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10.0)
    sock.connect(str(engine.paths.socket))
    send(sock, protocol.hello())
    assert reply(sock)["hello"] == protocol.HELLO
    return sock


def test_connections_over_the_limit_are_refused_in_one_line(
    engine: Engine, start_daemon_with: Callable[..., None]
) -> None:
    start_daemon_with(MAX_CONNECTIONS=3)
    held = [_raw_hello(engine) for _ in range(3)]
    result = engine.cli("ls")
    assert result.code == 1 and result.out == ""
    assert result.err.splitlines() == [
        "traintop: the engine already serves 3 connections; close some (idle TUIs or scripts) "
        "and try again"
    ]
    held.pop().close()
    deadline = time.monotonic() + 10
    while (listed := engine.cli("ls")).code != 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # until the daemon has seen the close
    assert listed.code == 0, listed
    for sock in held:
        sock.close()


def test_silent_connections_are_closed_but_a_quiet_subscriber_stays(
    engine: Engine, start_daemon_with: Callable[..., None]
) -> None:
    start_daemon_with(HANDSHAKE_TIMEOUT_S=0.2, IDLE_TIMEOUT_S=1.0)
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.settimeout(10.0)
    mute.connect(str(engine.paths.socket))
    quiet = _raw_hello(engine)
    with engine.client() as listener:
        listener.subscribe(["runs"])
        # Never a handshake: an error frame, then the end.
        assert reply(mute)["error"]["code"] == "timeout"
        assert_closed(mute)
        # Shook hands, then said nothing for longer than the idle timeout.
        assert reply(quiet)["error"]["code"] == "idle_timeout"
        assert_closed(quiet)
        time.sleep(2.0)  # twice the idle timeout, after which the subscriber still hears
        started = engine.call("start", workload="synthetic", overrides=["steps=1"])
        event = listener.next_event(timeout=10)
        assert event is not None and event["data"]["id"] == started["id"]
        assert listener.call("ping")["pong"] is True
