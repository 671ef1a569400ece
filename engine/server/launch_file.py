"""What a run's ``launch.json`` says of the run itself, the record ``engine rebuild``
makes its row again from; and the one a run waiting in its queue has before it starts.
"""

from __future__ import annotations

from typing import Any

from engine.rundir.annotations import save_annotations
from engine.rundir.paths import StatePaths, write_json_atomic


def launch_record(run: dict[str, Any]) -> dict[str, Any]:
    """What launch.json says about a run itself: enough to rebuild its row in a new store."""
    return {
        "run_id": run["id"],
        "name": run["name"],
        "workload": run["workload"],
        "config": run["config"],
        "device": run["device"],
        "cwd": run["cwd"],
        "created": run["created"],
        "parent_id": run["parent_id"],
        "fork_step": run["fork_step"],
        "divergence_factor": run["divergence_factor"],
        "early_stop": run["early_stop"],
        "search": run["search"],
        "checkpoint_every": run["checkpoint_every"],  # the worker reads it too
        "retries": run["retries"],
        "restart_of": run.get("restart_of"),
        **{key: run[key] for key in QUEUE_RECORD},
    }


# What launch.json keeps of a run's place in its queue, for ``engine rebuild``.
QUEUE_RECORD = ("queue", "priority", "after_id", "gpus", "sweep")


def write_queued(paths: StatePaths, run: dict[str, Any], env: dict[str, str] | None = None,
                 launch_from: str | None = None, sync: bool = True) -> None:
    """The directory of ``run``, which waits in its queue, with a launch.json of
    generation 0 (with its environment ``env``, or the checkpoint ``launch_from`` a fork
    starts from) and its tags, so that a rebuilt store has it waiting there again.
    ``sync``: see ``write_json_atomic`` (a fork into hundreds writes as many in one go).
    OSError: the disk refused."""
    rundir = paths.run_dir(run["id"])
    rundir.path.mkdir(parents=True, exist_ok=True)
    extra = {key: value for key, value in (("env", env), ("launch_from", launch_from))
             if value is not None}
    write_json_atomic(rundir.launch, {**launch_record(run), "generation": 0, **extra}, sync)
    save_annotations(rundir, run)
