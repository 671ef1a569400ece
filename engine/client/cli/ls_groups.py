"""``traintop ls -G``: one row a setting (runs alike but for their seeds), with how
its runs stand together: how many, in which states, and the mean and standard
deviation of each number shown (Ray Tune's and W&B's grouped results).

The runs are filtered as ``ls`` filters them; the settings are then sorted by
the mean of their runs' values (a value all of them share: that value) and cut
to ``--limit``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean, stdev
from typing import Any

from engine.client.cli.common import terminal_width
from engine.client.events import RunInfo
from engine.client.run_select import (
    RUN_COLUMNS,
    SHOWN_VALUE,
    STATE_ORDER,
    finite,
    ordered,
    run_value,
    value_order,
    value_text,
)
from engine.common.format import (
    SHOWN_NAME,
    fit_columns,
    format_bytes,
    format_number,
    format_table,
    json_text,
    shown,
)
from engine.common.settings import gather, is_seed_key

HEADER = ["SETTING", "RUNS", "STATES", "STEP", "LOSS", "BEST"]
SETTING_SORTS = ("runs",)  # besides the run's own: how many runs a setting has
SHOWN_IDS = 40  # the IDS column is cut to this ('-q' and '--json' give them all)


@dataclass(frozen=True)
class Setting:
    """The runs of one setting, in the order listed, and the name that sets it apart."""

    runs: tuple[RunInfo, ...]
    label: str

    def values(self, name: str) -> list[Any]:
        """Each run's value by ``name`` (as ``ls -c`` names it), None where it has none."""
        return [run_value(r, name) for r in self.runs]


def settings_of(runs: Sequence[RunInfo], by: Sequence[str] = ()) -> list[Setting]:
    """``runs`` gathered by setting (alike but for their seeds, or alike in the config
    keys ``by``), each where its first run was listed."""
    return [Setting(tuple(found), label or found[0].name) for found, label in gather(runs, by)]


@dataclass(frozen=True)
class Summary:
    """The numbers of a setting's runs by one name: how many, mean, spread, extremes."""

    n: int
    mean: float
    sd: float | None  # the sample standard deviation; None for one number
    low: float
    high: float

    def text(self) -> str:
        """``1.234 ± 0.05``; one number alone as itself."""
        mean = format_number(self.mean)
        return mean if self.sd is None else f"{mean} ± {self.sd:.2g}"

    def to_wire(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "min": self.low,
                "max": self.high}


def summary(values: Sequence[Any]) -> Summary | None:
    """The finite numbers among ``values`` summed up (None: there are none)."""
    numbers = [x for v in values if (x := finite(v)) is not None]
    if not numbers:
        return None
    sd = stdev(numbers) if len(numbers) > 1 else None
    return Summary(len(numbers), fmean(numbers), sd, min(numbers), max(numbers))


def shared(values: Sequence[Any]) -> tuple[bool, Any]:
    """Whether every one of ``values`` is the same (a config value the seeds share), and
    that value."""
    first = values[0] if values else None
    return all(v == first and type(v) is type(first) for v in values), first


def _in_config(setting: Setting, name: str) -> bool:
    return all(name in r.config for r in setting.runs)


def column_text(setting: Setting, name: str) -> str:
    """A ``-c`` column of a setting: the value its runs share, else the config values
    they have (its seeds: ``0,1,2``), else the mean ± sd of their numbers."""
    values = setting.values(name)
    same, value = shared(values)
    if same:
        return value_text(value)
    found = summary(values)
    if _in_config(setting, name) or found is None:
        return shown(",".join(dict.fromkeys(value_text(v) for v in values)), SHOWN_VALUE)
    return found.text()


def column_wire(setting: Setting, name: str) -> Any:
    """A ``-c`` value in ``--json``: the shared value, else the config values (a list),
    else a summary of the numbers (None: no numbers)."""
    values = setting.values(name)
    same, value = shared(values)
    if same:
        return value
    if _in_config(setting, name):
        return values
    found = summary(values)
    return None if found is None else found.to_wire()


def state_counts(setting: Setting) -> dict[str, int]:
    """How many of the runs are in each state, in the order of a run's life."""
    counts: dict[str, int] = {}
    for run in setting.runs:
        counts[run.state] = counts.get(run.state, 0) + 1
    order = {state: i for i, state in enumerate(STATE_ORDER)}
    return dict(sorted(counts.items(), key=lambda item: order.get(item[0], len(order))))


