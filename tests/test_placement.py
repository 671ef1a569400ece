"""GPU placement: the rules on their own, then on the real daemon with fake GPUs."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.server.placement import GpuRoom, Placement, place, rooms_from
from tests.conftest import TERMINAL, Engine, wait_until

GIB = 1024**3


def room(index: int, free_gib: float, share: float = 0.0, reserved_gib: float = 0) -> GpuRoom:
    total = 80 * GIB
    return GpuRoom(index, total, int(total - free_gib * GIB), int(reserved_gib * GIB), share)


def test_a_whole_gpu_goes_to_the_one_with_most_free_memory() -> None:
    assert place(1, None, [room(0, 10), room(1, 70), room(2, 40)]).gpus == (1,)
    assert place(2, None, [room(0, 10), room(1, 70), room(2, 40)]).gpus == (1, 2)
    assert place(0, None, []).gpus == ()  # a CPU run needs nothing


def test_memory_below_the_expected_peak_is_never_chosen() -> None:
    rooms = [room(0, 20), room(1, 10)]
    refused = place(1, 30 * GIB, rooms)
    assert refused.gpus == () and refused.why is not None
    assert "needs 30.0 GiB" in refused.why
    assert place(1, 15 * GIB, rooms).gpus == (0,)
    # Memory promised to a run that has not allocated it yet counts as taken.
    assert place(1, 15 * GIB, [room(0, 20, reserved_gib=10), room(1, 10)]).why is not None


def test_shares_pack_onto_one_gpu_and_whole_runs_wait_for_a_free_one() -> None:
    half = [room(0, 60, share=0.5), room(1, 80)]
    assert place(0.5, None, half).gpus == (0,)  # beside the other half, keeping 1 whole
    assert place(1, None, half).gpus == (1,)
    full = [room(0, 60, share=1.0), room(1, 80, share=0.5)]
    assert place(1, None, full).why is not None
    assert place(0.5, None, full).gpus == (1,)


def test_a_named_gpu_is_the_only_choice() -> None:
    rooms = [room(0, 80), room(1, 10)]
    assert place(1, None, rooms, allowed={1}).gpus == (1,)
    assert place(1, 20 * GIB, rooms, allowed={1}).why is not None
    assert "no GPU cuda:5" in (place(1, None, rooms, allowed={5}).why or "")


def test_a_run_riding_on_a_gpu_takes_no_share_but_needs_the_memory() -> None:
    full = [room(0, 40, share=1.0), room(1, 80)]
    assert place(0, 30 * GIB, full, allowed={0}) == Placement()  # beside its parent
    tight = place(0, 50 * GIB, full, allowed={0})
    assert tight.gpus == () and "on cuda:0: needs 50.0 GiB" in (tight.why or "")


def test_rooms_count_shares_and_what_placed_runs_have_yet_to_take() -> None:
    totals = {0: (80 * GIB, 10 * GIB), 1: (80 * GIB, 0)}
    rooms = rooms_from(totals, [((0,), 0.5, 30 * GIB, 10 * GIB), ((0, 1), 2, 20 * GIB, 0)])
    assert [r.share for r in rooms] == [1.5, 1.0]
    assert rooms[0].reserved == 20 * GIB + 10 * GIB and rooms[1].reserved == 10 * GIB


def write_gpus(path: Path, gpus: list[dict[str, Any]]) -> None:
    """Describe the fake GPUs; renamed into place so the daemon never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(gpus))
    os.replace(tmp, path)


def gpu(used_gib: float, processes: list[dict[str, int]] | None = None) -> dict[str, Any]:
    return {"total": 80 * GIB, "used": int(used_gib * GIB), "processes": processes or []}


SLEEPER = [sys.executable, "-c",
           "import os, time\nprint('visible', os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True)"
           "\nfor _ in range(1200): time.sleep(0.1)"]


def used(engine: Engine) -> list[int]:
    """GPU memory in use as the daemon's latest sample has it."""
    return [g["memory_used"] for g in engine.cli("gpu", "--json").json()["gpus"]]


def test_runs_are_placed_by_free_memory_and_wait_for_their_expected_peak(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpus = tmp_path / "gpus.json"
    write_gpus(gpus, [gpu(0), gpu(70)])
    monkeypatch.setenv("TRAINTOP_FAKE_GPUS", str(gpus))
    monkeypatch.setenv("TRAINTOP_TELEMETRY_INTERVAL", "0.1")
    wait_until(lambda: len(engine.cli("gpu", "--json").json()["gpus"]) == 2)
    first = engine.cli("run", "--gpus", "1", "--name", "first", "--json", "--", *SLEEPER).json()
    assert first["device"] == "cuda:0"  # 80 GiB free there, 10 on cuda:1
    wait_until(lambda: "visible 0" in engine.cli("logs", "first").out)
    # It holds 30 GiB of cuda:0; the daemon keeps that as its peak.
    pid = engine.wait("first", lambda r: r["pid"] is not None)["pid"]
    write_gpus(gpus, [gpu(30, [{"pid": pid, "memory": 30 * GIB}]), gpu(70)])
    wait_until(lambda: (engine.run("first")["gpu_peak"] or 0) >= 30 * GIB)
    assert engine.cli("kill", "first", "--grace", "0").code == 0
    engine.wait_state("first", *TERMINAL)
    # Someone else's job fills cuda:0: 20 GiB free there, 10 on cuda:1.
    write_gpus(gpus, [gpu(60), gpu(70)])
    wait_until(lambda: used(engine) == [60 * GIB, 70 * GIB])  # the daemon sees it
    again = engine.cli("restart", "first", "--no-wait", "--json")
    assert again.code == 0, again.err
    waiting = engine.wait(again.json()["id"], lambda r: r["condition"], 10)
    assert waiting["state"] == "queued"
    assert "needs 30.0 GiB" in waiting["condition"]
    time.sleep(1.5)  # a few passes of the scheduler: it must not start meanwhile
    assert engine.run(waiting["id"])["state"] == "queued"
    write_gpus(gpus, [gpu(60), gpu(40)])  # now cuda:1 has room (40 GiB free)
    started = engine.wait_state(waiting["id"], "starting", "running")
    assert started["device"] == "cuda:1"
    wait_until(lambda: "visible 1" in engine.cli("logs", waiting["id"]).out)
