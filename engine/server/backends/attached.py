"""A script that called ``traintop.init`` itself: an attached run.

Its workload string is ``attach:`` plus the command line that started it (made
and read only here). Its first generation was started by the user, not by a
shim: worker.json says ``"attached": true``, the process writes its own
exit.json, and it is signalled alone, since its process group may be the user's
shell job or a test runner. A fork, or a resume after release, re-runs the same
command through a shim; from then on it is followed like a worker.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
from typing import Any, ClassVar

from engine.rundir.paths import RunDir, read_json, write_json_atomic
from engine.server.backends.base import Process, RunKind
from engine.server.backends.worker import WorkerBackend

ATTACH_PREFIX = "attach:"
# An attached process writes exit.json itself before it ends, so one that is gone
# without it died hard (SIGKILL, OOM killer): no need to wait long.
ATTACHED_EXIT_TIMEOUT = 1.0


def attach_workload(argv: list[str]) -> str:
    """The workload string of an attached command: ``attach:python train.py --x``."""
    return ATTACH_PREFIX + shlex.join(argv)


def is_attach_workload(workload: str) -> bool:
    """Does ``workload`` name an attached command?"""
    return workload.startswith(ATTACH_PREFIX)


def attach_argv(workload: str) -> list[str]:
    """The command line of an attached workload."""
    return shlex.split(workload[len(ATTACH_PREFIX) :])


def started_by_user(rundir: RunDir, generation: int) -> bool:
    """Did ``traintop.init`` attach this generation itself (so no shim runs it)?

    A worker.json that cannot be read says nothing either way; the process is
    then taken for the user's, so that no signal reaches its shell's job.
    """
    info = read_json(rundir.worker)
    if not isinstance(info, dict):
        return True
    return bool(info.get("attached")) and info.get("generation") == generation


class AttachedBackend(WorkerBackend):
    """A ``traintop.init`` script: its own process first, then re-run by a shim."""

    kind: ClassVar[RunKind] = "attached"
    warm_startable: ClassVar[bool] = False  # a script the user wrote, re-run as it was started

    def launch_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """The command line the shim re-runs (with ``TRAINTOP_RUN_DIR`` set)."""
        return {"argv": attach_argv(record["workload"])}

    def signal(self, proc: Process, sig: signal.Signals) -> None:
        """Signal the script alone if the user started it, else its group (a shim's)."""
        if not started_by_user(proc.rundir, proc.generation):
            super().signal(proc, sig)
        elif proc.pid is not None and self.alive(proc):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, sig)

    def exit_timeout(self, proc: Process) -> float:
        """Short for the user's own process, which writes exit.json before it ends."""
        if started_by_user(proc.rundir, proc.generation):
            return ATTACHED_EXIT_TIMEOUT
        return super().exit_timeout(proc)

    def fork_defaults(self, run: dict[str, Any]) -> dict[str, Any]:
        """The run's own config: a ``traintop.init`` script declares all of it itself."""
        return dict(run["config"])


def record_started_by_user(
    rundir: RunDir, record: dict[str, Any], pid: int, pid_start: float,
    env: dict[str, str] | None,
) -> None:
    """Write the files of generation 1 of an attached run: no shim writes them.

    worker.json marks the process as the user's (see ``started_by_user``);
    launch.json (which the process never reads) records the run, and the
    environment that a fork or resume will re-run its command with.
    """
    rundir.checkpoints.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        rundir.launch,
        {**record, "generation": 1, "attached": True, **({} if env is None else {"env": env})},
    )
    write_json_atomic(
        rundir.worker,
        {"pid": pid, "pgid": pid, "create_time": pid_start, "shim_pid": None,
         "generation": 1, "attached": True},
    )
