"""Which backend a stored run has: the one place its workload string is looked at."""

from __future__ import annotations

from typing import Any

from engine.common.runs import RunState, checkpoints_removed_said
from engine.server.backends.attached import AttachedBackend, is_attach_workload
from engine.server.backends.base import SHOWN_REFUSALS, RunBackend
from engine.server.backends.imported import ImportedBackend, is_import_workload
from engine.server.backends.worker import WorkerBackend
from engine.server.backends.wrapped import WRAPPED_WORKLOAD, WrappedBackend

_WORKER = WorkerBackend()
_ATTACHED = AttachedBackend()
_WRAPPED = WrappedBackend()
_IMPORTED = ImportedBackend()


def backend_for(run: dict[str, Any]) -> RunBackend:
    """The backend of a run row (or of any mapping with its ``workload``)."""
    workload = str(run["workload"])
    if workload == WRAPPED_WORKLOAD:
        return _WRAPPED
    if is_attach_workload(workload):
        return _ATTACHED
    if is_import_workload(workload):
        return _IMPORTED
    return _WORKER


def kind_fields(run: dict[str, Any]) -> dict[str, Any]:
    """What every run row sent to clients adds: its ``kind`` and its ``refusals``.

    ``refusals`` maps each action the run's kind cannot do (fork, release) to
    the one-line reason; a client decides from it alone what it may offer.
    """
    backend = backend_for(run)
    refusals = {}
    for action in SHOWN_REFUSALS:
        reason = backend.refusal(action, run["id"])
        if reason is not None:
            refusals[action] = reason
    if run.get("checkpoints_removed") and run["state"] == RunState.FINISHED:
        # (a failed one may still fork from where it started, if it is a fork)
        refusals["fork"] = f"cannot fork run {run['id']}: " + checkpoints_removed_said(run["id"])
    return {"kind": backend.kind, "refusals": refusals}
