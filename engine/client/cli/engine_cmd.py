"""``traintop engine start|stop|status|rebuild|compact``: the daemon itself."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from engine.client.cli.common import connect
from engine.client.cli.common import ended as ended_state
from engine.client.client import EngineError, EngineSilent, EngineUnavailable
from engine.client.linger import logout_warning
from engine.client.queue_text import pool_text
from engine.common.format import format_bytes, json_text
from engine.rundir.disk_space import disk_use, free_bytes, refusal
from engine.rundir.paths import StatePaths, state_home, wal_of

T = TypeVar("T")
# Unused room in a store that cannot give it back itself, worth a note in the status.
COMPACT_WORTH = 64 * 2**20
STOP_WAIT_S = 10.0  # how long a stopping daemon is given before it is killed


def _with_engine_stopped(action: str, work: Callable[[StatePaths], T]) -> tuple[StatePaths, T]:
    """``work`` on this user's state directory, its refusal as one line (EngineError)."""
    from engine.rundir.state_dir import UnsafeStateDir
    from engine.server.daemon import MaintenanceError

    paths = StatePaths(state_home())
    try:
        return paths, work(paths)
    except (MaintenanceError, UnsafeStateDir) as exc:
        raise EngineError(action, str(exc)) from None


def _rebuild() -> int:
    from engine.server.rebuild import rebuild_store

    paths, done = _with_engine_stopped("rebuild", rebuild_store)
    print(f"rebuilt {paths.store} from {done.runs} run directories ({done.points} points)")
    print(f"the old store is kept as {done.aside}" if done.aside else "there was no old store")
    if done.skipped:
        print(f"skipped (no launch.json): {', '.join(done.skipped)}")
    return 0


def _compact() -> int:
    from engine.server.compact import compact_store

    paths, done = _with_engine_stopped("compact", compact_store)
    print(f"compacted {paths.store}: {format_bytes(done.before)} -> {format_bytes(done.after)}")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    if args.action == "rebuild":
        return _rebuild()
    if args.action == "compact":
        return _compact()
    if args.action == "start":
        with connect() as client:
            status = client.call("status")
        print(f"engine {status['pid']} serving {status['home']}")
        return 0
    try:
        client = connect(autostart=False)
    except EngineSilent as exc:
        if args.action != "stop" or exc.pid is None:
            raise
        return _stop_silent(exc.pid)
    except EngineUnavailable:
        print("engine not running")
        return 0 if args.action == "stop" else 3
    with client:
        if args.action == "stop":
            reply = client.call("shutdown")
            pid = client.server_pid
            print(f"engine {pid} stopping; {reply['live_runs']} runs keep going")
            _wait_gone(pid)
            return 0
        status = client.call("status")
        ended = [run["id"] for run in client.all_runs() if ended_state(run)]
    paths = StatePaths(Path(status["home"]))
    disk = disk_figures(paths, ended)
    if args.json:
        print(json_text({**status, "disk": disk}))
        return 0
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status["runs"].items())) or "no runs"
    unclean = (" (the last engine did not stop cleanly: killed or crashed; see "
               f"{paths.daemon_log})"
               if status.get("after_unclean_stop") else "")
    print(f"engine {status['pid']} up {status['uptime']:.0f}s, {status['home']}{unclean}")
    print(f"runs: {counts}; GPUs: {status['gpus']}")
    pool = status.get("warm_pool")  # (an older engine does not say)
    if isinstance(pool, dict):
        print(f"warm pool: {pool_text(pool)}")
    kept = (f" (checkpoints of ended runs {format_bytes(disk['ended_checkpoints'])}: 'traintop "
            "rm --checkpoints' frees them and keeps the curves)"
            if disk["ended_checkpoints"] else "")
    refused = refusal(paths.runs)
    said = f" ({refused}: runs hold their points in memory meanwhile)" if refused else ""
    print(f"disk: store {format_bytes(disk['store'])}, run files {format_bytes(disk['runs'])}"
          f"{kept}; {format_bytes(disk['free'])} free{said}")
    if disk["store_unused"] >= COMPACT_WORTH and not disk["store_gives_back"]:
        print(f"note: {format_bytes(disk['store_unused'])} of the store is room removed runs "
              "left; 'traintop engine stop' then 'traintop engine compact' gives it back "
              "(once: from then on the engine does it itself)")
    for warning in (status.get("store_problem"), logout_warning()):
        if warning:
            print(f"warning: {warning}")
    return 0


def disk_figures(paths: StatePaths, ended: list[str]) -> dict[str, int]:
    """The bytes the state directory's store and run files take on its disk (of those,
    the checkpoints of the ``ended`` runs), the bytes free there, the store's unused
    bytes and whether it gives them back by itself."""
    store = disk_use(paths.store, wal_of(paths.store))
    unused, gives_back = 0, True
    with contextlib.suppress(sqlite3.Error):  # a damaged store is said elsewhere
        db = sqlite3.connect(f"file:{paths.store}?mode=ro", uri=True)
        try:
            size, free, mode = (int(db.execute(f"PRAGMA {p}").fetchone()[0])
                                for p in ("page_size", "freelist_count", "auto_vacuum"))
            unused, gives_back = size * free, mode == 2
        finally:
            db.close()
    return {"store": store, "runs": disk_use(paths.runs), "free": free_bytes(paths.home),
            "store_unused": unused, "store_gives_back": int(gives_back),
            "ended_checkpoints": disk_use(*(paths.run_dir(r).checkpoints for r in ended))}


def _stop_silent(pid: int) -> int:
    """Stop a daemon that does not answer: SIGTERM (with SIGCONT, so a stopped one
    gets it), then SIGKILL. Runs are processes of their own and train on; the store
    is SQLite's, whole after a kill, and the next engine adopts the runs."""
    print(f"engine {pid} does not answer; sending it SIGTERM")
    for sig in (signal.SIGTERM, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    if not _wait_gone(pid):
        print(f"engine {pid} did not stop in {STOP_WAIT_S:.0f} s; killing it (runs keep training)")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid):
            raise EngineError("stop", f"engine {pid} outlived SIGKILL (a process stuck in the "
                              "kernel, on a dead NFS mount?); see 'ps -o stat,wchan -p "
                              f"{pid}'")
    print(f"engine {pid} stopped; runs keep training")
    return 0


def _wait_gone(pid: int | None, timeout: float = STOP_WAIT_S) -> bool:
    """Whether process ``pid`` ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False

