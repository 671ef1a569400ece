"""The daemon's side of attach mode: scripts that call ``traintop.init`` themselves.

An attached process was started by the user, not by a shim. It registers
with an ``attach`` request (or, with no daemon reachable, leaves an
``offline.json`` marker in a run directory it made itself, imported here
later), writes its own ``exit.json``, and is signalled alone: its process
group may be the user's shell job, or the test runner that started it.

The run's workload names the command line that started it, so a fork (or a
resume after release) re-runs the same command, through the shim, with
``TRAINTOP_RUN_DIR`` naming the run directory to continue in (see
``engine.server.backends.attached``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from engine.common.config import step_total
from engine.common.runs import (
    DEFAULT_DIVERGENCE_FACTOR,
    RunState,
    name_from,
    tag_problem,
    unique_name,
)
from engine.rundir.paths import StatePaths, read_json
from engine.server.backends.attached import attach_workload
from engine.server.backends.imported import import_workload
from engine.server.requests import is_number
from engine.server.store import Store


class AttachError(ValueError):
    """An attach that cannot be accepted; the message is one line for the caller."""


def process_start(pid: int) -> float:
    """The start time of a process of this user; AttachError if there is none."""
    try:
        proc = psutil.Process(pid)
        if proc.uids().real != os.getuid():
            raise AttachError(f"process {pid} belongs to another user")
        return float(proc.create_time())
    except psutil.Error:
        raise AttachError(f"no process {pid}") from None


def device_label(device: str) -> str:
    """``cuda`` and ``cuda:N`` as ``cuda:N`` (how runs are counted per GPU); others as given."""
    if device.split(":")[0] != "cuda":
        return device
    index = device.partition(":")[2]
    return f"cuda:{int(index) if index.isdigit() else 0}"


def create_attached_run(
    store: Store,
    run_id: str,
    info: Mapping[str, Any],
) -> dict[str, Any]:
    """Store a running run for an attached process described by ``info``.

    ``info`` holds name (may be None), config, argv (with the interpreter),
    cwd, device and created, as sent by ``traintop.init`` or left in its marker.
    """
    argv = [str(a) for a in info["argv"]]
    config = dict(info.get("config") or {})
    base = info.get("name") or _command_name(argv)
    run = {
        "id": run_id,
        "name": unique_name(name_from(str(base), "attached"), store.name_taken),
        "workload": import_workload(str(info["imported"])) if info.get("imported")
        else attach_workload(argv),
        "config": config,
        "state": RunState.STARTING.value,
        "device": device_label(str(info.get("device") or "cpu")),
        "cwd": str(info["cwd"]),
        "created": float(info.get("created") or time.time()),
        "parent_id": None,
        "total_steps": step_total(config.get("steps")),
        "released": False,
        # (an offline marker may say anything: only what could tag a run is kept)
        "tags": [t for t in info.get("tags") or [] if isinstance(t, str) and not tag_problem(t)],
    }
    factor = info.get("divergence_factor", DEFAULT_DIVERGENCE_FACTOR)
    if factor is None or (is_number(factor) and factor > 1):  # a marker may say anything
        run["divergence_factor"] = factor
    imported = info.get("imported")
    how = f"imported from {imported}" if imported else f"attached: pid {info['pid']}"
    store.create_run(run, how)
    created = store.get_run(run_id)
    assert created is not None
    return created


def _command_name(argv: list[str]) -> str:
    """A name for a command: ``python train.py`` -> train, ``python -m pkg.mod`` -> mod."""
    script = next((a for a in argv[1:] if a.endswith(".py")), None)
    if script is not None:
        return Path(script).stem or "attached"
    if "-m" in argv[1:-1]:
        return argv[argv.index("-m") + 1].rpartition(".")[2] or "attached"
    return Path(argv[0]).name or "attached"


# follow(run, pid, pid_start, env): the supervisor's follow_attached.
Follow = Callable[[dict[str, Any], int, float, "dict[str, str] | None"], None]


def import_offline_runs(paths: StatePaths, store: Store, follow: Follow) -> list[str]:
    """Store every run directory an offline ``traintop.init`` made; returns their ids.

    ``follow(run, pid, pid_start, env)`` then tails it like any attached run, so
    its spool is ingested and its exit.json (or its absence) ends it.
    """
    imported: list[str] = []
    try:
        markers = list(paths.runs.glob("*/offline.json"))  # RunDir.offline
    except OSError:
        return imported
    for marker in markers:
        run_id = marker.parent.name
        if store.get_run(run_id) is not None:
            continue
        info = read_json(marker)
        if not isinstance(info, dict) or not _valid_marker(info):
            continue
        run = create_attached_run(store, run_id, info)
        env = info.get("env") if isinstance(info.get("env"), dict) else None
        follow(run, int(info["pid"]), float(info["pid_start"]), env)
        imported.append(run_id)
    return imported


def _valid_marker(info: dict[str, Any]) -> bool:
    argv = info.get("argv")
    return (
        isinstance(argv, list)
        and bool(argv)
        and all(isinstance(a, str) for a in argv)
        and isinstance(info.get("cwd"), str)
        and isinstance(info.get("pid"), int)
        and isinstance(info.get("pid_start"), int | float)
        and isinstance(info.get("config") or {}, dict)
    )
