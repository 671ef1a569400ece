"""``traintop demo``: a few live charlm runs, so every panel has something to show."""

from __future__ import annotations

from typing import Any

from engine.client import Client

DEMO_RUNS = {
    "demo-lr1e-3": ["lr=1e-3"],
    "demo-lr3e-3": ["lr=3e-3"],
    "demo-lr1e-2": ["lr=1e-2"],
}
DEMO_SIZE = ["steps=30000", "d_model=64", "layers=2", "batch=16"]
FORK_NAME = "demo-lr3e-3-fork-lr1e-3"
FORK_AFTER_STEPS = 100


def start_demo(client: Client) -> list[dict[str, Any]]:
    """Start the demo runs that are not already there; returns every demo run."""
    existing = {r["name"]: r for r in client.call("list_runs")}
    for name, overrides in DEMO_RUNS.items():
        if name not in existing:
            client.call(
                "start",
                workload="charlm",
                overrides=[*DEMO_SIZE, *overrides],
                name=name,
                device=None,
                cwd="/",
            )
    return [r for r in client.call("list_runs") if r["name"].startswith("demo-")]


def fork_request(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fork to ask for now, if it is time: the middle run, a little way in."""
    by_name = {r["name"]: r for r in runs}
    parent = by_name.get("demo-lr3e-3")
    if FORK_NAME in by_name or parent is None or parent["state"] != "running":
        return None
    if parent["step"] < FORK_AFTER_STEPS:
        return None
    return {"run": parent["id"], "overrides": ["lr=1e-3"], "name": FORK_NAME}


def maybe_fork(client: Client) -> dict[str, Any] | None:
    """Fork the demo's middle run once it is time; returns the fork, if made now."""
    request = fork_request(client.call("list_runs"))
    if request is None:
        return None
    fork: dict[str, Any] = client.call("fork", **request)
    return fork
