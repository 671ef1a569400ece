"""A full disk under the state directory never stops training, and a start on one leaves nothing.

The disk is made full with ``TRAINTOP_FAKE_DISK_FULL`` (a flag file: while it
exists, statvfs counts as full and spool writes fail with ENOSPC), which needs
no root; where a small tmpfs can be mounted, one test fills a real one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from engine.run import spool_writer
from engine.run.spool_writer import SpoolWriter
from engine.rundir.disk_space import FAKE_DISK_FULL_ENV
from tests.conftest import TERMINAL, Engine, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

STEPS = 300
SLOW = "sleep=0.01"  # about 100 steps a second: the outage lands mid-run


def _start(engine: Engine, *argv: str) -> str:
    result = engine.cli("start", *argv, "--json")
    assert result.code == 0, result.err
    run_id: str = result.json()["id"]
    return run_id


def _outage(
    engine: Engine, run_id: str, make_full: Callable[[], object], make_room: Callable[[], object],
    condition: str = "disk full",
) -> tuple[float, float]:
    """Fill the disk mid-run, see the run say so, give room back; the outage's bounds."""
    engine.wait_step(run_id, 30)
    pid = engine.run(run_id)["pid"]
    began = time.time()
    make_full()
    engine.wait(run_id, lambda r: r["condition"] == condition, timeout=30)
    shown = engine.cli("show", run_id)
    assert condition in shown.out.splitlines()[1], shown.out  # the state line
    listed = engine.cli("ls")
    assert f"running ({condition})" in listed.out
    if condition != "spool not writable":  # (the whole disk: engine status says it too)
        disk = next(line for line in engine.cli("engine", "status").out.splitlines()
                    if line.startswith("disk: "))
        assert disk.endswith(f" free ({condition}: runs hold their points in memory "
                             "meanwhile)"), disk
    stuck_at = engine.run(run_id)["step"]
    time.sleep(1.0)  # the worker trains on, holding its points
    assert psutil.Process(pid).is_running()
    assert engine.run(run_id)["step"] == stuck_at  # nothing reached the spool meanwhile
    ended = time.time()
    make_room()
    return began, ended


def _check_every_point_once(engine: Engine, run_id: str, outage: tuple[float, float],
                            held_while: str = "the disk was full", steps: int = STEPS) -> None:
    run = engine.wait_state(run_id, *TERMINAL, timeout=120)
    assert run["state"] == "finished", run
    assert run["condition"] is None
    with engine.client() as client:
        points = client.all_metrics(run_id, "loss")
    assert sorted(int(p[0]) for p in points) == list(range(steps))  # every step, each once
    # Steps were taken while the disk was full: training did not stop.
    assert any(outage[0] < p[3] < outage[1] for p in points)
    notes = [e["reason"] for e in run["events"] if e["reason"].startswith("spool:")]
    assert len(notes) == 1 and notes[0].endswith(f"points held while {held_while}, 0 dropped")
    assert int(notes[0].split()[1]) > 0