_loss, _best = RUN_COLUMNS["loss"], RUN_COLUMNS["best"]  # the training loss: last, lowest


def _steps(setting: Setting) -> str:
    """The fewest steps any run has made, of the most any asks for: ``120/300``."""
    least = min(r.step for r in setting.runs)
    totals = [r.total_steps for r in setting.runs if r.total_steps]
    return str(least) + (f"/{max(totals)}" if totals else "")


def _summary_text(setting: Setting, value: Callable[[RunInfo], Any]) -> str:
    found = summary([value(r) for r in setting.runs])
    return "-" if found is None else found.text()


def sort_value(setting: Setting, sort: str) -> Any:
    """How a setting orders by ``sort``: its runs' mean of a number, or the value they
    share (the label for ``name``, the first run's id for ``id``); None: last."""
    if sort == "name":
        return setting.label.lower()
    if sort == "id":
        return setting.runs[0].id
    if sort == "runs":
        return len(setting.runs)
    values = setting.values(sort)
    same, value = shared(values)
    if same and not (isinstance(value, float) and math.isnan(value)):
        return value_order(value)
    found = summary(values)
    return None if found is None else (0, found.mean, "")


def order_settings(settings: list[Setting], args: argparse.Namespace) -> list[Setting]:
    """Sorted as ``--sort`` and ``-r`` say, then cut to ``--limit``, as ``ls`` does runs."""
    return ordered(settings, lambda s: sort_value(s, args.sort), args.sort, args.reverse,
                   args.limit)


def print_settings(
    runs: list[RunInfo], args: argparse.Namespace, listed: int, sizes: bool
) -> None:
    """``ls -G``: one row a setting of ``runs`` (already filtered), or ``-q`` and ``--json``;
    ``sizes``: a SIZE column, what each setting's runs take on disk together."""
    settings = order_settings(settings_of(runs, args.by), args)
    if args.json:
        print(json_text([_to_wire(s, args.columns, args.by) for s in settings]))
        return
    if args.quiet:  # one line a setting: ready for 'traintop tag keep $(...)' by line
        for setting in settings:
            print(" ".join(r.id for r in setting.runs))
        return
    header = [*HEADER, *(shown(name, SHOWN_VALUE) for name in args.columns),
              *(["SIZE"] if sizes else []), "IDS"]
    rows = []
    for setting in settings:
        states = ", ".join(f"{n} {state}" for state, n in state_counts(setting).items())
        rows.append([
            shown(setting.label, SHOWN_NAME), str(len(setting.runs)), states,
            _steps(setting), _summary_text(setting, _loss), _summary_text(setting, _best),
            *(column_text(setting, name) for name in args.columns),
            *([format_bytes(sum(r.size or 0 for r in setting.runs))] if sizes else []),
            shown(" ".join(r.id for r in setting.runs), SHOWN_IDS),
        ])
    width = terminal_width()
    if width is not None:  # the ids give way first (-q lists them), then the states, the name
        shrink = [(len(header) - 1, 14, False), (2, 12, False), (0, 16, True)]
        header, *rows = fit_columns(header, rows, width, shrink)
    print(format_table(header, rows))
    print(f"({sum(len(s.runs) for s in settings)} of {listed} runs as {len(settings)} "
          f"setting{'s' if len(settings) != 1 else ''}; LOSS, BEST: mean ± sd of the runs)")


def _to_wire(setting: Setting, columns: Sequence[str], by: Sequence[str]) -> dict[str, Any]:
    first = setting.runs[0]
    loss, best = summary([_loss(r) for r in setting.runs]), summary(
        [_best(r) for r in setting.runs])
    return {
        "setting": setting.label,
        "workload": first.workload,
        "config": {k: v for k, v in first.config.items()
                   if (k in by if by else not is_seed_key(k))},
        "runs": [r.id for r in setting.runs],
        "states": state_counts(setting),
        "loss": None if loss is None else loss.to_wire(),
        "best": None if best is None else best.to_wire(),
        "values": {name: column_wire(setting, name) for name in columns},
    }
