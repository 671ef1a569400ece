"""An experiment file: a run or a sweep written down in TOML, for ``traintop start|sweep -f``.

::

    workload = "charlm"
    name = "charlm-lr"          # the run's name, or the base of a sweep's names
    device = "cpu"
    queue = "night"
    tags = ["lr-search"]        # every run's tags
    trials = 8                  # with random axes, as --trials
    seed = 0
    checkpoint_every = "10m"    # or a number of steps, as --checkpoint-every
    retries = 2                 # as --retries

    [config]                    # fixed overrides, for every run
    steps = 2000

    [sweep]                     # a list is a grid axis, a string a random axis
    batch = [32, 64]
    lr = "log(1e-4..1e-2)"

Standard library only (``tomllib``). A field the file gets wrong is one line naming it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.common.checkpoint_every import CheckpointEvery
from engine.common.early_stop import StopRule
from engine.common.pbt import PbtRule
from engine.common.runs import tag_problem
from engine.common.sweep import RANDOM_FORMS, SweepError, SweepSpec, parse_random

# Each field and the TOML type it must have (bool is refused where an integer is wanted).
_FIELDS: dict[str, tuple[type, str]] = {
    "workload": (str, "a string"),
    "name": (str, "a string"),
    "device": (str, "a string"),
    "queue": (str, "a string"),
    "tags": (list, "a list of words"),
    "trials": (int, "an integer"),
    "seed": (int, "an integer"),
    "config": (dict, "a table"),
    "sweep": (dict, "a table"),
    "early_stop": (dict, "a table (grace, eta, metric, mode)"),
    "pbt": (dict, "a table (interval, quantile, resample, metric, mode)"),
    "checkpoint_every": (str, 'steps (500) or a time ("10m")'),
    "search": (str, 'a method ("tpe")'),
    "startup": (int, "an integer"),
    "retries": (int, "an integer"),
}


class ExperimentError(ValueError):
    """A file that cannot be used; the message is one line naming the file and field."""


@dataclass
class Experiment:
    """What an experiment file says; None where it says nothing."""

    spec: SweepSpec = field(default_factory=SweepSpec)
    workload: str | None = None
    name: str | None = None
    device: str | None = None
    queue: str | None = None
    tags: list[str] | None = None
    trials: int | None = None
    seed: int | None = None
    early_stop: StopRule | None = None
    pbt: PbtRule | None = None  # its axes are the sweep's: filled in when it is started
    checkpoint_every: str | None = None
    retries: int | None = None
    search: str | None = None  # checked with the sweep, when it is started
    startup: int | None = None

    @property
    def is_sweep(self) -> bool:
        """Whether the file asks for more than one run's worth of axes."""
        return bool(self.spec.grid or self.spec.random or self.trials is not None)


def value_text(value: Any) -> str:
    """A TOML value as override text, read back by the same rules as ``key=value``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    return repr(value)


def config_overrides(config: Mapping[str, Any]) -> list[str]:
    """A run's whole config as ``key=value`` overrides (restart, ``sweep --like``)."""
    return [f"{key}={value_text(value)}" for key, value in config.items()]


def load_experiment(path: str) -> Experiment:
    """Read and check an experiment file; ExperimentError on the first problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ExperimentError(f"{path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ExperimentError(f"{path}: not valid TOML: {exc}") from None
    where = Path(path).name
    every = data.get("checkpoint_every")
    if isinstance(every, int) and not isinstance(every, bool):
        data["checkpoint_every"] = every = str(every)  # a number of steps
    for key, value in data.items():
        if key not in _FIELDS:
            known = ", ".join(_FIELDS)
            raise ExperimentError(f"{where}: unknown field {key!r} (known: {known})")
        kind, said = _FIELDS[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ExperimentError(f"{where}: field {key!r} must be {said}")
    for tag in data.get("tags", []):
        problem = tag_problem(tag) if isinstance(tag, str) else "a tag must be a string"
        if problem is not None:
            raise ExperimentError(f"{where}: field 'tags': {problem}")
    if isinstance(every, str):
        try:
            CheckpointEvery.parse(every)
        except ValueError as exc:
            raise ExperimentError(f"{where}: field 'checkpoint_every': {exc}") from None
    spec = SweepSpec()
    try:
        for key, value in data.get("config", {}).items():
            spec.add(key, "fixed", value_text(value), f"config.{key}")
        for key, value in data.get("sweep", {}).items():
            _add_axis(spec, key, value)
    except SweepError as exc:
        raise ExperimentError(f"{where}: {exc}") from None
    early_stop = None
    if "early_stop" in data:
        try:
            early_stop = StopRule.from_wire(data["early_stop"])
        except ValueError as exc:
            raise ExperimentError(f"{where}: field 'early_stop': {exc}") from None
    pbt = None
    if "pbt" in data:
        if "axes" in data["pbt"]:
            raise ExperimentError(f"{where}: field 'pbt': its axes are the [sweep]'s")
        try:
            pbt = PbtRule.from_wire(data["pbt"])
        except ValueError as exc:
            raise ExperimentError(f"{where}: field 'pbt': {exc}") from None
    return Experiment(
        spec,
        data.get("workload"),
        data.get("name"),
        data.get("device"),
        data.get("queue"),
        data.get("tags"),
        data.get("trials"),
        data.get("seed"),
        early_stop,
        pbt,
        data.get("checkpoint_every"),
        data.get("retries"),
        data.get("search"),
        data.get("startup"),
    )


def _add_axis(spec: SweepSpec, key: str, value: Any) -> None:
    """One ``[sweep]`` entry: a list is a grid axis, a string a random one."""
    token = f"sweep.{key}"
    if isinstance(value, list):
        if not value:
            raise SweepError(f"{token}: an empty list")
        spec.add(key, "grid", [value_text(v) for v in value], token)
        return
    axis = parse_random(key, value, token) if isinstance(value, str) else None
    if axis is None:
        raise SweepError(f"{token}: expected a list of values or {RANDOM_FORMS}")
    spec.add(key, "random", axis, token)