def test_a_worker_trains_through_a_full_disk_and_stores_every_point_after(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "disk-is-full"
    monkeypatch.setenv(FAKE_DISK_FULL_ENV, str(flag))  # the daemon and its workers inherit it
    run_id = _start(engine, "synthetic", f"steps={STEPS}", SLOW)
    outage = _outage(engine, run_id, flag.touch, flag.unlink)
    _check_every_point_once(engine, run_id, outage)


def test_a_disk_gone_read_only_never_stops_training_and_loses_no_point(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem remounted read-only after an error (EROFS) mid-run: as for a full
    disk, the worker trains on and holds its points, the run says why, and every point
    is stored once the disk takes writes again. (Any OSError of a spool write is held;
    before, anything but ENOSPC ended the worker.)"""
    flag = tmp_path / "disk-is-read-only"
    monkeypatch.setenv(FAKE_DISK_FULL_ENV, str(flag))
    run_id = _start(engine, "synthetic", f"steps={STEPS}", SLOW)
    outage = _outage(engine, run_id, lambda: flag.write_text("EROFS"), flag.unlink,
                     condition="disk read-only")
    _check_every_point_once(engine, run_id, outage, held_while="the disk was read-only")
    said = engine.cli("logs", run_id, "--stderr").out
    assert ("traintop: cannot write this run's spool (Read-only file system); training goes "
            "on, its points held in memory until it can") in said


def test_an_attached_script_trains_through_a_spool_it_may_not_write(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Your own script, attached: its spool refused with EPERM (as by ``chattr +i``) must
    not raise in your training loop. It says so once on your terminal and trains on."""
    flag = tmp_path / "spool-refused"
    monkeypatch.setenv(FAKE_DISK_FULL_ENV, str(flag))
    assert engine.cli("engine", "start").code == 0
    steps = 400
    script = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "attach_train.py"), "--steps", str(steps),
         "--sleep", "0.01", "--name", "mine"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        run_id = wait_until(lambda: next(
            (r["id"] for r in engine.all_runs() if r["name"] == "mine"), None))
        outage = _outage(engine, run_id, lambda: flag.write_text("EPERM"), flag.unlink,
                         condition="spool not writable")
        _, err = script.communicate(timeout=120)
    finally:
        script.kill()
    assert script.returncode == 0, err
    assert err.count("traintop: cannot write this run's spool (Operation not permitted); "
                     "training goes on, its points held in memory until it can") == 1, err
    _check_every_point_once(engine, run_id, outage, steps=steps,
                            held_while="the spool could not be written (Operation not "
                            "permitted)")


def test_a_start_on_a_full_disk_is_refused_and_leaves_nothing(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "disk-is-full"
    monkeypatch.setenv(FAKE_DISK_FULL_ENV, str(flag))
    assert engine.cli("engine", "start").code == 0
    flag.touch()
    for argv in (("start", "synthetic"), ("run", "--", "true")):
        refused = engine.cli(*argv)
        assert refused.code == 1
        assert refused.err.startswith("traintop: the state directory's disk is full (0 B free")
        assert len(refused.err.splitlines()) == 1 and "Traceback" not in refused.err
    assert engine.cli("ls", "--json").json() == []
    assert list(engine.paths.runs.iterdir()) == []
    flag.unlink()
    assert engine.cli("start", "synthetic", "steps=5").code == 0  # room again: it starts


def test_held_records_stay_under_the_bound_and_the_drop_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "disk-is-full"
    monkeypatch.setenv(FAKE_DISK_FULL_ENV, str(flag))
    monkeypatch.setattr(spool_writer, "HOLD_LIMIT_BYTES", 20_000)
    spool = tmp_path / "spool.jsonl"
    writer = SpoolWriter(spool, generation=1)
    writer.metrics([(0, 1.0, {"loss": 1.0})])
    flag.touch()
    batches = 400
    for batch in range(1, batches + 1):
        writer.metrics([(batch * 10 + i, 2.0, {"loss": 0.5}) for i in range(10)])
        assert writer.held_bytes <= 20_000 + 1_000  # the bound, give or take one batch
    flag.unlink()
    writer.state("finished", 4010)
    assert writer.held_bytes == 0
    records = [json.loads(line) for line in spool.read_bytes().splitlines()]
    kept = [p[0] for r in records if r["t"] == "metrics" for p in r["points"]][1:]
    note, last = records[-2:]  # said once the held lines are out, before what comes next
    assert note["t"] == "spool" and note["dropped"] > 0
    assert note["held"] == len(kept) and note["held"] + note["dropped"] == batches * 10
    assert last["state"] == "finished"
    # Thinned, not cut: what is kept still spans the whole outage.
    assert min(kept) < 0.1 * batches * 10 and max(kept) > 0.9 * batches * 10


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs where the engine fixture puts its state directory (root only)."""
    home = tmp_path / "home"
    home.mkdir()
    # huge=never: where tmpfs defaults to huge pages, each small file takes 2 MiB.
    # That is the likely reason the disk was full before the filler on a GPU machine
    # (under pytest -n 12); _fill says what filled it, should it happen again.
    for options in ("size=24m,mode=0700,huge=never", "size=24m,mode=0700"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(home)],
                                 capture_output=True)
        if mounted.returncode == 0:
            break
    else:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield home
    subprocess.run(["umount", "-l", str(home)], check=False)


def _fill(path: Path) -> None:
    """Write until the filesystem refuses (ENOSPC)."""
    usage = shutil.disk_usage(path.parent)
    taken = sorted((f.stat().st_size, str(f.relative_to(path.parent)))
                   for f in path.parent.rglob("*") if f.is_file())
    # Full before the filler: the test could not say when the outage began.
    assert usage.free > 1 << 20, f"already full: {usage}, largest files {taken[-8:]}"
    # Unbuffered: a buffered file that the disk refused part of would try the rest again
    # when closed, and raise there.
    with open(path, "wb", buffering=0) as f:
        for size in (65536, 1):  # then the last few bytes too
            block = b"\0" * size
            while True:
                try:
                    f.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break


def test_a_real_full_filesystem_too(tiny_disk: Path, engine: Engine) -> None:
    run_id = _start(engine, "synthetic", f"steps={STEPS}", SLOW)
    filler = tiny_disk / "filler"
    outage = _outage(engine, run_id, lambda: _fill(filler), lambda: os.unlink(filler))
    _check_every_point_once(engine, run_id, outage)


def test_a_spool_made_immutable_for_real(engine: Engine) -> None:
    """``chattr +i`` on a training run's spool (root, on a filesystem that has it): the
    kernel's own EPERM, not the fake one."""
    run_id = _start(engine, "synthetic", f"steps={STEPS}", SLOW)
    spool = engine.paths.run_dir(run_id).spool
    engine.wait_step(run_id, 5)
    tried = subprocess.run(["chattr", "+i", str(spool)], capture_output=True)
    if tried.returncode != 0:
        engine.cli("kill", run_id)
        pytest.skip(f"no chattr +i here: {tried.stderr.decode().strip()}")
    subprocess.run(["chattr", "-i", str(spool)], check=True)
    try:
        outage = _outage(engine, run_id, lambda: subprocess.run(["chattr", "+i", str(spool)]),
                         lambda: subprocess.run(["chattr", "-i", str(spool)]),
                         condition="spool not writable")
    finally:  # a failed check must not leave a file pytest cannot clean up
        subprocess.run(["chattr", "-i", str(spool)], check=True)
    _check_every_point_once(engine, run_id, outage,
                            held_while="the spool could not be written (Operation not "
                            "permitted)")


def test_a_runs_directory_that_refuses_new_runs_leaves_no_ghost(engine: Engine) -> None:
    """``chattr +i`` on runs/ (root, where the filesystem has it): a start is refused in
    one line, and nothing of it is left to start later, when the directory takes files
    again (it stayed 'starting' and then ran); an attached script is told the engine
    refused it, not that there is no engine, and trains on unmonitored."""
    assert engine.cli("engine", "start").code == 0
    runs = engine.paths.runs
    runs.mkdir(exist_ok=True)
    tried = subprocess.run(["chattr", "+i", str(runs)], capture_output=True)
    if tried.returncode != 0:
        pytest.skip(f"no chattr +i here: {tried.stderr.decode().strip()}")
    try:
        refused = engine.cli("start", "synthetic", "steps=20")
        script = subprocess.run(
            [sys.executable, str(EXAMPLES / "attach_train.py"), "--steps", "30", "--name",
             "mine"], capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        subprocess.run(["chattr", "-i", str(runs)], check=True)
    assert refused.code == 1 and len(refused.err.splitlines()) == 1, refused.err
    assert refused.err.startswith(f"traintop: cannot make the run's files under "
                                  f"{engine.paths.home} (Operation not permitted: "), refused.err
    assert refused.err.rstrip().endswith("is the state directory writable?"), refused.err
    assert script.returncode == 0, script.stderr
    assert ("traintop: the engine refused it (cannot make the run's files under "
            in script.stderr), script.stderr
    time.sleep(2.5)  # a scheduler pass or two: a ghost would start now
    assert engine.cli("ls", "--json").json() == []
