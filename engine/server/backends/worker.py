"""A ``train(run)`` worker (a built-in workload or the user's file), started by a shim.

The default kind, and the local machinery the other kinds build on: each
generation is started by a shim (``engine.run.shim``) in its own session, the
worker leads its own process group, and it is steered through
``control.jsonl``: it pauses, releases and checkpoints at a step boundary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any, ClassVar

from engine.run.workloads.registry import workload_defaults
from engine.rundir.paths import RunDir, child_env, write_json_atomic
from engine.server.backends.base import (
    Host,
    KillStep,
    Process,
    Refusable,
    RunBackend,
    RunKind,
    ShimProcess,
    WarmStart,
)
from engine.server.backends.identity import IDENTITIES

# How long a dead worker's shim gets to write exit.json before the run is declared lost
# (the shim first waits up to 5 s for the rest of the process group to go).
EXIT_TIMEOUT = 15.0


class WorkerBackend(RunBackend):
    """A worker run by a local shim, in its own process group, steered by control file."""

    kind: ClassVar[RunKind] = "train"
    reads_control: ClassVar[bool] = True
    # Its process is ``engine.run.worker``, which the warm pool can fork.
    warm_startable: ClassVar[bool] = True

    def launch(
        self, rundir: RunDir, record: dict[str, Any], warm: WarmStart
    ) -> ShimProcess | None:
        """Write launch.json and start the run's shim, detached (it outlives the daemon).

        A ``train(run)`` worker is forked by the warm pool (torch already imported)
        when it is ready or about to be, else started cold.
        """
        write_json_atomic(rundir.launch, {**record, **self.launch_fields(record)})
        if self.warm_startable:
            return warm.start(rundir, lambda: self._start_shim(rundir))
        return self._start_shim(rundir)

    def _start_shim(self, rundir: RunDir) -> subprocess.Popen[bytes]:
        """Start the generation cold: its shim, detached, starts the worker."""
        with open(rundir.path / "shim.log", "ab") as shim_log:
            return subprocess.Popen(
                [sys.executable, "-m", "engine.run.shim", str(rundir.path)],
                stdin=subprocess.DEVNULL,
                stdout=shim_log,
                stderr=shim_log,
                start_new_session=True,
                close_fds=True,
                env=child_env(),
                cwd=rundir.path,
            )

    def launch_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """What launch.json holds for the shim beyond the run itself: nothing for a worker."""
        return {}

    def pause(self, host: Host, run: dict[str, Any], release: bool) -> None:
        """Ask the worker to pause (or release) at its next step boundary."""
        host.send_control(run, "release" if release else "pause")

    def resume(self, host: Host, run: dict[str, Any]) -> None:
        """Ask the paused worker to go on."""
        host.send_control(run, "resume")

    def kill_ladder(self, grace: float) -> tuple[KillStep, ...]:
        """SIGTERM now (the worker flushes its spool), SIGKILL after ``grace``."""
        return KillStep(0.0, (signal.SIGTERM,)), KillStep(grace, (signal.SIGKILL,))

    def signal(self, proc: Process, sig: signal.Signals) -> None:
        """Signal the worker's whole process group (what it started goes too)."""
        if proc.pgid is None or not self.alive(proc):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pgid, sig)

    def alive(self, proc: Process) -> bool:
        """Is the worker the same process that was started (pid and start time)?"""
        if proc.pid is None:
            return False
        return IDENTITIES.alive(proc.pid, proc.pid_start or 0.0)

    def exit_timeout(self, proc: Process) -> float:
        """The shim's time to write exit.json after its worker is gone."""
        return EXIT_TIMEOUT

    def refusal(self, action: Refusable, run_id: str) -> str | None:
        """None: a worker checkpoints, so it forks, releases and restarts."""
        return None

    def fork_defaults(self, run: dict[str, Any]) -> dict[str, Any]:
        """The workload's own defaults, so an override of an unknown key is refused."""
        return workload_defaults(run["workload"])
