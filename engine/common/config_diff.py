"""What differs between runs' configs: the keys whose values are not the same in all of them.

Used by ``traintop diff`` and meant for the TUI's compare view; standard library only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.common.format import shown


class _Unset:
    """The value of a key a run's config does not have."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _comparable(value: Any) -> Any:
    """A form in which two values compare equal when a person would call them the same.

    ``1`` and ``1.0`` are the same learning rate, ``True`` and ``1`` are not, and
    ``nan`` is the same as ``nan``.
    """
    if value is UNSET:
        return ("unset",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("str", value)
    return ("other", json.dumps(value, sort_keys=True, default=repr))


def config_diff(configs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Each key whose value differs between ``configs``, with one value per config.

    A config without the key has ``UNSET`` there. Keys keep the order in which
    they first appear.
    """
    keys = list(dict.fromkeys(k for config in configs for k in config))
    diff = {}
    for key in keys:
        values = [config.get(key, UNSET) for config in configs]
        if len({_comparable(v) for v in values}) > 1:
            diff[key] = values
    return diff


def runs_diff(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """``config_diff`` of runs, led by a ``workload`` row when their workloads differ."""
    diff = config_diff([{"workload": run["workload"]} for run in runs])
    diff.update(config_diff([run["config"] for run in runs]))
    return diff


def value_text(value: Any) -> str:
    """A config value as a diff shows it: every digit, so a difference is visible."""
    if value is UNSET:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else json.dumps(value, default=repr)


def diff_table(
    runs: Sequence[Mapping[str, Any]], diff: Mapping[str, Sequence[Any]]
) -> tuple[list[str], list[list[str]]]:
    """The header and rows that show ``diff`` of ``runs``: a column per run, a row per key.

    The CLI's ``traintop diff`` and the TUI's ``d`` both show this table.
    """
    header = ["KEY", *(f"{run['id']} ({shown(str(run['name']), 30)})" for run in runs)]
    rows = [[shown(key), *(shown(value_text(v), 40) for v in values)]
            for key, values in diff.items()]
    return header, rows
