"""``traintop demo``: a few live charlm runs, so every panel has something to show."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.client.client import Client
from engine.client.events import RunInfo
from engine.common.runs import unique_name

DEMO_RUNS = {
    "demo-lr1e-3": ["lr=1e-3"],
    "demo-lr3e-3": ["lr=3e-3"],
    "demo-lr1e-2": ["lr=1e-2"],
}
DEMO_SIZE = ["steps=30000", "d_model=64", "layers=2", "batch=16"]
FORKED = "demo-lr3e-3"  # the run the demo forks
FORK_NAME = "demo-lr3e-3-fork-lr1e-3"
FORK_AFTER_STEPS = 100
# The demo's own queue: room for its runs and the fork at once, whatever the cores.
DEMO_QUEUE = "demo"
DEMO_SLOTS = len(DEMO_RUNS) + 1
# On a GPU machine each demo run takes this share of one GPU (the fork inherits it),
# so that all of them train at once even on one GPU: a run's default is a whole GPU.
DEMO_GPU_SHARE = 1 / DEMO_SLOTS


def _named(name: str, base: str) -> bool:
    """``base`` itself, or ``base-N`` (a later demo, once the first one ended)."""
    suffix = name[len(base) + 1 :]
    return name == base or (name.startswith(base + "-") and suffix.isdigit())


def _active(runs: Sequence[RunInfo], base: str) -> RunInfo | None:
    return next((r for r in runs if _named(r.name, base) and not r.terminal), None)


def _listed(client: Client) -> list[RunInfo]:
    return [RunInfo.from_wire(run) for run in client.all_runs()]


def start_demo(client: Client) -> list[RunInfo]:
    """Start the demo runs that are not running already; returns the live demo runs."""
    runs = _listed(client)
    client.call("queue_set", name=DEMO_QUEUE, parallel=DEMO_SLOTS)
    share = DEMO_GPU_SHARE if client.call("status")["gpus"] else None
    for base, overrides in DEMO_RUNS.items():
        if _active(runs, base) is None:
            runs.append(
                RunInfo.from_wire(client.call(
                    "start",
                    workload="charlm",
                    overrides=[*DEMO_SIZE, *overrides],
                    name=unique_name(base, {r.name for r in runs}.__contains__),
                    device=None,
                    cwd="/",
                    queue=DEMO_QUEUE,
                    gpus=share,
                ))
            )
    return [run for base in DEMO_RUNS if (run := _active(runs, base)) is not None]


def fork_parent(runs: Sequence[RunInfo]) -> RunInfo | None:
    """The live demo run that is (or will be) forked: the TUI opens on it, so the fork's
    branch shows on the chart as soon as it starts."""
    return _active(runs, FORKED)


def fork_request(runs: Sequence[RunInfo]) -> dict[str, Any] | None:
    """The fork to ask for now, if it is time: the middle run, a little way in."""
    parent = fork_parent(runs)
    if parent is None or parent.state != "running" or parent.step < FORK_AFTER_STEPS:
        return None
    if any(r.parent_id == parent.id for r in runs):
        return None
    name = unique_name(FORK_NAME, {r.name for r in runs}.__contains__)
    return {"run": parent.id, "overrides": ["lr=1e-3"], "name": name}


def maybe_fork(client: Client) -> dict[str, Any] | None:
    """Fork the demo's middle run once it is time; returns the fork, if made now."""
    request = fork_request(_listed(client))
    if request is None:
        return None
    fork: dict[str, Any] = client.call("fork", **request)
    return fork
