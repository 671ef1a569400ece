"""What differs between runs' configs (the keys whose values are not the same in all
of them), and where each run stands: what ``traintop diff`` and the TUI's ``d`` show.

Standard library only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.common.format import cut_middle, shown
from engine.common.output_lines import training_loss_key


class _Unset:
    """The value of a key a run's config does not have."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

# ``diff_table`` shows up to this many runs side by side; more, a row each.
RUNS_AS_COLUMNS = 4


def comparable(value: Any) -> Any:
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
        if len({comparable(v) for v in values}) > 1:
            diff[key] = values
    return diff


def runs_diff(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """``config_diff`` of runs, led by a ``workload`` row when their workloads differ."""
    diff = config_diff([{"workload": run["workload"]} for run in runs])
    diff.update(config_diff([run["config"] for run in runs]))
    return diff


def outcome_rows(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Where each run stands: state, step, tags (if any has some), its best training loss,
    and the last value of every metric any of them logged (``UNSET`` where a run has
    none), the loss first.

    ``runs`` are as ``get_run`` (or a listing with ``best``) gives them.
    """
    lasts = [run.get("last") or {} for run in runs]
    keys = sorted({str(k) for last in lasts for k in last})
    loss = training_loss_key(keys)
    rows: dict[str, list[Any]] = {
        "state": [run["state"] for run in runs], "step": [run["step"] for run in runs]
    }
    if any(run.get("tags") for run in runs):
        rows["tags"] = [" ".join(run.get("tags") or []) for run in runs]
    if loss is not None:
        rows[f"best {loss}"] = [(run.get("best") or {}).get(loss, UNSET) for run in runs]
    for key in sorted(keys, key=lambda k: k != loss):  # (a stable sort: the rest by name)
        rows[f"last {key}"] = [last.get(key, UNSET) for last in lasts]
    return rows


def _outcome_text(value: Any) -> str:
    """A metric as the outcome rows show it: six digits, enough to tell runs apart."""
    return f"{value:.6g}" if isinstance(value, float) else value_text(value)


def value_text(value: Any) -> str:
    """A config value as a diff shows it: every digit, so a difference is visible."""
    if value is UNSET:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else json.dumps(value, default=repr)


def value_texts(values: Sequence[Any]) -> list[str]:
    """One key's values across runs as a diff shows them: floats in as few significant
    digits as keep different values different (at least 4: a drawn lr of
    0.03414016019207298 is 0.03414), the rest as ``value_text``."""
    floats = {v for v in values if isinstance(v, float) and math.isfinite(v)}
    digits = next((d for d in range(4, 17)
                   if len({f"{v:.{d}g}" for v in floats}) == len(floats)), 17)

    def text(value: Any) -> str:
        if not isinstance(value, float) or value not in floats:
            return value_text(value)
        short = f"{value:.{digits}g}"
        return f"{short}.0" if short.lstrip("-").isdigit() else short  # 1.0, not the int 1

    return [text(v) for v in values]


def diff_table(
    runs: Sequence[Mapping[str, Any]], diff: Mapping[str, Sequence[Any]]
) -> tuple[list[str], list[list[str]]]:
    """The header and rows that show ``diff`` of ``runs``: a column per run, a row per
    differing key, then (after a blank row) the runs' outcomes (``outcome_rows``). More
    than RUNS_AS_COLUMNS runs are a row each instead, a column per key (as ``ls -c``
    lays them out): twelve runs side by side would be 600 characters wide.

    The CLI's ``traintop diff`` and the TUI's ``d`` both show this table.
    """
    outcomes = outcome_rows(runs)
    texts = {key: value_texts(values) for key, values in diff.items()}
    if len(runs) > RUNS_AS_COLUMNS:
        header = ["RUN", *(shown(key) for key in (*diff, *outcomes))]
        return header, [
            [f"{run['id']} {cut_middle(shown(str(run['name'])), 30)}",
             *(shown(values[i], 40) for values in texts.values()),
             *(shown(_outcome_text(values[i]), 40) for values in outcomes.values())]
            for i, run in enumerate(runs)
        ]
    header = ["KEY", *(f"{run['id']} ({cut_middle(shown(str(run['name'])), 30)})"
                       for run in runs)]
    rows = [[shown(key), *(shown(text, 40) for text in values)]
            for key, values in texts.items()]
    if rows:
        rows.append(["" for _ in header])
    rows += [[shown(key), *(shown(_outcome_text(v), 40) for v in values)]
             for key, values in outcomes.items()]
    return header, rows
