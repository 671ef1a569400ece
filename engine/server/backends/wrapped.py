"""A wrapped command (``traintop run -- CMD``): any program, steered by signals only.

The shim runs the command and parses its output into the spool (see
``engine.run.wrapped``). The command knows nothing of traintop: it cannot be
asked to checkpoint, so it cannot be forked, released or restarted (a retry runs it
again, to go on from whatever it saved itself); a pause
stops its process group in place (SIGSTOP), and a kill starts with SIGINT, as
Ctrl-C would, so that a script can clean up.
"""

from __future__ import annotations

import signal
from typing import Any, ClassVar

from engine.server.backends.base import Host, KillStep, Refusable, RunKind
from engine.server.backends.worker import WorkerBackend

# The workload of a run that wraps a command; its config holds the command and
# the optional loss pattern.
WRAPPED_WORKLOAD = "exec"

_CANNOT = {
    "fork": "cannot be forked (use a train(run) function or traintop.init)",
    "release": "cannot be paused with its memory released (a plain pause stops it in place)",
}


class WrappedBackend(WorkerBackend):
    """A command the shim runs and reads; signals steer it, nothing checkpoints it."""

    kind: ClassVar[RunKind] = "wrapped"
    warm_startable: ClassVar[bool] = False  # any command
    reads_control: ClassVar[bool] = False  # a plain program: SIGUSR1 would kill it

    def launch_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """The command line the shim runs."""
        return {"command": list(record["config"]["command"])}

    def pause(self, host: Host, run: dict[str, Any], release: bool) -> None:
        """SIGSTOP its process group (a release is refused before it gets here)."""
        host.stop_process(run, pause=True)

    def resume(self, host: Host, run: dict[str, Any]) -> None:
        """SIGCONT its process group."""
        host.stop_process(run, pause=False)

    def kill_ladder(self, grace: float) -> tuple[KillStep, ...]:
        """SIGINT (and SIGCONT, so a stopped command sees it), SIGTERM, then SIGKILL."""
        return (
            KillStep(0.0, (signal.SIGINT, signal.SIGCONT)),
            KillStep(grace, (signal.SIGTERM,)),
            KillStep(2 * grace, (signal.SIGKILL,)),
        )

    def refusal(self, action: Refusable, run_id: str) -> str | None:
        """Everything that needs a checkpoint: fork, release and restart. A retry runs the
        command again: it goes on from what it saved itself, if it does."""
        if action == "retry":
            return None
        if action == "restart":
            return f"run {run_id} wraps a command: it has no checkpoint to go on from"
        cannot = _CANNOT[action]
        return f"run {run_id} wraps a command: traintop cannot checkpoint it, so it {cannot}"
